#!/bin/sh
# plots/all.sh DIR [poll...]: draw every figure of plots/*.gp from
# DIR/results.csv and DIR/metrics.csv into DIR (PNG and SVG; titles say the
# link of results.csv's link column, file names too when it is not lo,
# e.g. latency-spin-veth1500.png), once per poll
# mode: the ones given, or else every poll mode of the latency and
# throughput rows of results.csv (spin when it has none). The file-read
# figure (fileread.gp) is drawn once per poll mode of the fileread rows
# (the sweep measures those with poll block), and not at all without such
# rows. Prints the files written; exits non-zero if any gnuplot run fails.
set -u
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
	echo "usage: $0 DIR [poll...]" >&2
	exit 2
fi
dir=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$dir" ] || { echo "$0: $dir: not a directory" >&2; exit 2; }
[ -r "$dir/results.csv" ] || echo "$0: warning: $dir/results.csv missing; figures will say 'no data'" >&2
case $dir in *"'"*) echo "$0: DIR must not contain a single quote" >&2; exit 2 ;; esac

polls=$*
fpolls=$(awk -F, 'NR > 1 && $3 == "fileread" && $2 != "" { print $2 }' "$dir/results.csv" 2>/dev/null | sort -u)
if [ -z "$polls" ]; then
	polls=$(awk -F, 'NR > 1 && $2 != "" && $3 != "fileread" { print $2 }' "$dir/results.csv" 2>/dev/null | sort -u)
	[ -n "$polls" ] || polls=spin
fi

stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
status=0
for poll in $polls; do
	for script in latency throughput ratio cpu metrics hist; do
		if ! gnuplot -e "dir='$dir'; poll='$poll'" "$here/$script.gp"; then
			echo "$0: gnuplot $script.gp failed (poll=$poll)" >&2
			status=1
		fi
	done
done
for poll in $fpolls; do
	if ! gnuplot -e "dir='$dir'; poll='$poll'" "$here/fileread.gp"; then
		echo "$0: gnuplot fileread.gp failed (poll=$poll)" >&2
		status=1
	fi
done
find "$dir" -maxdepth 1 -type f \( -name '*.png' -o -name '*.svg' \) -newer "$stamp" | sort
exit $status
