#!/bin/sh
# The ABI of libferry.so (docs/ABI.md): every dynamic symbol it defines is a
# public ferry_* function (never an internal ferry__* or anything else), and
# every one carries the version node FERRY_<soversion>. Fails on any other
# symbol. Usage: test_abi.sh LIBFERRY.SO NODE
set -eu
lib=$1
node=$2
skip() {
	case ",${FERRY_REQUIRE:-}," in
	*,binutils,*) echo "FAIL: $1" >&2; exit 1 ;;
	esac
	echo "SKIP: $1"
	exit 77
}
command -v nm >/dev/null 2>&1 || skip "nm not installed"
command -v objdump >/dev/null 2>&1 || skip "objdump not installed"
[ -f "$lib" ] || { echo "FAIL: no $lib" >&2; exit 1; }

bad=0
# nm: names (version after @@ on binutils >= 2.35).
nm -D --defined-only "$lib" | awk -v node="$node" '
	$NF == node && $(NF-1) == "A" { next }   # the version node itself
	{
		n++
		name = $NF; ver = ""
		i = index(name, "@")
		if (i > 0) { ver = substr(name, i); name = substr(name, 1, i - 1) }
		if (name !~ /^ferry_[a-z0-9][a-z0-9_]*$/) { print "not a public ferry_ symbol: " $0; bad++ }
		else if (ver != "" && ver != "@@" node) { print "wrong version: " $0; bad++ }
	}
	END { if (n == 0) { print "no symbols defined"; bad++ } exit bad != 0 }' || bad=1

# objdump -T: the version column of every defined dynamic symbol.
objdump -T "$lib" | awk -v node="$node" '
	/^[0-9a-f]+ / && $0 !~ /\*UND\*/ {
		name = $NF; ver = $(NF-1)
		if (name == node && ver == node) next
		n++
		if (ver != node) { print "symbol without version " node ": " $0; bad++ }
		if (name !~ /^ferry_[a-z0-9][a-z0-9_]*$/) { print "not a public ferry_ symbol: " $0; bad++ }
	}
	END { if (n == 0) { print "objdump found no defined symbols"; bad++ } exit bad != 0 }' || bad=1

# The soname carries the soversion the node is named after.
want_so="libferry.so.${node#FERRY_}"
objdump -p "$lib" | grep -q "SONAME *$want_so\$" || { echo "SONAME is not $want_so" >&2; bad=1; }

# Spot checks: public entry points are there, internals are not.
for sym in ferry_ctx_create ferry_session_open ferry_session_open_opts ferry_strerror; do
	nm -D --defined-only "$lib" | grep -q " $sym@@$node\$" ||
		{ echo "missing exported $sym@@$node" >&2; bad=1; }
done
if [ "$bad" -ne 0 ]; then
	echo "FAIL: libferry.so exports something besides ferry_*@$node" >&2
	exit 1
fi
echo "ok: $(nm -D --defined-only "$lib" | grep -c " ferry_") symbols, all ferry_*@@$node"
