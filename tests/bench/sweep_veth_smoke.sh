#!/usr/bin/env bash
# bench-smoke: a tiny sweep over a veth pair (--link veth, MTU 1500):
# servers and clients in two network namespaces of the sweep's own. Checks
# that results.csv has link=veth1500 rows for fast+udp, tcp, raw-udp and
# raw-tcp, every row on that link, that ratio_vs_tcp is there for fast+udp,
# that the plots' names carry the link, and that the sweep removed its
# namespaces. Skips (77) without root or network namespaces unless
# FERRY_REQUIRE names netns.
# usage: sweep_veth_smoke.sh FERRY_BENCH PLOTS_DIR JSONQ
set -euo pipefail
bench=$1
plotdir=$2
jsonq=$3 # JSON read with json-c
. "$(dirname "$0")/../common/skip.sh"
ferry_need_netns
plots=(--plots "$plotdir")
command -v gnuplot >/dev/null || plots=(--no-plots)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
"$bench" sweep --tiny --link veth --transports fast+udp,tcp --no-fileread "${plots[@]}" \
	--out "$out" >"$out/log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$out/log"; echo "FAIL: sweep exited $rc"; exit 1; }

grep -q '^link: veth1500 ' "$out/log" || { cat "$out/log"; echo "FAIL: the table does not say the link"; exit 1; }
head -1 "$out/results.csv" | grep -q ',ratio_vs_tcp,link$' ||
	{ echo "FAIL: header $(head -1 "$out/results.csv")"; exit 1; }
for t in fast+udp tcp raw-udp raw-tcp; do
	grep -q "^$t,spin,latency,64,.*,veth1500$" "$out/results.csv" ||
		{ cat "$out/results.csv"; echo "FAIL: no $t veth1500 row"; exit 1; }
done
awk -F, 'NR > 1 && $14 != "veth1500" { print "FAIL: not on veth1500: " $0; bad = 1 }
	END { exit bad }' "$out/results.csv"
grep -q '^fast+udp,spin,latency,64,.*,[0-9.]*,veth1500$' "$out/results.csv" ||
	{ echo "FAIL: fast+udp has no ratio_vs_tcp"; exit 1; }
links=$("$jsonq" "$out/results.json" link | sort -u) || { echo "FAIL: results.json"; exit 1; }
[ "$links" = veth1500 ] || { echo "FAIL: results.json links: $links"; exit 1; }
if [ "${plots[0]}" = --plots ]; then
	[ -s "$out/latency-spin-veth1500.png" ] || { echo "FAIL: no latency-spin-veth1500.png"; exit 1; }
fi
# The namespaces are named after the sweep's pid (the table says which):
# neither may be left.
pid=$(grep -m1 -o 'ferry-sw-a-[0-9]*' "$out/log" | sed 's/.*-//') ||
	{ echo "FAIL: the table names no namespace"; exit 1; }
left=$(ip netns list | grep -E "^ferry-sw-[ab]-$pid( |\$)" || true)
[ -z "$left" ] || { echo "FAIL: namespaces left behind: $left"; exit 1; }
echo "ok: $(($(wc -l <"$out/results.csv") - 1)) rows on veth1500"
