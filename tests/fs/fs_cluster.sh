#!/usr/bin/env bash
# fs: a cluster across hosts. A tracker, two storage servers (group g1,
# ids 1 and 2) and a client, each in its own network namespace with its own
# address on one bridge. Checks, through the tracker, over tcp and
# fast+udp:
# - both servers register by beat; uploads are placed on both (round
#   robin); every object downloads byte-exact from whichever holds it;
# - storage server 2 killed with SIGKILL at random moments during uploads,
#   20 times: every upload either printed an ID (and reads back
#   byte-exact after the restart) or failed with an error; every object
#   file on its disk is complete (size and CRC-32 as its ID says); the
#   restart removes what the kills cut short;
# - a silent server turns OFFLINE, uploads go to the other, reads of its
#   objects exit 5, and it is ACTIVE again after a restart;
# - a tracker restart keeps the cluster view (state file); a client given
#   a dead tracker first fails over to the next;
# - with a reserve larger than the disks, both servers turn READONLY and an
#   upload exits 6 (EROFS) while reads still work.
# Skips (77) without root or network namespaces unless FERRY_REQUIRE has
# netns.
# usage: fs_cluster.sh FERRYFS_TRACKER FERRYFS_STORAGE FERRYFS
set -euo pipefail
tracker=$1
storage=$2
cli=$3
. "$(dirname "$0")/../common/skip.sh"
ferry_need_netns

tag=ffs$$
dir=$(mktemp -d)
hosts=(t s1 s2 c)
declare -A addr=([t]=10.213.0.1 [s1]=10.213.0.11 [s2]=10.213.0.12 [c]=10.213.0.100)
cleanup() {
	for h in "${hosts[@]}" hub; do
		ip netns pids "$tag-$h" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "$tag-$h" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$dir"/*.log; do sed "s|^|  $(basename "$f"): |" "$f" | tail -15; done
	exit 1
}
ip netns add "$tag-hub"
ip -n "$tag-hub" link add br0 type bridge
ip -n "$tag-hub" link set br0 up
for h in "${hosts[@]}"; do
	ip netns add "$tag-$h"
	ip link add "v$h" netns "$tag-hub" type veth peer name eth0 netns "$tag-$h"
	ip -n "$tag-hub" link set "v$h" master br0 up
	ip -n "$tag-$h" addr add "${addr[$h]}/24" dev eth0
	ip -n "$tag-$h" link set eth0 up
	ip -n "$tag-$h" link set lo up
done
on() { local h=$1; shift; ip netns exec "$tag-$h" "$@"; }

T=${addr[t]}
trk="--tracker tcp:host=$T,port=22122"
start_tracker() {
	# ip netns exec execs the daemon: $! is its pid (a shell function
	# in between would be a subshell, and kill would miss the daemon)
	ip netns exec "$tag-t" "$tracker" --foreground --set listen="tcp:host=$T,port=22122" \
		--set listen="fast+udp:host=$T,port=22123" --set state_file="$dir/tracker.state" \
		--set beat_timeout_ms=1000 "$@" 2>>"$dir/tracker.log" &
	tpid=$!
}
declare -A spid
start_storage() {
	local h=$1 id=${1#s}
	mkdir -p "$dir/$h"
	ip netns exec "$tag-$h" "$storage" --foreground --set group=g1 --set server_id="$id" \
		--set listen="tcp:host=${addr[$h]},port=23000" \
		--set listen="fast+udp:host=${addr[$h]},port=23001" \
		--set store_path="$dir/$h" --set beat_ms=200 \
		--set tracker="tcp:host=$T,port=22122" 2>>"$dir/$h.log" &
	spid[$h]=$!
}
# until the tracker's monitor shows want (e.g. "ACTIVE ACTIVE"), 10 s at most
wait_states() {
	local want=$1 got=
	for _ in $(seq 100); do
		# (the tracker may not listen yet: a failed monitor is one more try)
		got=$(on c "$cli" $trk monitor 2>/dev/null | awk 'NR > 1 {print $2 "=" $3}' | sort |
			tr '\n' ' ') || got=
		[ "$got" = "$want" ] && return 0
		sleep 0.1
	done
	fail "monitor shows '$got', want '$want'"
}
start_tracker
start_storage s1
start_storage s2
wait_states "1=ACTIVE 2=ACTIVE "
echo "ok: both servers registered"

# placement and reads, over tcp and fast+udp
declare -A ids
seen=""
for i in $(seq 8); do
	n=$(( (i * 7919) % 300000 + i ))
	head -c "$n" /dev/urandom >"$dir/obj$i"
	tr=tcp; [ $((i % 2)) -eq 0 ] && tr=fast+udp
	id=$(on c "$cli" $trk --transport "$tr" upload "$dir/obj$i") || fail "upload $i over $tr"
	ids[$i]=$id
	seen="$seen ${id:3:3}"
	on c "$cli" $trk --transport "$tr" download "$id" "$dir/back" || fail "download $i"
	cmp "$dir/obj$i" "$dir/back" || fail "object $i differs"
done
src() { on c "$cli" info "$1" | awk '/source server/ {print $3}'; }
sources=$(for i in "${!ids[@]}"; do src "${ids[$i]}"; done | sort -u | tr '\n' ' ')
[ "$sources" = "1 2 " ] || fail "uploads placed on servers '$sources', want both"
echo "ok: 8 uploads placed on both servers, read back byte-exact over tcp and fast+udp"

# SIGKILL during uploads, 20 times
head -c 1048576 /dev/urandom >"$dir/mb"
s2loc="tcp:host=${addr[s2]},port=23000"
: >"$dir/ok_ids"
failed=0
for round in $(seq 20); do
	rm -f "$dir/stop"
	# uploads one after another until the server is gone (bounded)
	(
		for k in $(seq 200); do
			[ -e "$dir/stop" ] && break
			if id=$(on c "$cli" --server "$s2loc" upload "$dir/mb" 2>/dev/null); then
				echo "$id" >>"$dir/ok_ids"
			else
				echo x >>"$dir/failed"
			fi
		done
	) &
	upl=$!
	sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
	kill -9 "${spid[s2]}" 2>/dev/null || true
	wait "${spid[s2]}" 2>/dev/null || true
	sleep 0.2
	touch "$dir/stop"
	wait "$upl" || true
	up=$(grep -c "listening on tcp" "$dir/s2.log")
	start_storage s2
	for _ in $(seq 100); do
		[ "$(grep -c "listening on tcp" "$dir/s2.log")" -gt "$up" ] && break
		sleep 0.05
	done
done
failed=$(wc -l <"$dir/failed" 2>/dev/null || echo 0)
[ "$failed" -gt 0 ] || fail "no upload was cut by the 20 kills: the test did not test"
wait_states "1=ACTIVE 2=ACTIVE "
okn=$(wc -l <"$dir/ok_ids")
while read -r id; do
	on c "$cli" --server "$s2loc" download "$id" "$dir/back" || fail "acknowledged upload $id lost"
	cmp "$dir/mb" "$dir/back" || fail "acknowledged upload $id differs"
done <"$dir/ok_ids"
# every object file on disk is whole: size and CRC-32 as its ID says
python3 - "$dir/s2" <<'PY' || fail "a partial object is visible"
import base64, os, struct, sys, zlib
store = sys.argv[1]
for d, _, files in os.walk(os.path.join(store, "data")):
    for f in files:
        if f.startswith(".upload-"):
            sys.exit("left over after restart: " + f)
        name = f.split(".")[0]
        raw = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4))
        _, _, size, crc, _ = struct.unpack("<IIQII", raw)
        data = open(os.path.join(d, f), "rb").read()
        if len(data) != size & ~(1 << 63) or zlib.crc32(data) != crc:
            sys.exit("partial or corrupt object " + f)
PY
swept=$(sed -n 's/.*removed \([0-9]*\) unfinished uploads.*/\1/p' "$dir/s2.log" | awk '{s += $1} END {print s + 0}')
echo "ok: 20 SIGKILLs during uploads: $okn acknowledged uploads read back, $failed failed with an error, no partial object visible (restarts removed ${swept:-0} unfinished)"

# a silent server goes offline; uploads avoid it; its reads say so
s2id=
for i in "${!ids[@]}"; do
	if [ "$(src "${ids[$i]}")" = 2 ]; then
		s2id=${ids[$i]}
		break
	fi
done
kill -9 "${spid[s2]}"
wait "${spid[s2]}" 2>/dev/null || true
wait_states "1=ACTIVE 2=OFFLINE "
for k in 1 2 3 4; do
	id=$(on c "$cli" $trk upload "$dir/obj1") || fail "upload with a server offline"
	[ "$(src "$id")" = 1 ] || fail "an upload was placed on the offline server"
done
rc=0; on c "$cli" $trk download "$s2id" "$dir/back" 2>/dev/null || rc=$?
[ "$rc" -eq 5 ] || fail "reading from an offline server exited $rc, want 5"
start_storage s2
wait_states "1=ACTIVE 2=ACTIVE "
on c "$cli" $trk download "$s2id" "$dir/back" || fail "read after the server came back"
echo "ok: offline server avoided (exit 5 for its objects), back after restart"

# tracker restart keeps the view; failover from a dead tracker
kill -TERM "$tpid"
wait "$tpid" || fail "tracker exit on SIGTERM"
start_tracker
view=
for _ in $(seq 50); do
	view=$(on c "$cli" $trk monitor 2>/dev/null | awk 'NR > 1 {print $2}' | sort | tr '\n' ' ') &&
		[ -n "$view" ] && break
	sleep 0.1
done
[ "$view" = "1 2 " ] || fail "after a restart the tracker knows '$view'"
wait_states "1=ACTIVE 2=ACTIVE "
id=$(on c "$cli" --tracker "tcp:host=$T,port=22999" $trk upload "$dir/obj2" 2>"$dir/failover.err") ||
	fail "no failover to the second tracker"
grep -q "trying the next" "$dir/failover.err" || fail "failover not reported: $(cat "$dir/failover.err")"
on c "$cli" --tracker "fast+udp:host=$T,port=22123" download "$id" "$dir/back"
cmp "$dir/obj2" "$dir/back" || fail "read through the fast+udp tracker"
echo "ok: tracker restart kept the view; a dead first tracker failed over"

# a reserve no disk has: read-only, uploads refused with their own code
kill -TERM "$tpid"
wait "$tpid" || fail "tracker exit on SIGTERM"
start_tracker --set reserved_mb=1000000000
for _ in $(seq 50); do on c "$cli" $trk monitor >/dev/null 2>&1 && break; sleep 0.1; done
wait_states "1=READONLY 2=READONLY "
rc=0; on c "$cli" $trk upload "$dir/obj3" 2>"$dir/ro.err" || rc=$?
[ "$rc" -eq 6 ] || fail "an upload to a read-only group exited $rc, want 6: $(cat "$dir/ro.err")"
on c "$cli" $trk download "$id" "$dir/back" || fail "a read from a read-only group"
cmp "$dir/obj2" "$dir/back" || fail "read from a read-only group differs"
echo "ok: below the reserve the group is read-only (upload exit 6), reads go on"
