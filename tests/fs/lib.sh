# Sourced by the fs tests: a scratch directory, and a storage server on
# loopback whose locators the test reads back.
#   fs_setup                    dir (mktemp -d) removed at exit, with the server
#   fs_fail WHY                 FAIL: WHY, then the server log's last lines
#   fs_storage BIN N ARGS...    start BIN --foreground ARGS (log: $dir/log) and
#                               wait for N "listening on" lines: spid, locs[]
#   fs_storage_stop             SIGTERM; a bad exit fails the test
fs_setup() {
	dir=$(mktemp -d)
	spid=
	trap 'fs_cleanup' EXIT
}

fs_cleanup() {
	[ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
	rm -rf "$dir"
}

fs_fail() {
	echo "FAIL: $*"
	[ -f "$dir/log" ] && tail -20 "$dir/log" | sed 's/^/  log: /'
	exit 1
}

fs_storage() {
	local bin=$1 n=$2
	shift 2
	"$bin" --foreground "$@" 2>"$dir/log" &
	spid=$!
	for _ in $(seq 100); do
		[ "$(grep -c 'listening on' "$dir/log" || true)" -ge "$n" ] && break
		sleep 0.1
	done
	mapfile -t locs < <(sed -n 's/.*listening on \(.*\)$/\1/p' "$dir/log")
	[ "${#locs[@]}" -eq "$n" ] || fs_fail "the storage server reported ${#locs[@]} locators, want $n"
}

fs_storage_stop() {
	kill -TERM "$spid"
	wait "$spid" || fs_fail "storage server exit status $? on SIGTERM"
	spid=
}
