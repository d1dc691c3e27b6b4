# plots/latency.gp: round-trip time vs message size, log-log, one series per
# transport (raw-socket baselines dashed). Writes latency-<poll> (median,
# column median_us) and latency-p99-<poll> (column p99_us) from results.csv,
# latency rows of the chosen poll mode.
load system(sprintf("dirname '%s'", ARG0)).'/common.gp'

do for [q=1:2] {
    col = q == 1 ? 5 : 6
    name = q == 1 ? 'latency' : 'latency-p99'
    what = q == 1 ? 'median' : 'p99'
    ts = tlist(results, M('latency').' && '.pos(col))
    eval logy(lspan(results, sprintf('%d', col), M('latency')) <= 5, 0)
    set ylabel sprintf('%s round-trip time (µs)', what)
    set title sprintf('%s round-trip time vs message size (%s; raw baselines dashed)', \
                      q == 1 ? 'Median' : 'p99', where)
    do for [fmt in 'png svg'] {
        eval term(fmt)
        set output out(name, fmt)
        if (words(ts) == 0) {
            eval nodata('no latency rows for poll '.poll)
        } else {
            plot for [t in ts] results skip 1 \
                using 4:(sel(t, 'latency') ? column(col) : NaN) smooth unique \
                with linespoints lc tidx(t) dt tdt(t) pt tpt(t) title t
        }
    }
}
set output
