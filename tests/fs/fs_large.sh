#!/usr/bin/env bash
# fs: a 1 GiB object over tcp, splice and fast+udp: uploaded in pieces
# (64 of 16 MiB: begin, pieces in order, commit), downloaded in ranges
# written at their offsets, byte-exact (cmp), info says its size, and the
# store holds exactly one file of 1 GiB per upload and no temporary file.
# fsync=never: the test is about the pieces, not the disk.
# usage: fs_large.sh FERRYFS_STORAGE FERRYFS
set -euo pipefail
storage=$1
cli=$2
. "$(dirname "$0")/lib.sh"
fail() { fs_fail "$@"; }
fs_setup
mkdir -p "$dir/s"
fs_storage "$storage" 3 --set fsync=never --set store_path="$dir/s" \
	--set listen='tcp:host=127.0.0.1,port=0' --set listen='splice:host=127.0.0.1,port=0' \
	--set listen='fast+udp:host=127.0.0.1,port=0'
size=$((1 << 30))
head -c "$size" /dev/urandom >"$dir/in"
for loc in "${locs[@]}"; do
	t=${loc%%:*}
	s0=$(date +%s.%N)
	id=$("$cli" --server "$loc" upload "$dir/in") || fail "$t: 1 GiB upload"
	s1=$(date +%s.%N)
	"$cli" --server "$loc" download "$id" "$dir/out" || fail "$t: 1 GiB download"
	s2=$(date +%s.%N)
	cmp "$dir/in" "$dir/out" || fail "$t: 1 GiB came back different"
	"$cli" --server "$loc" info "$id" | grep -q "^size now *$size\$" || fail "$t: info size"
	[ "$(find "$dir/s" -type f -size "$((size / 1024))k" | wc -l)" -eq 1 ] ||
		fail "$t: the store does not hold one 1 GiB file"
	[ -z "$(find "$dir/s" -name '.upload-*')" ] || fail "$t: a temporary file is left"
	"$cli" --server "$loc" delete "$id"
	rm -f "$dir/out"
	awk -v a="$s0" -v b="$s1" -v c="$s2" -v t="$t" \
		'BEGIN { printf "ok: %s: 1 GiB up in %.1f s, down in %.1f s, byte-exact\n", t, b - a, c - b }'
done
fs_storage_stop
