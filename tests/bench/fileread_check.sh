#!/usr/bin/env bash
# bench-smoke: ferry-bench client --op fileread tells a call that failed
# from bytes that arrived wrong. Against a live server a 1 MiB read is
# byte-exact with no error; into a sink that takes nothing (/dev/full), or
# with the server gone, no call succeeds and the client says so (one error
# in its row) instead of "wrong bytes in the sink".
# usage: fileread_check.sh FERRY_BENCH JSONQ
set -euo pipefail
bench=$1
jsonq=$2 # JSON read with json-c
dir=$(mktemp -d)
srv=
trap '[ -z "$srv" ] || kill "$srv" 2>/dev/null; rm -rf "$dir"' EXIT
"$bench" server --listen tcp:host=127.0.0.1,port=0 --poll block --file-dir "$dir" \
	>"$dir/srv.out" &
srv=$!
for _ in $(seq 100); do
	grep -qx ready "$dir/srv.out" && break
	sleep 0.05
done
loc=$(head -1 "$dir/srv.out")

# fileread NAME [client args]: one 1 MiB row; its JSON in $dir/NAME.json,
# its stderr in $dir/NAME.err.
fileread() {
	local name=$1
	shift
	"$bench" client --connect "$loc" --op fileread --sizes 1m --duration 0.1 \
		--warmup 0.05 --poll block --timeout 2s --json - "$@" \
		>"$dir/$name.json" 2>"$dir/$name.err" || true
}
field() { "$jsonq" "$dir/$1.json" "$2"; }
fail() { echo "FAIL: $*"; cat "$dir"/*.err; exit 1; }

fileread live --sink "$dir"
[ "$(field live ops)" -gt 0 ] && [ "$(field live errors)" = 0 ] ||
	fail "live server: $(cat "$dir/live.json")"
! grep -q . "$dir/live.err" || fail "live server: stderr not empty"

fileread full --sink /dev/full
[ "$(field full ops)" = 0 ] && [ "$(field full errors)" -gt 0 ] ||
	fail "/dev/full: $(cat "$dir/full.json")"
grep -q 'no warm-up call into sink offset 0 succeeded (last: No space left on device)' "$dir/full.err" ||
	fail "/dev/full: no ENOSPC said"

kill "$srv"
wait "$srv" || true
srv=
fileread gone --sink "$dir"
[ "$(field gone ops)" = 0 ] && [ "$(field gone errors)" -gt 0 ] ||
	fail "server gone: $(cat "$dir/gone.json")"
grep -q 'no warm-up call into sink offset 0 succeeded' "$dir/gone.err" || fail "server gone: not said"
! grep -q 'wrong bytes' "$dir/gone.err" || fail "server gone: reported as wrong bytes"
echo "ok"
