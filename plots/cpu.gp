# plots/cpu.gp: CPU time per call vs message size for the latency rows of
# results.csv: client_cpu_us_per_op (solid, filled points) and
# server_cpu_us_per_op (dashed, open points), colour per transport. Empty
# cells (unknown) are skipped. Writes cpu-<poll> (see out() in common.gp).
load system(sprintf("dirname '%s'", ARG0)).'/common.gp'

tc = tlist(results, M('latency').' && '.pos(9))
tsv = tlist(results, M('latency').' && '.pos(10))
eval logy(lspan(results, '9 10', M('latency')) <= 5, 0)
set ylabel 'CPU time per call (µs)'
set title sprintf('CPU time per call, latency runs (%s; client solid, server dashed)', where)
do for [fmt in 'png svg'] {
    eval term(fmt)
    set output out('cpu', fmt)
    if (words(tc) + words(tsv) == 0) {
        eval nodata('no CPU times for poll '.poll)
    } else {
        plot for [t in tc] results skip 1 \
                 using 4:(sel(t, 'latency') ? $9 : NaN) smooth unique \
                 with linespoints lc tidx(t) dt 1 pt tpt(t) title t.' client', \
             for [t in tsv] results skip 1 \
                 using 4:(sel(t, 'latency') ? $10 : NaN) smooth unique \
                 with linespoints lc tidx(t) dt 2 pt tpt(t) - 1 title t.' server'
    }
}
set output
