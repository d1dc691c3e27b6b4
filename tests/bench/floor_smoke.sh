#!/usr/bin/env bash
# bench-smoke: bench/floor.sh for one size and one round across its veth
# pair: every row (the raw floor-udp-gso and floor-tcp, ferry's fast+udp
# and tcp) has a result in both modes with no errors and the right size,
# the table is printed, and the namespaces are gone afterwards. Skips (77)
# without root or network namespaces unless FERRY_REQUIRE names netns.
# usage: floor_smoke.sh SOURCE_ROOT BUILD_ROOT
set -euo pipefail
src=$1
build=$2
. "$(dirname "$0")/../common/skip.sh"
ferry_need_netns

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$src/bench/floor.sh" "$build" --sizes 64k --rounds 1 --out "$out" >"$out/table.txt"
cat "$out/table.txt"
python3 - "$out/floor-mtu1500.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
got = {(d["transport"], d["mode"]) for d in rows}
want = {(t, m) for t in ("floor-udp-gso", "fast+udp", "floor-tcp", "tcp")
        for m in ("latency", "throughput")}
missing = want - got
assert not missing, "rows missing: %s" % sorted(missing)
for d in rows:
    assert int(d["size"]) == 65536, d
    assert int(d["errors"]) == 0, d
    fig = float(d["median_us"] if d["mode"] == "latency" else d["mb_per_s"])
    assert fig > 0, d
print("ok: %d rows" % len(rows))
PY
grep -q '| 65536 | fast+udp |' "$out/table.txt"
if ip netns list | grep -q "ferry-floor-"; then
	echo "FAIL: floor.sh left its namespaces behind"
	exit 1
fi
