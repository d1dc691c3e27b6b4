#!/usr/bin/env bash
# Kernel-level loss: fast+udp between two network namespaces joined by a
# veth pair (MTU 65535), with nftables dropping 5% of UDP packets at random
# in both directions (numgen random). 5,000 calls byte-exact and exactly
# once. Creates and removes its namespaces; skips (77) only where it cannot
# and FERRY_REQUIRE does not name netns.
# usage: netns_loss.sh E2E_SERVER NETNS_CLIENT [CALLS]
set -u
server=$1
client=$2
calls=${3:-5000}
skip() {
	case ",${FERRY_REQUIRE:-}," in
	*,netns,*) echo "FAIL: netns required: $1"; exit 1 ;;
	esac
	echo "SKIP: $1"
	exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v ip >/dev/null || skip "no ip (iproute2)"
command -v nft >/dev/null || skip "no nft (nftables)"
a=ferry-a-$$ b=ferry-b-$$ va=fva$$ vb=fvb$$
net=10.211.$(($$ % 250)).
spid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	ip netns del "$a" 2>/dev/null
	ip netns del "$b" 2>/dev/null
	rm -f "$fifo"
}
fifo=$(mktemp -u)
trap cleanup EXIT
ip netns add "$a" && ip netns add "$b" || skip "cannot create network namespaces"
ip link add "$va" netns "$a" type veth peer name "$vb" netns "$b" || skip "cannot create veth"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$va" mtu 65535 up
ip -n "$b" link set "$vb" mtu 65535 up
ip -n "$a" addr add "${net}1/24" dev "$va"
ip -n "$b" addr add "${net}2/24" dev "$vb"
for ns in "$a" "$b"; do
	ip netns exec "$ns" nft -f - <<NFT || skip "nftables not usable"
table inet ferryloss {
	chain in {
		type filter hook input priority 0; policy accept;
		meta l4proto udp numgen random mod 100 < 5 drop
	}
}
NFT
done
mkfifo "$fifo"
ip netns exec "$b" "$server" "fast+udp:host=${net}2,port=0" block >"$fifo" &
spid=$!
read -r loc <"$fifo" || { echo "FAIL: server did not start"; exit 1; }
echo "server: $loc"
ip netns exec "$a" "$client" "$loc" "$calls"
rc=$?
dropped=$(ip netns exec "$b" nft list ruleset | grep -o 'drop' | wc -l)
echo "nft rules present: $dropped"
exit $rc
