# plots/hist.gp: the fast transport's own distributions from
# DIR/histograms.csv (summed over the sweep's measured slices): round-trip
# samples of its retransmission timer and the congestion window when a burst
# starts, per transport and side. Writes hist-<poll>.png/.svg.
load sprintf('%s/common.gp', system('dirname '.ARG0))
hist = dir.'/histograms.csv'
hrows(n) = system(sprintf("awk -F, 'NR>1 && $2==\"%s\" && $4==\"%s\"' '%s' 2>/dev/null | wc -l", poll, n, hist)) + 0
series(n) = system(sprintf("awk -F, 'NR>1 && $2==\"%s\" && $4==\"%s\" {print $1\"/\"$3}' '%s' 2>/dev/null | sort -u | tr '\\n' ' '", poll, n, hist))
hsel(s, n) = (strcol(1).'/'.strcol(3)) eq s && strcol(2) eq poll && strcol(4) eq n
do for [fmt in 'png svg'] {
	eval term(fmt)
	set output out('hist', fmt)
	set multiplot layout 1,2 title sprintf('fast transport distributions (%s), summed over the sweep', where)
	set key top right font ',9'
	set grid
	set logscale x
	set xlabel 'RTT sample (µs)'
	set ylabel 'samples (count)'
	set title 'round-trip samples behind the RTO'
	if (hrows('fast.rtt_us') > 0) {
		s1 = series('fast.rtt_us')
		plot for [i=1:words(s1)] hist using (hsel(word(s1,i), 'fast.rtt_us') ? $5 : NaN):6 \
			with steps title word(s1,i)
	} else { eval nodata('no fast rows') }
	unset logscale x
	set xlabel 'congestion window (fragments)'
	set ylabel 'bursts (count)'
	set title 'window when a burst starts'
	set xrange [0:68]
	set logscale y
	if (hrows('fast.cwnd_frags') > 0) {
		s2 = series('fast.cwnd_frags')
		plot for [i=1:words(s2)] hist using (hsel(word(s2,i), 'fast.cwnd_frags') ? $5 + 0.4*(i-1) : NaN):6 \
			with impulses lw 4 title word(s2,i)
	} else { eval nodata('no fast rows') }
	unset logscale y
	set autoscale x
	unset multiplot
}
