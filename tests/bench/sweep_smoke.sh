#!/usr/bin/env bash
# bench-smoke: a tiny sweep end to end. Checks that results.csv has exactly
# the documented columns, that every ratio_vs_raw recomputes from the raw
# rows of the same CSV and every ratio_vs_tcp from the tcp rows, that every
# row says link lo, that every transport the build has (sweep --list:
# the udp ones, and the stream drivers tcp and splice when built) has its
# rows, stream ones against raw-tcp, that the file-read comparison (mode
# fileread, splice vs tcp) is there when tcp is built, that the plots were
# written (PNG non-empty, SVG axis labels carry units) and that gnuplot
# exits 0 when run again.
# usage: sweep_smoke.sh FERRY_BENCH PLOTS_DIR
set -euo pipefail
bench=$1
plots=$2
command -v gnuplot >/dev/null || {
	case ",${FERRY_REQUIRE:-}," in
	*,gnuplot,*) echo "FAIL: gnuplot required but missing"; exit 1 ;;
	esac
	echo "SKIP: gnuplot not installed"; exit 77
}
for c in server client raw sweep; do
	"$bench" "$c" --help | grep -q usage || { echo "FAIL: $c --help"; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bench" sweep --tiny --out "$out" --plots "$plots"

want='transport,poll,mode,size,median_us,p99_us,ops_per_s,mb_per_s,client_cpu_us_per_op,server_cpu_us_per_op,raw_ref,ratio_vs_raw,ratio_vs_tcp,link'
got=$(head -1 "$out/results.csv")
[ "$got" = "$want" ] || { echo "FAIL: header is '$got'"; exit 1; }

# Recompute ratios from the CSV alone: latency rows median_us / raw median_us,
# throughput rows mb_per_s / raw mb_per_s, raw rows exactly 1; ratio_vs_tcp
# the other way up for latency (tcp's median / the row's), so that above 1
# is better than tcp in both modes. Every row's link is lo.
awk -F, 'NR > 1 {
	key = $1 "," $2 "," $3 "," $4
	med[key] = $5; mb[key] = $8
	row[NR] = $0
}
END {
	bad = 0; n = 0; raw = 0
	for (i in row) {
		split(row[i], f, ",")
		n++
		if (f[1] ~ /^raw-/) {
			raw++
			if (f[11] != f[1] || f[12] + 0 != 1) { print "FAIL raw row: " row[i]; bad++ }
			continue
		}
		ref = f[11] "," f[2] "," f[3] "," f[4]
		if (!(ref in med)) { print "FAIL no raw row " ref " for: " row[i]; bad++; continue }
		want = f[3] == "latency" ? f[5] / med[ref] : f[8] / mb[ref]
		d = want - f[12]; if (d < 0) d = -d
		if (d > 0.002 * want + 0.0002) { print "FAIL ratio " f[12] " != " want ": " row[i]; bad++ }
	}
	for (i in row) {
		split(row[i], f, ",")
		if (f[14] != "lo") { print "FAIL link not lo: " row[i]; bad++ }
		t = "tcp," f[2] "," f[3] "," f[4]
		if (!(t in med)) {
			if (f[13] != "") { print "FAIL ratio_vs_tcp without a tcp row: " row[i]; bad++ }
			continue
		}
		want = f[3] == "latency" ? med[t] / f[5] : f[8] / mb[t]
		d = want - f[13]; if (d < 0) d = -d
		if (f[13] == "" || d > 0.002 * want + 0.0002) { print "FAIL ratio_vs_tcp " f[13] " != " want ": " row[i]; bad++ }
	}
	if (n < 4 || raw < 2) { print "FAIL: too few rows (" n ", raw " raw ")"; bad++ }
	exit bad > 0
}' "$out/results.csv"

# Every transport row is there for both modes and both sizes: the udp one
# always, the stream drivers when built (their baseline is raw-tcp).
built=$("$bench" sweep --list | awk '$2 == "yes" { print $1 }')
for t in tcp splice; do
	"$bench" sweep --list | grep -q "^$t " || { echo "FAIL: sweep --list has no $t"; exit 1; }
done
for mode in latency throughput; do
	for size in 64 4096; do
		grep -q "^unreliable+udp,spin,$mode,$size," "$out/results.csv" ||
			{ echo "FAIL: no unreliable+udp $mode $size row"; exit 1; }
		for t in tcp splice; do
			case " $(echo $built) " in *" $t "*) ;; *) continue ;; esac
			grep -q "^$t,spin,$mode,$size,.*,raw-tcp,[0-9.]*,[0-9.]*,lo$" "$out/results.csv" ||
				{ echo "FAIL: no $t $mode $size row against raw-tcp"; exit 1; }
		done
	done
done
# File reads: tcp is the reference (ratio 1), splice compared with it.
case " $(echo $built) " in
*" tcp "*)
	grep -q '^tcp,block,fileread,1048576,.*,tcp,1\.0000,1\.0000,lo$' "$out/results.csv" ||
		{ echo "FAIL: no tcp fileread reference row"; exit 1; }
	case " $(echo $built) " in *" splice "*)
		grep -q '^splice,block,fileread,1048576,.*,tcp,[0-9.]*,[0-9.]*,lo$' "$out/results.csv" ||
			{ echo "FAIL: no splice fileread row against tcp"; exit 1; }
	esac
	[ -s "$out/fileread-block.png" ] || { echo "FAIL: no fileread-block.png"; exit 1; }
	;;
esac

pngs=$(find "$out" -name '*.png' -size +1k | wc -l)
[ "$pngs" -ge 2 ] || { echo "FAIL: only $pngs non-empty PNGs"; exit 1; }
for svg in "$out"/*.svg; do
	grep -Eq '\((µs|bytes|MB/s[^)]*|packets per call|bytes copied per call)\)|per call' "$svg" ||
		{ echo "FAIL: $svg has no axis label with units"; exit 1; }
done
[ -s "$out/metrics.csv" ] || { echo "FAIL: no metrics.csv"; exit 1; }
# gnuplot again, directly: exit 0
sh "$plots/all.sh" "$out" >/dev/null
echo "ok: $(($(wc -l <"$out/results.csv") - 1)) rows, $pngs PNGs"
