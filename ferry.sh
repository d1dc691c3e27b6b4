#!/usr/bin/env bash
# ferry.sh — the one entry point: `./ferry.sh test` builds and runs every
# suite (release + ASan/UBSan builds, libFuzzer smoke runs, a TSan build of
# the cross-thread tests), `./ferry.sh bench` runs the main benchmark.
# Each installs the Debian 12 packages it needs first (as root). Works
# from a tree without .git.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
ROOT=$PWD

TEST_PKGS=(meson ninja-build pkg-config gcc g++ clang libclang-rt-14-dev libcmocka-dev strace
	libbenchmark-dev gnuplot-nox iproute2 nftables libibverbs-dev ibverbs-providers
	libpcap-dev tshark doxygen clang-format libjson-c-dev libinih-dev)
# The Soft-RoCE VM that runs the ib suite (../shared/tools/ibvm) installs its
# own host packages (qemu, busybox, perftest) on first use.
IBVM=$ROOT/../shared/tools/ibvm/run-in-ibvm
BENCH_PKGS=("${TEST_PKGS[@]}" ucx-utils)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'ferry.sh: %s\n' "$*" >&2; exit 1; }

# Install whatever of the given packages is missing. apt waits for a held
# dpkg lock instead of failing; the package lists are refreshed only when
# an install from the current lists fails.
need_pkgs() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root or install them"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -y -q)
	if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" </dev/null; then
		"${apt[@]}" update </dev/null
		"${apt[@]}" install --no-install-recommends "${missing[@]}" </dev/null
	fi
}

# meson setup, or reconfigure when the directory already exists.
setup_build() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		rm -rf "$dir"
		meson setup "$dir" "$@" >/dev/null
	fi
}

# ninja, quiet unless it fails: then its last lines say why.
build() {
	local out
	if ! out=$(ninja -C "$@" 2>&1); then
		printf '%s\n' "$out" | tail -n 40 >&2
		die "build failed: ninja -C $*"
	fi
}

run_suites() {
	local dir=$1
	shift
	local args=()
	for s in "$@"; do args+=(--suite "$s"); done
	meson test -C "$dir" --no-rebuild --print-errorlogs "${args[@]}" \
		--timeout-multiplier "${FERRY_TIMEOUT_MULT:-1}"
}

# The installed tree works for a user: pkg-config finds ferry and every
# examples/*.c builds with `cc FILE $(pkg-config --cflags --libs ferry)` and
# runs.
check_install() {
	local dir=$1 dest
	dest=$(readlink -f "$dir")/destdir
	rm -rf "$dest"
	DESTDIR=$dest meson install -C "$dir" --no-rebuild --quiet >/dev/null
	local pc
	pc=$(find "$dest" -name ferry.pc -print -quit)
	[ -n "$pc" ] || die "install produced no ferry.pc"
	export PKG_CONFIG_PATH
	PKG_CONFIG_PATH=$(dirname "$pc")
	export PKG_CONFIG_SYSROOT_DIR=$dest
	local libdir
	libdir=$(dirname "$(find "$dest" -name 'libferry.so' -print -quit)")
	[ -f "$libdir/libferry.a" ] || die "install produced no libferry.a"
	for ex in examples/*.c; do
		local bin
		bin=$dir/example-$(basename "$ex" .c)
		# shellcheck disable=SC2046
		cc -Wall -Wextra -Werror "$ex" -o "$bin" $(pkg-config --cflags --libs ferry)
		LD_LIBRARY_PATH=$libdir "$bin" >/dev/null || die "example $ex failed"
		echo "example $(basename "$ex"): built with pkg-config and ran"
	done
	# libferryfs from the installed tree: decode a file ID, refuse bad options
	cat >"$dir/ferryfs-check.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <ferryfs/ferryfs.h>
int main(void)
{
	ferryfs_info in;
	ferryfs *fs;
	ferryfs_opts o = {.size = sizeof(o)};
	if (ferryfs_stat(NULL, "g1/M00/E4/E3/AQAAAJgYF2vAxi0AAAAAAHZ3KD7k47_2.bin", &in) != 0 ||
	    in.size_at_upload != 3000000 || ferryfs_stat(NULL, "../x", &in) != -EINVAL ||
	    ferryfs_open(&o, &fs) != -EINVAL)
		return 1;
	puts("libferryfs: built with pkg-config and ran");
	return 0;
}
EOF
	# shellcheck disable=SC2046
	cc -Wall -Wextra -Werror "$dir/ferryfs-check.c" -o "$dir/ferryfs-check" \
		$(pkg-config --cflags --libs ferryfs) || die "libferryfs: no build with pkg-config"
	LD_LIBRARY_PATH=$libdir "$dir/ferryfs-check" || die "libferryfs check failed"
	unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
}

# Source checks that need no build: include direction between the layers
# (docs/ARCHITECTURE.md "Layers"). The layer link check is a build target
# (libferry_layer_check, meson.build).
check_sources() {
	log "source checks: include direction (tools/check-layers.py)"
	python3 tools/check-layers.py . || die "an include points up a layer (see above)"
	log "source checks: format (clang-format --dry-run -Werror, .clang-format)"
	local files
	mapfile -t files < <(find src include tests bench examples tools apps -type f \
		\( -name '*.c' -o -name '*.h' -o -name '*.cc' \) -not -path 'tests/fuzz/corpus/*' |
		sort)
	clang-format --dry-run -Werror "${files[@]}" ||
		die "files differ from .clang-format (fix: clang-format -i FILE)"
}

cmd_test() {
	local t0=$SECONDS
	need_pkgs "${TEST_PKGS[@]}"
	log "install step: $((SECONDS - t0)) s"
	check_sources

	local t1=$SECONDS
	log "release build (gcc, -Dbuildtype=release)"
	setup_build build/release -Dbuildtype=release
	build build/release
	log "asan build (clang, ASan+UBSan)"
	CC=clang setup_build build/asan -Dbuildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false
	build build/asan
	# ThreadSanitizer: only the cross-thread tests (suite tsan).
	log "tsan build (clang, TSan; suite tsan's targets only)"
	CC=clang setup_build build/tsan -Dbuildtype=debug -Db_sanitize=thread -Db_lundef=false \
		-Dfuzz=disabled
	build build/tsan tests/e2e/test_threads tests/e2e/test_rpc_semantics
	log "builds: $((SECONDS - t1)) s"

	local t2=$SECONDS
	log "release suites: unit drivers e2e fault fs fs-large bench-smoke fuzz-smoke (corpus replay)"
	run_suites build/release unit drivers e2e fault fs fs-large bench-smoke fuzz-smoke
	log "installed-tree check (pkg-config, examples)"
	check_install build/release
	local t3=$SECONDS
	run_ib_suite build/release
	log "ib suite: $((SECONDS - t3)) s"
	log "asan suites: unit drivers e2e fault-asan fs fuzz-smoke (libFuzzer, 20 s each)"
	local t4=$SECONDS
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		FERRY_TIMEOUT_MULT=3 run_suites build/asan unit drivers e2e fault-asan fs fuzz-smoke
	log "asan suites: $((SECONDS - t4)) s"
	log "tsan suite"
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 FERRY_TIMEOUT_MULT=3 \
		run_suites build/tsan tsan
	log "suites: $((SECONDS - t2)) s; total $((SECONDS - t0)) s"
}

# True when FERRY_REQUIRE names the capability (then a skip is a failure).
required() { [[ ",${FERRY_REQUIRE:-}," == *",$1,"* ]]; }

# Suite ib: the InfiniBand drivers against a real (software) verbs device,
# inside the Soft-RoCE VM, in one boot on the release build. On the host the
# suite is never run (its tests would only skip there).
run_ib_suite() {
	local dir=$1
	if ! grep -Eq 'FERRY_HAVE_INF(UD|RC) 1' "$dir/ferry_config.h"; then
		required ibverbs && die "ib drivers not built (libibverbs-dev missing?)"
		log "ib suite: no InfiniBand driver built, skipped"
		return 0
	fi
	if [ ! -x "$IBVM" ]; then
		required ibvm && die "ib suite: $IBVM not found"
		log "ib suite: $IBVM not found, skipped"
		return 0
	fi
	log "ib suite inside the Soft-RoCE VM (run-in-ibvm, TCG)"
	IBVM_ACCEL=${IBVM_ACCEL:-tcg} IBVM_MEM=${IBVM_MEM:-2048} "$IBVM" \
		"FERRY_REQUIRE=ibverbs meson test -C $dir --no-rebuild --print-errorlogs --suite ib \
		--timeout-multiplier ${FERRY_TIMEOUT_MULT:-1}"
}

# Network namespaces work here (root, ip, and the kernel lets us make one).
netns_usable() {
	[ "$(id -u)" -eq 0 ] && command -v ip >/dev/null || return 1
	local probe=ferry-probe-$$
	ip netns add "$probe" 2>/dev/null || return 1
	ip netns del "$probe"
}

# The sweep again over a real link: a veth pair between two namespaces at
# MTU 1500 and 9000 (servers in one, clients in the other), fast+udp and
# tcp with their raw baselines, into OUT/veth<MTU>/. Full: sizes up to
# 64 MiB, spin only (with block as well both links would take ~8 min, past
# the budget of `./ferry.sh bench` < 15 min); --quick: the quick sizes in
# 3 slices per point (< 3 min in all). Skipped with a note where network
# namespaces are not usable.
bench_veth() {
	local out=$1 quick=$2
	if ! netns_usable; then
		required netns && die "veth sweeps: network namespaces not usable (root? ip?)"
		log "veth sweeps skipped: they need root and network namespaces (ip netns)"
		return 0
	fi
	local opts=(--link veth --transports 'fast+udp,tcp' --no-fileread)
	if [ -n "$quick" ]; then
		opts+=(--quick --slices 3)
	else
		opts+=(--polls spin)
	fi
	for mtu in 1500 9000; do
		log "veth sweep, MTU $mtu ${quick:-(full: 64 B to 64 MiB, spin)} -> $out/veth$mtu"
		mkdir -p "$out/veth$mtu"
		build/release/bench/ferry-bench sweep "${opts[@]}" --mtu "$mtu" \
			--out "$out/veth$mtu" --plots "$ROOT/plots" ||
			log "veth$mtu sweep failed (see above); the loopback results stand"
	done
	# The kernel's own floor at MTU 1500 next to fast+udp and tcp
	# (docs/FAST.md, "The kernel's floor"); about a minute, full runs only.
	if [ -z "$quick" ]; then
		log "kernel floor at MTU 1500 (bench/floor.sh, 3 rounds) -> $out/floor/floor.md"
		mkdir -p "$out/floor"
		bench/floor.sh build/release --sizes 256k,1m --rounds 3 --poll block \
			--out "$out/floor" >"$out/floor/floor.md" &&
			cat "$out/floor/floor.md" ||
			log "floor.sh failed (see above); the sweeps stand"
	fi
}

cmd_bench() {
	local quick=()
	[ "${1:-}" = "--quick" ] && quick=(--quick)
	need_pkgs "${BENCH_PKGS[@]}"
	log "release build"
	setup_build build/release -Dbuildtype=release
	build build/release
	local out=$ROOT/out/bench t0=$SECONDS
	mkdir -p "$out"
	log "loopback sweep ${quick[*]:-(full: all sizes, spin and block)} -> $out"
	build/release/bench/ferry-bench sweep "${quick[@]}" --out "$out" --plots "$ROOT/plots"
	log "results: $out/results.csv   plots: $out/*.png, $out/*.svg"
	bench_veth "$out" "${quick[*]:-}"
	log "sweeps: $((SECONDS - t0)) s"
	# ferryfs on loopback (a tracker, a storage server on /dev/shm, 1 and 8
	# client processes; docs/ferryfs/BENCH.md): --quick's tenth of FastDFS's
	# operation counts in a full run, the smoke test's in a quick one.
	local fsmode=--quick
	[ ${#quick[@]} -gt 0 ] && fsmode=--tiny
	if [ -x build/release/apps/ferryfs/ferryfs-storage ]; then
		log "ferryfs bench ($fsmode) -> $out/ferryfs"
		mkdir -p "$out/ferryfs"
		build/release/apps/ferryfs/ferryfs bench "$fsmode" --out "$out/ferryfs" \
			>"$out/ferryfs/table.md" 2>"$out/ferryfs/progress.log" ||
			log "ferryfs bench failed (see $out/ferryfs/progress.log)"
		cat "$out/ferryfs/table.md"
	fi
	if grep -Eq 'FERRY_HAVE_INF(UD|RC) 1' build/release/ferry_config.h && [ -x "$IBVM" ]; then
		log "InfiniBand drivers inside the Soft-RoCE VM (bench/ib_vm.sh) -> $out/ib.csv"
		IBVM_ACCEL=${IBVM_ACCEL:-tcg} IBVM_MEM=${IBVM_MEM:-2048} "$IBVM" \
			"bash bench/ib_vm.sh build/release out/bench" ||
			log "ib bench failed (see above); the loopback results stand"
	fi
	log "microbenchmarks: build/release/bench/micro/ferry-micro --benchmark_min_time=0.2"
}

case "${1:-}" in
test) cmd_test ;;
bench) cmd_bench "${2:-}" ;;
*)
	echo "usage: ./ferry.sh test | bench [--quick]" >&2
	exit 2
	;;
esac
