#!/usr/bin/env bash
# fs: a full disk. ferryfs-storage's only store path is a 2 MiB tmpfs (in a
# private mount namespace: root). An upload bigger than the space left
# fails with exit 4 (ENOSPC) and leaves no temporary file and no used
# space behind; uploads that fit still work; once the disk is full, a
# delete frees room and the next upload succeeds. Skips (77) without root
# or mount namespaces unless FERRY_REQUIRE names netns (the same
# privileges: CI has them).
# usage: fs_enospc.sh FERRYFS_STORAGE FERRYFS
set -euo pipefail
storage=$1
cli=$2
. "$(dirname "$0")/../common/skip.sh"
[ "$(id -u)" -eq 0 ] || ferry_skip netns "needs root to mount a tmpfs"
if [ "${FS_ENOSPC_INNER:-}" != 1 ]; then
	unshare -m true 2>/dev/null || ferry_skip netns "no mount namespaces (unshare -m)"
	FS_ENOSPC_INNER=1 exec unshare -m --propagation private "$0" "$@"
fi

dir=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	umount "$dir/store" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; sed 's/^/  log: /' "$dir/log" 2>/dev/null || true; exit 1; }
mkdir -p "$dir/store"
mount -t tmpfs -o size=2m tmpfs "$dir/store"
used() { df --output=used -B1 "$dir/store" | tail -1 | tr -d ' '; }
base=$(used)
"$storage" --foreground --set listen='tcp:host=127.0.0.1,port=0' \
	--set store_path="$dir/store" --set fsync=always 2>"$dir/log" &
spid=$!
for _ in $(seq 50); do grep -q 'listening on' "$dir/log" && break; sleep 0.1; done
loc=$(sed -n 's/.*listening on \(.*\)$/\1/p' "$dir/log" | head -1)
[ -n "$loc" ] || fail "no locator"

head -c $((3 * 1048576)) /dev/urandom >"$dir/big"
rc=0; "$cli" --server "$loc" upload "$dir/big" 2>"$dir/err" || rc=$?
[ "$rc" -eq 4 ] || fail "3 MiB into 2 MiB exited $rc, want 4 ($(cat "$dir/err"))"
[ -z "$(find "$dir/store" -type f)" ] || fail "left behind: $(find "$dir/store" -type f)"
now=$(used)
# the directories may stay (a few KiB); the 2 MiB of data must not
[ $((now - base)) -lt 65536 ] || fail "space not freed: $base -> $now bytes used"

head -c 400000 /dev/urandom >"$dir/piece"
ids=()
while id=$("$cli" --server "$loc" upload "$dir/piece" 2>"$dir/err"); do
	ids+=("$id")
	[ "${#ids[@]}" -lt 20 ] || fail "20 uploads of 400 kB fit in 2 MiB?"
done
[ "${#ids[@]}" -ge 3 ] || fail "only ${#ids[@]} uploads of 400 kB fit"
grep -q "No space left" "$dir/err" || fail "the failing upload said: $(cat "$dir/err")"
[ -z "$(find "$dir/store" -name '.upload-*')" ] || fail "a temporary file was left"
"$cli" --server "$loc" delete "${ids[0]}"
id=$("$cli" --server "$loc" upload "$dir/piece") || fail "upload after a delete"
"$cli" --server "$loc" download "$id" "$dir/back"
cmp "$dir/piece" "$dir/back" || fail "the object uploaded after the delete differs"
for i in "${ids[@]:1}"; do
	"$cli" --server "$loc" download "$i" "$dir/back"
	cmp "$dir/piece" "$dir/back" || fail "an object stored before the disk filled differs"
done
kill -TERM "$spid"
wait "$spid" || fail "storage exit on SIGTERM"
spid=
grep -q "no space [1-9]" "$dir/log" || fail "ENOSPC not counted"
echo "ok: ENOSPC reported, nothing left behind, ${#ids[@]} uploads fit, a delete made room"
