# plots/metrics.gp: per-call costs from metrics.csv vs message size, two
# panels: packets per call (client tx/rx, server rx/tx; colour = transport,
# line and point style = counter) and user-space bytes copied per call.
# Uses the latency rows (override: -e "mode='throughput'"); falls back to
# throughput rows when there are no latency rows. Writes metrics-<poll>.
load system(sprintf("dirname '%s'", ARG0)).'/common.gp'

if (!exists("mode")) mode = 'latency'
if (words(tlist(metrics, M(mode))) == 0 && mode eq 'latency') mode = 'throughput'
tp = tlist(metrics, M(mode).' && ('.pos(6).' || '.pos(7).' || '.pos(8).' || '.pos(9).')')
tb = tlist(metrics, M(mode).' && '.pos(10))
tzero = tlist(metrics, M(mode).' && $10!="" && $10+0==0')
array K[4] = ['client tx', 'client rx', 'server rx', 'server tx']   # columns 6..9
array KDT[4] = [1, 2, 4, 5]
array KPT[4] = [7, 6, 5, 4]

set lmargin at screen 0.08
set rmargin at screen 0.76
do for [fmt in 'png svg'] {
    eval term(fmt)
    set output out('metrics', fmt)
    set multiplot layout 2,1 title sprintf('Per-call costs, %s runs (%s)', mode, where)
    set title 'packets per call (colour: transport; style: counter)'
    set ylabel 'packets per call'
    eval logy(lspan(metrics, '6 7 8 9', M(mode)) <= 2, 0)
    set xlabel ''
    if (words(tp) == 0) {
        eval nodata('no packet counts in metrics.csv for poll '.poll)
    } else {
        plot for [t in tp] for [k=1:4] metrics skip 1 \
                 using 4:(sel(t, mode) && column(5+k) > 0 ? column(5+k) : NaN) smooth unique \
                 with linespoints lc tidx(t) dt KDT[k] pt KPT[k] notitle, \
             for [t in tp] NaN with lines lc tidx(t) lw 4 title t, \
             for [k=1:4] NaN with linespoints lc rgb 'black' dt KDT[k] pt KPT[k] title K[k]
    }
    set title 'user-space bytes copied per call (counter copy_bytes_per_call)'
    set ylabel 'bytes copied per call'
    eval logy(lspan(metrics, '10', M(mode)) <= 2, 1)
    set xlabel 'message size (bytes)'
    if (strlen(tzero) > 0) {
        set label 97 '0 bytes (not on log axis): '.tzero at graph 0.01, graph 0.95 left front font ',9'
    }
    if (words(tb) == 0) {
        eval nodata(strlen(tzero) > 0 ? 'every transport copied 0 bytes' : 'no copy counts in metrics.csv')
    } else {
        plot for [t in tb] metrics skip 1 \
                 using 4:(sel(t, mode) && $10 > 0 ? $10 : NaN) smooth unique \
                 with linespoints lc tidx(t) dt tdt(t) pt tpt(t) title t, \
             x with lines lc rgb 'gray' dt 3 lw 1 title '= message size'
    }
    unset label 97
    unset multiplot
}
set output
