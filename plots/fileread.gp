# plots/fileread.gp: the file-read comparison, the fileread rows of
# results.csv (FILEREAD: the server answers with a file region, the client
# receives it into a file with ferry_call_into_fd; splice moves it with
# sendfile/splice, tcp copies it with pread+send and recv+write). Two
# panels vs file size: throughput (mb_per_s; each non-reference point
# labelled with its ratio to the reference, tcp) and CPU time per file read
# on each side (client_cpu_us_per_op solid and filled, server_cpu_us_per_op
# dashed and open). Writes fileread-<poll> (the sweep runs these rows with
# poll block).
load system(sprintf("dirname '%s'", ARG0)).'/common.gp'

F = M('fileread')
tt = tlist(results, F.' && '.pos(8))
tl = tlist(results, F.' && '.pos(8).' && $11 != $1')   # compared with a reference: labelled
tc = tlist(results, F.' && '.pos(9))
tsv = tlist(results, F.' && '.pos(10))
set xlabel 'file size (bytes)'
set xtics ('256Ki' 262144, '1Mi' 1048576, '2Mi' 2097152, '4Mi' 4194304, '8Mi' 8388608, \
           '16Mi' 16777216, '32Mi' 33554432, '64Mi' 67108864, '128Mi' 134217728)
set offsets graph 0.05, graph 0.05, graph 0.12, graph 0.05
set lmargin at screen 0.09
set rmargin at screen 0.76
do for [fmt in 'png svg'] {
    eval term(fmt)
    set output out('fileread', fmt)
    set multiplot layout 2,1 title sprintf('File read: file region -> ferry_call_into_fd, %s vs %s (%s)', \
                                           'splice (sendfile + splice)', 'tcp (pread+send, recv+write)', where)
    set title 'throughput (higher is better; label: ratio to the reference row, tcp)'
    set ylabel 'throughput (MB/s, 10^6 bytes)'
    set xlabel ''
    # linear from 0: file sizes change the rate far less than a decade
    unset logscale y
    set yrange [0:*]
    set ytics autofreq
    set mytics default
    set format y '%g'
    if (words(tt) == 0) {
        eval nodata('no fileread rows for poll '.poll)
    } else {
        plot for [t in tt] results skip 1 \
                 using 4:(sel(t, 'fileread') ? $8 : NaN) smooth unique \
                 with linespoints lc tidx(t) dt tdt(t) pt tpt(t) title t, \
             for [t in tl] results skip 1 \
                 using 4:(sel(t, 'fileread') ? $8 : NaN):(sprintf('%.2fx', $12)) \
                 with labels offset 0,1 font ',9' tc rgb '#444444' notitle
    }
    set title 'CPU time per file read (lower is better; client solid, server dashed)'
    set ylabel 'CPU time per file read (µs)'
    set xlabel 'file size (bytes)'
    set yrange [*:*]
    eval logy(lspan(results, '9 10', F) <= 3, 0)
    if (words(tc) + words(tsv) == 0) {
        eval nodata('no fileread CPU times for poll '.poll)
    } else {
        plot for [t in tc] results skip 1 \
                 using 4:(sel(t, 'fileread') ? $9 : NaN) smooth unique \
                 with linespoints lc tidx(t) dt 1 pt tpt(t) title t.' client', \
             for [t in tsv] results skip 1 \
                 using 4:(sel(t, 'fileread') ? $10 : NaN) smooth unique \
                 with linespoints lc tidx(t) dt 2 pt tpt(t) - 1 title t.' server'
    }
    unset multiplot
}
set output
