# plots/ratio.gp: ratio_vs_raw of results.csv vs message size for every
# non-raw transport, two panels: latency (ferry / raw: lower is better) and
# throughput (ferry / raw: higher is better). Reference lines: 1 (as fast as
# raw) and the +15% target, which for throughput is 1/1.15 (the same
# per-call cost as +15% latency). Writes ratio-<poll>.
load system(sprintf("dirname '%s'", ARG0)).'/common.gp'

nonraw = '$1 !~ /^raw-/ && '.pos(12)
set yrange [0:*]
set offsets graph 0.03, graph 0.03, graph 0.08, 0
set lmargin at screen 0.09
set rmargin at screen 0.76
do for [fmt in 'png svg'] {
    eval term(fmt)
    set output out('ratio', fmt)
    set multiplot layout 2,1 title sprintf('Ratio to the raw-socket baseline (%s)', where)
    do for [p=1:2] {
        mode = p == 1 ? 'latency' : 'throughput'
        target = p == 1 ? 1.15 : 1/1.15
        ts = tlist(results, M(mode).' && '.nonraw)
        set title p == 1 ? 'latency: lower is better (target: at most +15%)' \
                         : 'throughput: higher is better (target: at least 1/1.15)'
        set ylabel sprintf("ratio to raw baseline\n(%s)", \
                           p == 1 ? 'lower is better for latency' : 'higher is better for throughput')
        set xlabel p == 2 ? 'message size (bytes)' : ''
        if (words(ts) == 0) {
            eval nodata('no non-raw '.mode.' ratios for poll '.poll)
        } else {
            plot for [t in ts] results skip 1 \
                     using 4:(sel(t, mode) ? $12 : NaN) smooth unique \
                     with linespoints lc tidx(t) dt tdt(t) pt tpt(t) title t, \
                 1 with lines lc rgb 'black' dt 3 lw 1 title 'raw baseline = 1', \
                 target with lines lc rgb '#d62728' dt 2 lw 1.5 title p == 1 ? 'target +15% (1.15)' : 'target 1/1.15 (0.87)'
        }
    }
    unset multiplot
}
set output
