#!/usr/bin/env bash
# bench/ib_vm.sh BUILD OUT — the InfiniBand benchmark, run inside the
# Soft-RoCE VM (../shared/tools/ibvm/run-in-ibvm; `./ferry.sh bench` does it).
# In one VM boot, against the one verbs device:
#   - latency (64 B ECHO, median RTT): fast+infud next to `ib_send_lat -c UD`,
#     infrc next to `ib_send_lat -c RC` (perftest, the same device and size);
#   - infrc large responses, push against pull, READ throughput at 1, 4 and
#     16 MiB with the server's CPU per op.
# Writes OUT/ib.csv (transport,mode,size,median_us,mb_per_s,server_cpu_us_per_op,ref,ratio)
# and OUT/ib.json (every ferry-bench result line). The VM emulates its CPU
# (TCG) when KVM is not usable: absolute numbers are then many times slower
# than hardware, so read the ratios, measured side by side in the same boot.
set -euo pipefail
BUILD=${1:?usage: ib_vm.sh BUILD OUT}
OUT=${2:?usage: ib_vm.sh BUILD OUT}
BENCH=$BUILD/bench/ferry-bench
JSONQ=$BUILD/bench/jsonq
DEV=${IB_DEV:-rxe0}
GIDX=${IB_GID:-1}
LAT_ITERS=${IB_LAT_ITERS:-2000}
DUR=${IB_DURATION:-2s}
mkdir -p "$OUT"
CSV=$OUT/ib.csv
JSON=$OUT/ib.json
echo "transport,mode,size,median_us,mb_per_s,server_cpu_us_per_op,ref,ratio" >"$CSV"
: >"$JSON"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
say() { printf 'ib bench: %s\n' "$*" >&2; }

# Start a ferry-bench server on LOCATOR; echo its bound locator and pid.
start_server() {
	local fifo
	fifo=$(mktemp -u)
	mkfifo "$fifo"
	"$BENCH" server --listen "$1" --poll spin --cpu 1 >"$fifo" 2>&2 &
	local pid=$!
	pids+=("$pid")
	local loc="" line
	exec 3<"$fifo"
	while IFS= read -r -t 60 line <&3; do
		[ "$line" = ready ] && break
		loc=$line
	done
	exec 3<&-
	rm -f "$fifo"
	[ -n "$loc" ] || { say "server on $1 did not start"; return 1; }
	SERVER_LOC=$loc
	SERVER_PID=$pid
}

# field NAME LINE: NAME of the JSON line LINE (read with json-c: jsonq).
field() { "$JSONQ" - "$1" <<<"$2" || true; }

# ferry-bench client; prints its JSON line.
client() {
	"$BENCH" client --connect "$1" --cpu 0 --server-pid "$SERVER_PID" --json - \
		--timeout 30s "${@:2}" | tail -n 1
}

# perftest latency: median (t_typical) of ITERS exchanges of SIZE bytes.
perftest_lat() {
	local conn=$1 size=$2 port=$3
	taskset -c 1 ib_send_lat -d "$DEV" -x "$GIDX" -c "$conn" -s "$size" -n "$LAT_ITERS" \
		-p "$port" -F >/dev/null 2>&1 &
	local sp=$!
	pids+=("$sp")
	sleep 1
	local out
	out=$(taskset -c 0 ib_send_lat -d "$DEV" -x "$GIDX" -c "$conn" -s "$size" \
		-n "$LAT_ITERS" -p "$port" -F 127.0.0.1 2>&1) || { say "ib_send_lat -c $conn failed: $out"; return 1; }
	wait "$sp" 2>/dev/null || true
	# #bytes #iterations t_min t_max t_typical t_avg ...
	awk -v s="$size" '$1 == s && NF >= 5 { print $5; exit }' <<<"$out"
}

row() { echo "$1,$2,$3,$4,$5,$6,$7,$8" >>"$CSV"; }

say "latency: 64 B, fast+infud vs ib_send_lat -c UD"
ud=$(perftest_lat UD 64 18515)
start_server "fast+infud:dev=$DEV,host=127.0.0.1,port=0"
r=$(client "$SERVER_LOC" --op echo --mode latency --sizes 64 --duration "$DUR" --warmup 0.3s)
echo "$r" >>"$JSON"
m=$(field median_us "$r")
row perftest-ud latency 64 "$ud" "" "" perftest-ud 1
row fast+infud latency 64 "$m" "" "$(field server_cpu_us_per_op "$r")" perftest-ud \
	"$(awk -v a="$m" -v b="$ud" 'BEGIN { printf "%.3f", a / b }')"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

say "latency: 64 B, infrc vs ib_send_lat -c RC"
rc=$(perftest_lat RC 64 18516)
row perftest-rc latency 64 "$rc" "" "" perftest-rc 1
declare -A push_mbs
for mode in push pull; do
	start_server "infrc:dev=$DEV,host=127.0.0.1,port=0,large=$mode"
	r=$(client "$SERVER_LOC" --op echo --mode latency --sizes 64 --duration "$DUR" --warmup 0.3s)
	echo "$r" >>"$JSON"
	m=$(field median_us "$r")
	row "infrc-$mode" latency 64 "$m" "" "$(field server_cpu_us_per_op "$r")" perftest-rc \
		"$(awk -v a="$m" -v b="$rc" 'BEGIN { printf "%.3f", a / b }')"
	for size in 1m 4m 16m; do
		say "throughput: infrc large=$mode READ $size"
		r=$(client "$SERVER_LOC" --op read --mode throughput --concurrency 2 --sizes "$size" \
			--duration "$DUR" --warmup 0.3s)
		echo "$r" >>"$JSON"
		mbs=$(field mb_per_s "$r")
		bytes=$(field size "$r")
		if [ "$mode" = push ]; then
			push_mbs[$size]=$mbs
			ratio=1
		else
			ratio=$(awk -v a="$mbs" -v b="${push_mbs[$size]}" 'BEGIN { printf "%.3f", a / b }')
		fi
		row "infrc-$mode" throughput "$bytes" "$(field median_us "$r")" "$mbs" \
			"$(field server_cpu_us_per_op "$r")" infrc-push "$ratio"
	done
	kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
done
column -s, -t <"$CSV" >&2 || cat "$CSV" >&2
say "results: $CSV"
