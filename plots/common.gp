# plots/common.gp: loaded by every plots/*.gp script. Arguments, CSV
# parsing, the two output terminals, per-transport styles and a "no data"
# helper. Scripts run as:  gnuplot -e "dir='OUT'; poll='spin'" plots/<name>.gp

if (!exists("dir")) dir = '.'
if (!exists("poll")) poll = 'spin'
results = dir.'/results.csv'
metrics = dir.'/metrics.csv'

set encoding utf8
set datafile separator ','
set datafile missing NaN   # a filtered-out row (NaN) is skipped; lines stay joined

# Distinct transports (column 1) of the rows of CSV f matching awk condition c.
tlist(f, c) = system(sprintf("awk -F, 'NR>1 && (%s) {print $1}' '%s' 2>/dev/null | sort -u | tr '\\n' ' '", c, f))
# awk conditions: rows of this poll mode and mode m; column n a positive number.
M(m) = sprintf('$2=="%s" && $3=="%s"', poll, m)
pos(n) = sprintf('$%d!="" && $%d+0>0', n, n)
# The same row filter inside plot commands.
sel(t, m) = strcol(1) eq t && strcol(2) eq poll && strcol(3) eq m

# Styles: colour and point type follow a transport across all figures;
# raw-socket baselines are dashed, peer libraries dash-dotted.
alltr = system(sprintf("awk -F, 'FNR>1 {print $1}' '%s' '%s' 2>/dev/null | sort -u | tr '\\n' ' '", results, metrics))
tidx(t) = sum [i=1:words(alltr)] (word(alltr, i) eq t ? i : 0)
tpt(t) = word('7 5 9 11 13 15', tidx(t) % 6 + 1) + 0   # filled; minus 1: open
tdt(t) = t[1:4] eq 'raw-' ? 2 : (t[1:5] eq 'peer-' ? 4 : 1)
array C[10] = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', \
               '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf']
do for [i=1:10] { set linetype i lc rgb C[i] lw 1.5 ps 1.1 }
set linetype cycle 10

# The link the sweep measured (results.csv's link column: lo, veth1500, ...;
# a CSV without the column is lo): every title says it, and the file names
# of a link other than lo carry it, so sweeps of several links can share a
# directory. Override: -e "linkname='veth9000'".
if (!exists("linkname")) linkname = system(sprintf("awk -F, 'NR==1 {for (i = 1; i <= NF; i++) if ($i == \"link\") c = i} NR==2 && c {print $c; exit}' '%s' 2>/dev/null", results))
if (strlen(linkname) == 0) linkname = 'lo'
linkdesc = linkname eq 'lo' ? 'lo (loopback)' \
         : (strlen(linkname) > 4 && linkname[1:4] eq 'veth' ? sprintf('veth pair, MTU %s', linkname[5:]) : linkname)
# For titles: "poll: spin; link: lo (loopback)".
where = sprintf('poll: %s; link: %s', poll, linkdesc)

# Outputs: name-<poll>.png and .svg in dir (name-<poll>-<link> off lo).
term(fmt) = fmt eq 'png' \
    ? "set term pngcairo size 1000,650 font 'sans,10' noenhanced" \
    : "set term svg size 1000,650 dynamic font 'sans,10' noenhanced background rgb 'white'"
out(name, fmt) = sprintf('%s/%s-%s%s.%s', dir, name, poll, linkname eq 'lo' ? '' : '-'.linkname, fmt)
# An empty panel with a note, for missing data (never an error exit).
nodata(why) = sprintf("set label 99 'no data: %s' at graph 0.5,0.5 center front; plot [64:1048576][1:10] NaN notitle; unset label 99", why)

# Axes shared by all figures: message size on a log-2 x axis.
set logscale x 2
set xlabel 'message size (bytes)'
set xtics ('1' 1, '4' 4, '16' 16, '64' 64, '256' 256, '1Ki' 1024, '4Ki' 4096, \
           '16Ki' 16384, '64Ki' 65536, '256Ki' 262144, '1Mi' 1048576, \
           '4Mi' 4194304, '16Mi' 16777216, '64Mi' 67108864)
set autoscale xfix
set autoscale yfix
set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05
set format y '%g'
# Log y axes: labelled 1-2-5 tics when the data span few decades (dense=1),
# else gnuplot's decade tics; si=1 labels byte counts as 1k, 10M, ...
# Use: eval logy(lspan(file, 'columns', cond) <= decades, si).
T125 = ''; T125si = ''
do for [e=-3:9] { do for [m in '1 2 5'] {
    v = (m + 0) * 10.0**e
    T125 = T125.sprintf("%s'%s' %.6g", e == -3 && m eq '1' ? '' : ',', gprintf('%g', v), v)
    T125si = T125si.sprintf("%s'%s' %.6g", e == -3 && m eq '1' ? '' : ',', gprintf('%.0s%c', v), v)
} }
logy(dense, si) = 'set logscale y; set ytics '.(dense ? '('.(si ? T125si : T125).')' : 'autofreq') \
                  .'; set mytics default; set format y '.(si ? "'%.0s%c'" : "'%g'")
# Decades spanned by the positive values of the given columns of matching rows.
lspan(f, cols, c) = system(sprintf("awk -F, -v cols='%s' 'BEGIN {k = split(cols, C, \" \")} NR>1 && (%s) {for (i = 1; i <= k; i++) {v = $C[i] + 0; if (v > 0) {if (!n || v < lo) lo = v; if (!n || v > hi) hi = v; n++}}} END {print n ? log(hi / lo) / log(10) : 0}' '%s' 2>/dev/null || echo 0", cols, c, f)) + 0
set grid xtics ytics mytics lc rgb '#dddddd'
set key outside right top vertical Left reverse samplen 3 spacing 1.1 font ',9'
