#!/usr/bin/env bash
# bench-smoke: ferryfs bench --tiny on tcp and fast+udp: every cell (3 sizes
# x upload/download/delete x 1 and 8 clients) in results.csv with no
# errors and a positive rate, and the table's rows recomputed from the CSV
# (ops/s x size = MB/s for transfers) agree.
# usage: fs_bench_smoke.sh FERRYFS
set -euo pipefail
cli=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$cli" bench --tiny --transports tcp,fast+udp --out "$out" >"$out/table.md" 2>"$out/err" ||
	{ echo "FAIL: bench exited $?"; cat "$out/err"; exit 1; }
python3 - "$out/results.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 2 * 3 * 3 * 2, "rows: %d" % len(rows)
for r in rows:
    assert int(r["errors"]) == 0, r
    ops = float(r["ops_per_s"])
    assert ops > 0, r
    if r["op"] != "delete":
        mb = ops * int(r["size"]) / 1e6
        assert abs(mb - float(r["mb_per_s"])) <= 0.05 * mb + 0.1, r
    assert float(r["p99_us"]) >= float(r["p50_us"]) > 0, r
print("ok: %d cells" % len(rows))
PY
grep -q '| fast+udp | 1048576 | download | 8 |' "$out/table.md" || { echo "FAIL: table"; exit 1; }
