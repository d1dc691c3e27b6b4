#!/usr/bin/env bash
# One row of the loss matrix: fast+udp between two network namespaces joined
# by a veth pair at MTU 1500 (a 1472-byte udp payload, checked by the
# client), under one network condition, with netns_matrix as the client
# (its options say calls, sizes and calls in flight; see netns_matrix.c).
#   loss=P     nftables drops P% of the packets arriving in either namespace
#              (numgen random mod 100 < P; 0 = no rule)
#   tbf=RATE   a token-bucket rate cap (tc tbf) on both veth ends
# Creates and removes its namespaces; skips (77) only where it cannot and
# FERRY_REQUIRE does not name netns.
# usage: netns_matrix.sh E2E_SERVER NETNS_MATRIX loss=P|tbf=RATE [CLIENT_OPTION...]
set -u
server=$1
client=$2
cond=$3
shift 3
args=("$@")
skip() {
	case ",${FERRY_REQUIRE:-}," in
	*,netns,*) echo "FAIL: netns required: $1"; exit 1 ;;
	esac
	echo "SKIP: $1"
	exit 77
}
case $cond in
loss=[0-9] | loss=[0-9][0-9]) loss=${cond#loss=} rate= ;;
tbf=?*) loss=0 rate=${cond#tbf=} ;;
*) echo "FAIL: bad condition '$cond' (loss=P or tbf=RATE)"; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v ip >/dev/null || skip "no ip (iproute2)"
[ "$loss" -eq 0 ] || command -v nft >/dev/null || skip "no nft (nftables)"
[ -z "$rate" ] || command -v tc >/dev/null || skip "no tc (iproute2)"
a=ferry-ma-$$ b=ferry-mb-$$ va=fma$$ vb=fmb$$
net=10.212.$(($$ % 250)).
spid=
fifo=$(mktemp -u)
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	ip netns del "$a" 2>/dev/null
	ip netns del "$b" 2>/dev/null
	rm -f "$fifo"
}
trap cleanup EXIT
ip netns add "$a" && ip netns add "$b" || skip "cannot create network namespaces"
ip link add "$va" netns "$a" type veth peer name "$vb" netns "$b" || skip "cannot create veth"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$va" mtu 1500 up
ip -n "$b" link set "$vb" mtu 1500 up
ip -n "$a" addr add "${net}1/24" dev "$va"
ip -n "$b" addr add "${net}2/24" dev "$vb"
if [ "$loss" -gt 0 ]; then
	for ns in "$a" "$b"; do
		ip netns exec "$ns" nft -f - <<NFT || skip "nftables not usable"
table inet ferrymatrix {
	chain in {
		type filter hook input priority 0; policy accept;
		meta l4proto udp numgen random mod 100 < $loss counter drop
	}
}
NFT
	done
fi
if [ -n "$rate" ]; then
	# netem is not built into every kernel (it is not here); tbf is the
	# qdisc this row relies on. The burst must cover a timer tick at the
	# rate; latency bounds the queue (at 100 Mbit/s, 50 ms = 625 KB: more
	# is tail-dropped, which fast has to recover from).
	ip netns exec "$a" tc qdisc add dev "$va" root tbf rate "$rate" burst 64kb latency 50ms &&
		ip netns exec "$b" tc qdisc add dev "$vb" root tbf rate "$rate" burst 64kb latency 50ms ||
		skip "tc tbf not usable"
fi
mkfifo "$fifo"
ip netns exec "$b" "$server" "fast+udp:host=${net}2,port=0" block >"$fifo" &
spid=$!
read -r loc <"$fifo" || { echo "FAIL: server did not start"; exit 1; }
echo "server: $loc; condition $cond; veth MTU 1500"
t0=$SECONDS
ip netns exec "$a" "$client" "$loc" "${args[@]}"
rc=$?
echo "row took $((SECONDS - t0)) s"
if [ "$loss" -gt 0 ]; then
	for ns in "$a" "$b"; do
		echo "$ns: nft dropped $(ip netns exec "$ns" nft list table inet ferrymatrix |
			grep -o 'packets [0-9]*' | head -n 1)"
	done
fi
if [ -n "$rate" ]; then
	echo "$va: $(ip netns exec "$a" tc -s qdisc show dev "$va" | grep -o 'Sent.*)')"
	echo "$vb: $(ip netns exec "$b" tc -s qdisc show dev "$vb" | grep -o 'Sent.*)')"
fi
# The server must exit cleanly (it checks that it leaked no loans).
kill "$spid" 2>/dev/null
wait "$spid"
src=$?
spid=
if [ "$src" -ne 0 ]; then
	echo "FAIL: e2e_server exited $src"
	[ "$rc" -eq 0 ] && rc=1
fi
exit $rc
