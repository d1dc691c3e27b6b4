#!/bin/sh
# The API reference builds from include/ferry/*.h with every warning an
# error (docs/Doxyfile): an undocumented public function, struct, field,
# macro or enum fails this test. Skips (77) without doxygen, unless
# FERRY_REQUIRE names doxygen. Usage: test_doxygen.sh SOURCE_ROOT OUT_DIR
set -eu
src=$1
out=$2
if ! command -v doxygen >/dev/null 2>&1; then
	case ",${FERRY_REQUIRE:-}," in
	*,doxygen,*) echo "FAIL: doxygen not installed (FERRY_REQUIRE=doxygen)" >&2; exit 1 ;;
	esac
	echo "SKIP: doxygen not installed (Debian package doxygen)"
	exit 77
fi
rm -rf "$out"
mkdir -p "$out"
cd "$src"
log=$out/warnings.log
if ! FERRY_DOXY_OUT=$out FERRY_DOXY_WARN_AS_ERROR=FAIL_ON_WARNINGS doxygen docs/Doxyfile 2>"$log"; then
	cat "$log" >&2
	echo "FAIL: doxygen reported the warnings above" >&2
	exit 1
fi
if [ -s "$log" ]; then
	cat "$log" >&2
	echo "FAIL: doxygen printed warnings" >&2
	exit 1
fi
[ -f "$out/html/index.html" ] || { echo "FAIL: no html output" >&2; exit 1; }
echo "ok: API reference built without warnings ($(ls "$out/html" | wc -l) files)"
