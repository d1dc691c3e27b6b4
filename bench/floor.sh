#!/bin/bash
# bench/floor.sh BUILD_DIR [--mtu N] [--sizes 64k,256k,1m,4m] [--rounds 3]
#                 [--poll spin|block] [--out DIR]
#
# The kernel's floor next to ferry, across a veth pair (root): READs of
# SIZE bytes with 1 call in flight (latency: round trip) and 8 (throughput:
# MB/s), spin mode unless --poll block, client on CPU 0 and server on CPU 1,
# for
#   floor-udp-gso  ferry-floor: UDP_SEGMENT trains and UDP_GRO, no ferry code
#   fast+udp       ferry-bench
#   floor-tcp      ferry-floor: plain TCP, send/recv
#   tcp            ferry-bench
# in rounds, every row once per round, and a table of median (min–max over
# rounds) per row, with each row's ratio to tcp of the same round (above 1 =
# better than tcp). Where floor-udp-gso itself is below tcp, no UDP
# transport can match tcp on that link with this kernel (docs/FAST.md,
# "The kernel's floor").
set -euo pipefail
die() { printf 'floor.sh: %s\n' "$*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: bench/floor.sh BUILD_DIR [--mtu N] [--sizes LIST] [--rounds N] [--out DIR]"
build=$1; shift
mtu=1500 sizes=64k,256k,1m,4m rounds=3 out=out/floor poll=spin
while [ $# -gt 0 ]; do
	case $1 in
	--mtu) mtu=$2; shift 2 ;;
	--sizes) sizes=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--poll) poll=$2; shift 2 ;;
	*) die "unknown option $1" ;;
	esac
done
bench=$build/bench/ferry-bench floor=$build/bench/ferry-floor
[ -x "$bench" ] && [ -x "$floor" ] || die "no $bench or $floor: build first (meson compile -C $build)"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
seg=$((mtu - 28))
pin_cli=() pin_srv=()
if [ "$(nproc)" -ge 2 ]; then pin_cli=(taskset -c 0) pin_srv=(taskset -c 1); fi

a=ferry-floor-s$$ b=ferry-floor-c$$
cleanup() {
	ip netns pids "$a" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns pids "$b" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$a" 2>/dev/null || true
	ip netns del "$b" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$a"; ip netns add "$b"
ip link add fl0 netns "$a" type veth peer name fl1 netns "$b"
ip -n "$a" addr add 10.239.0.1/24 dev fl0; ip -n "$b" addr add 10.239.0.2/24 dev fl1
for s in "$a fl0" "$b fl1"; do
	set -- $s
	ip -n "$1" link set lo up
	ip -n "$1" link set "$2" mtu "$mtu" up
	ip netns exec "$1" ethtool -K "$2" gro on >/dev/null 2>&1 ||
		echo "floor.sh: note: GRO stays off on $2 (ethtool missing or refused)" >&2
done
host=10.239.0.1
mkdir -p "$out"
res=$out/floor-mtu$mtu.jsonl
: >"$res"

bytes() { # 64k -> 65536
	local v=${1%[kKmM]}
	case $1 in *[kK]) echo $((v * 1024)) ;; *[mM]) echo $((v * 1048576)) ;; *) echo "$v" ;; esac
}
calls_for() { # 1 GiB per point, 200 to 20000 calls
	local n=$((1073741824 / $(bytes "$1")))
	[ "$n" -lt 200 ] && n=200
	[ "$n" -gt 20000 ] && n=20000
	echo "$n"
}
spin=; [ "$poll" = spin ] && spin=spin

ip netns exec "$a" "${pin_srv[@]}" "$bench" server --poll "$poll" \
	--listen "fast+udp:host=$host,port=9600" --listen "tcp:host=$host,port=9601" \
	>"$out/ferry-server.log" 2>&1 &
sleep 0.5
total=$((rounds * $(echo "$sizes" | tr ',' '\n' | wc -l) * 8)) done=0
for r in $(seq "$rounds"); do
	for s in ${sizes//,/ }; do
		size=$(bytes "$s")
		for inflight in 1 8; do
			mode=latency; [ "$inflight" -gt 1 ] && mode=throughput
			for row in floor-udp-gso fast+udp floor-tcp tcp; do
				done=$((done + 1))
				printf '\rfloor.sh: round %d/%d, %s %s, %-13s (%d/%d)   ' "$r" "$rounds" \
					"$s" "$mode" "$row" "$done" "$total" >&2
				case $row in
				floor-*)
					kind=${row#floor-}; kind=${kind%-gso}
					ip netns exec "$a" "${pin_srv[@]}" "$floor" server "$kind" 9700 "$seg" \
						$spin >"$out/srv.json" 2>>"$out/floor-server.log" &
					spid=$!
					sleep 0.3
					line=$(ip netns exec "$b" "${pin_cli[@]}" "$floor" client "$kind" "$host" \
						9700 "$seg" "$size" "$(calls_for "$s")" "$inflight" $spin) || line=
					wait "$spid" || true
					scpu=$(sed -n 's/.*"server_cpu_us_per_op": \([0-9.]*\).*/\1/p' "$out/srv.json")
					[ -n "$line" ] &&
						echo "${line%\}}, \"server_cpu_us_per_op\": ${scpu:-0}, \"round\": $r}" >>"$res"
					;;
				*)
					port=9600; [ "$row" = tcp ] && port=9601
					ip netns exec "$b" "${pin_cli[@]}" "$bench" client --poll "$poll" --mode "$mode" \
						--concurrency "$inflight" --connect "$row:host=$host,port=$port" --op read \
						--sizes "$s" --duration 2s --json - 2>>"$out/ferry-client.log" |
						sed "s/}\$/, \"round\": $r}/" >>"$res" || true
					;;
				esac
			done
		done
	done
done
printf '\n' >&2
python3 - "$res" "$mtu" "$poll" <<'EOF'
import json, statistics, sys
rows = {}
for l in open(sys.argv[1]):
    try:
        d = json.loads(l)
    except ValueError:
        continue
    k = (d["transport"], d["mode"], int(d["size"]))
    rows.setdefault(k, {})[d["round"]] = d
def fig(d, mode):
    return float(d["median_us"] if mode == "latency" else d["mb_per_s"])
def rng(x, f):
    return (f + " (" + f + "–" + f + ")") % (statistics.median(x), min(x), max(x)) if x else "–"
print("veth, MTU %s, %s mode; median (min–max) over rounds; vs tcp: the row over tcp"
      " of the same round, above 1 = better" % (sys.argv[2], sys.argv[3]))
for mode, unit in (("latency", "RTT µs"), ("throughput", "MB/s")):
    print()
    print("| size | row | %s | vs tcp | server CPU µs/call | errors |" % unit)
    print("|---:|---|---:|---:|---:|---:|")
    for size in sorted({k[2] for k in rows if k[1] == mode}):
        tcp = rows.get(("tcp", mode, size), {})
        for t in ("floor-udp-gso", "fast+udp", "floor-tcp", "tcp"):
            v = rows.get((t, mode, size), {})
            if not v:
                print("| %d | %s | (no result) | | | |" % (size, t))
                continue
            figs = [fig(d, mode) for d in v.values()]
            ratios = []
            for r, d in v.items():
                if r in tcp and fig(d, mode) > 0:
                    a, b = fig(d, mode), fig(tcp[r], mode)
                    ratios.append(b / a if mode == "latency" else a / b)
            cpu = [float(d["server_cpu_us_per_op"]) for d in v.values()]
            err = sum(int(d.get("errors", 0)) for d in v.values())
            print("| %d | %s | %s | %s | %s | %d |" % (size, t, rng(figs, "%.0f"),
                  rng(ratios, "%.2f"), rng(cpu, "%.0f"), err))
EOF
