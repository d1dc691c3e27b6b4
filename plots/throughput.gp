# plots/throughput.gp: throughput (mb_per_s, MB = 10^6 bytes) vs message
# size for the throughput rows of results.csv, one series per transport
# (raw-socket baselines dashed). Writes throughput-<poll>. Both axes are
# logarithmic: small and large messages differ by orders of magnitude.
load system(sprintf("dirname '%s'", ARG0)).'/common.gp'

ts = tlist(results, M('throughput').' && '.pos(8))
eval logy(lspan(results, '8', M('throughput')) <= 5, 0)
set ylabel 'throughput (MB/s, 10^6 bytes)'
set title sprintf('Throughput vs message size (%s; higher is better; raw baselines dashed)', where)
do for [fmt in 'png svg'] {
    eval term(fmt)
    set output out('throughput', fmt)
    if (words(ts) == 0) {
        eval nodata('no throughput rows for poll '.poll)
    } else {
        plot for [t in ts] results skip 1 \
            using 4:(sel(t, 'throughput') ? $8 : NaN) smooth unique \
            with linespoints lc tidx(t) dt tdt(t) pt tpt(t) title t
    }
}
set output
