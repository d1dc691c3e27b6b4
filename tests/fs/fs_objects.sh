#!/usr/bin/env bash
# fs: one ferryfs-storage on loopback serving tcp, fast+udp and splice at
# once; through each, the ferryfs CLI uploads objects of 0 B, 1 B, sizes
# around fast's fragment (1432 B at a 1472-byte datagram) and 64 KiB, and
# 3 MiB + 7 and 40 MiB + 3 (an upload in three pieces, a download in
# three ranges), then downloads each whole and as ranges (byte-exact), asks
# info, deletes, and checks the errors: deleting or reading a deleted
# object (exit 3), a malformed ID (exit 2, refused before any call),
# another group's ID (refused by the server, exit 1). No temporary file
# may be left in a store path, and SIGTERM must stop the server cleanly
# with its counters in the log.
# usage: fs_objects.sh FERRYFS_STORAGE FERRYFS
set -euo pipefail
storage=$1
cli=$2
dir=$(mktemp -d)
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	[ -f "$dir/log" ] && sed 's/^/  log: /' "$dir/log"
	exit 1
}

mkdir -p "$dir/s0" "$dir/s1"
"$storage" --foreground --set group=g1 --set server_id=9 \
	--set listen='tcp:host=127.0.0.1,port=0' --set listen='fast+udp:host=127.0.0.1,port=0' \
	--set listen='splice:host=127.0.0.1,port=0' \
	--set store_path="$dir/s0" --set store_path="$dir/s1" 2>"$dir/log" &
spid=$!
for _ in $(seq 50); do
	[ "$(grep -c 'listening on' "$dir/log" || true)" -ge 3 ] && break
	sleep 0.1
done
mapfile -t locs < <(sed -n 's/.*listening on \(.*\)$/\1/p' "$dir/log")
[ "${#locs[@]}" -eq 3 ] || fail "storage did not report its three locators"

head -c $((40 * 1048576 + 3)) /dev/urandom >"$dir/big"
sizes=(0 1 1431 1432 1433 65536 $((3 * 1048576 + 7)) $((40 * 1048576 + 3)))
for loc in "${locs[@]}"; do
	t=${loc%%:*}
	for n in "${sizes[@]}"; do
		head -c "$n" "$dir/big" >"$dir/in"
		id=$("$cli" --server "$loc" upload "$dir/in" --ext dat) || fail "$t: upload of $n B"
		case $id in g1/M0[01]/*.dat) ;; *) fail "$t: unexpected ID '$id'" ;; esac
		"$cli" --server "$loc" download "$id" "$dir/out" || fail "$t: download of $n B"
		cmp "$dir/in" "$dir/out" || fail "$t: $n B came back different"
		if [ "$n" -gt 2 ]; then
			off=$((n / 3)) len=$((n / 2))
			"$cli" --server "$loc" download "$id" "$dir/range" --offset "$off" --length "$len" ||
				fail "$t: range of $n B"
			cmp <(tail -c +$((off + 1)) "$dir/in" | head -c "$len") "$dir/range" ||
				fail "$t: range [$off, +$len) of $n B differs"
			# a range past the end is refused
			if "$cli" --server "$loc" download "$id" "$dir/range" --offset "$n" --length 1 2>/dev/null; then
				fail "$t: a range past the end was served"
			fi
		fi
		info=$("$cli" --server "$loc" info "$id") || fail "$t: info"
		grep -q "^size now *$n\$" <<<"$info" || fail "$t: info says $(grep 'size now' <<<"$info")"
		grep -q "^source server *9\$" <<<"$info" || fail "$t: info source"
		"$cli" --server "$loc" delete "$id" || fail "$t: delete"
		rc=0; "$cli" --server "$loc" delete "$id" 2>/dev/null || rc=$?
		[ "$rc" -eq 3 ] || fail "$t: deleting again exited $rc, want 3"
		rc=0; "$cli" --server "$loc" download "$id" "$dir/out" 2>/dev/null || rc=$?
		[ "$rc" -eq 3 ] || fail "$t: reading a deleted object exited $rc, want 3"
	done
	echo "ok: $t, ${#sizes[@]} sizes"
done

loc=${locs[0]}
id=$("$cli" --server "$loc" upload "$dir/big")
for bad in "../M00/00/00/x" "/etc/passwd" "g1/M00/00/00/../../../etc/passwd" "g1/M00/zz/00/x"; do
	rc=0; "$cli" --server "$loc" download "$bad" "$dir/out" 2>/dev/null || rc=$?
	[ "$rc" -eq 2 ] || fail "malformed ID '$bad' exited $rc, want 2"
done
other=g2${id#g1}
rc=0; "$cli" --server "$loc" info "$other" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "another group's ID exited $rc, want 1"
"$cli" --server "$loc" delete "$id"

left=$(find "$dir/s0" "$dir/s1" -type f | wc -l)
[ "$left" -eq 0 ] || fail "$left files left in the store paths: $(find "$dir/s0" "$dir/s1" -type f)"

kill -TERM "$spid"
wait "$spid" || fail "storage exited $? on SIGTERM"
spid=
grep -q "stopped: uploads $((3 * ${#sizes[@]} + 1)) " "$dir/log" || fail "stop line"
grep -q "bad IDs 1;" "$dir/log" || fail "the other group's ID was not counted"
echo "ok: malformed and foreign IDs refused, nothing left behind, clean stop"
