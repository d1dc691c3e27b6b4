#!/usr/bin/env bash
# fs: libferryfs (test_client) against a storage server on tcp and
# fast+udp, started here and stopped cleanly after.
# usage: fs_client.sh FERRYFS_STORAGE TEST_CLIENT
set -euo pipefail
storage=$1
client=$2
dir=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$dir/s"
"$storage" --foreground --set fsync=never --set store_path="$dir/s" \
	--set listen='tcp:host=127.0.0.1,port=0' --set listen='fast+udp:host=127.0.0.1,port=0' \
	2>"$dir/log" &
spid=$!
for _ in $(seq 50); do [ "$(grep -c 'listening on' "$dir/log" || true)" -ge 2 ] && break; sleep 0.1; done
mapfile -t locs < <(sed -n 's/.*listening on \(.*\)$/\1/p' "$dir/log")
[ "${#locs[@]}" -eq 2 ] || { echo "FAIL: no locators"; cat "$dir/log"; exit 1; }
"$client" "${locs[@]}"
kill -TERM "$spid"
wait "$spid"
spid=
[ -z "$(find "$dir/s" -type f)" ] || { echo "FAIL: left: $(find "$dir/s" -type f)"; exit 1; }
