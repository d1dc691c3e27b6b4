#!/usr/bin/env bash
# fs: the Wireshark dissector names ferryfs opcodes. ferryfs-storage
# listens with pcap= on fast+udp and tcp; one upload, download, info and
# delete go through each; tshark with tools/wireshark/ferry.lua must show
# ferry.opcode as ferryfs.upload/download/info/delete in requests and the
# Info column must carry the names. Skips (77) without tshark unless
# FERRY_REQUIRE names tshark.
# usage: fs_pcap.sh FERRYFS_STORAGE FERRYFS DISSECTOR
set -euo pipefail
storage=$1
cli=$2
lua=$3
. "$(dirname "$0")/../common/skip.sh"
command -v tshark >/dev/null || ferry_skip tshark "no tshark"
dir=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$dir/s"
"$storage" --foreground --set listen="fast+udp:host=127.0.0.1,port=0,pcap=$dir/fast.pcap" \
	--set listen="tcp:host=127.0.0.1,port=0,pcap=$dir/tcp.pcap" \
	--set store_path="$dir/s" 2>"$dir/log" &
spid=$!
for _ in $(seq 50); do [ "$(grep -c 'listening on' "$dir/log" || true)" -ge 2 ] && break; sleep 0.1; done
mapfile -t locs < <(sed -n 's/.*listening on \(.*\)$/\1/p' "$dir/log")
[ "${#locs[@]}" -eq 2 ] || fail "no locators: $(cat "$dir/log")"
head -c 5000 /dev/urandom >"$dir/in"
for loc in "${locs[@]}"; do
	loc=$(sed 's/,pcap=[^,]*//' <<<"$loc")
	id=$("$cli" --server "$loc" upload "$dir/in")
	"$cli" --server "$loc" download "$id" "$dir/out"
	"$cli" --server "$loc" info "$id" >/dev/null
	"$cli" --server "$loc" delete "$id"
done
kill -TERM "$spid"
wait "$spid"
spid=
for f in fast tcp; do
	out=$(tshark -o tcp.try_heuristic_first:TRUE -o udp.try_heuristic_first:TRUE \
		-r "$dir/$f.pcap" -X lua_script:"$lua" -T fields -e ferry.opcode -e _ws.col.Info \
		-Y 'ferry.opcode >= 0x4601' 2>/dev/null)
	for op in upload download info delete; do
		grep -q "ferryfs\.$op" <<<"$out" || fail "$f: no ferryfs.$op in the decode:
$out"
	done
	echo "ok: $f capture names upload, download, info, delete"
done
