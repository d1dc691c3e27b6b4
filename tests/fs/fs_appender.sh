#!/usr/bin/env bash
# fs: appender objects and metadata, over tcp and fast+udp. An object
# uploaded with --appender takes appends (one of 20 MiB: two messages),
# writes at an offset (past the end: the hole reads as zeros), truncate
# down and up (zeros again); after each step the download must equal a
# reference file built locally the same way, and info its size. A plain
# object refuses all three (exit 1, "not an appender"). Metadata: set
# overwrites, --merge merges (a key's new value wins), get lists them
# (also as JSON), a bad key is refused before any call, delete removes the
# metadata with the object: nothing is left in the store.
# usage: fs_appender.sh FERRYFS_STORAGE FERRYFS
set -euo pipefail
storage=$1
cli=$2
. "$(dirname "$0")/lib.sh"
fail() { fs_fail "$@"; }
fs_setup
mkdir -p "$dir/s"
fs_storage "$storage" 2 --set store_path="$dir/s" \
	--set listen='tcp:host=127.0.0.1,port=0' --set listen='fast+udp:host=127.0.0.1,port=0'

head -c 5000 /dev/urandom >"$dir/a"
head -c $((20 * 1048576 + 11)) /dev/urandom >"$dir/b"
head -c 777 /dev/urandom >"$dir/c"
check() { # ID REF WHAT
	"$cli" --server "$loc" download "$1" "$dir/out" || fail "$t: download after $3"
	cmp "$2" "$dir/out" || fail "$t: content after $3 differs"
	local n
	n=$(stat -c %s "$2")
	"$cli" --server "$loc" info "$1" | grep -q "^size now *$n\$" || fail "$t: info size after $3"
}
for loc in "${locs[@]}"; do
	t=${loc%%:*}
	id=$("$cli" --server "$loc" upload --appender "$dir/a") || fail "$t: appender upload"
	cp "$dir/a" "$dir/ref"
	"$cli" --server "$loc" info "$id" | grep -q "^appender *yes" || fail "$t: not an appender ID"
	"$cli" --server "$loc" append "$id" "$dir/b" || fail "$t: append 20 MiB"
	cat "$dir/b" >>"$dir/ref"
	check "$id" "$dir/ref" "append"
	"$cli" --server "$loc" write "$id" 100 "$dir/c" || fail "$t: write inside"
	python3 - "$dir/ref" "$dir/c" 100 <<'PY'
import sys
ref, src, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = bytearray(open(ref, "rb").read()); c = open(src, "rb").read()
if len(d) < off: d.extend(b"\0" * (off - len(d)))
d[off:off + len(c)] = c
open(ref, "wb").write(d)
PY
	check "$id" "$dir/ref" "a write inside"
	size=$(stat -c %s "$dir/ref")
	past=$((size + 4096 + 3))
	"$cli" --server "$loc" write "$id" "$past" "$dir/c" || fail "$t: write past the end"
	python3 - "$dir/ref" "$dir/c" "$past" <<'PY'
import sys
ref, src, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = bytearray(open(ref, "rb").read()); c = open(src, "rb").read()
if len(d) < off: d.extend(b"\0" * (off - len(d)))
d[off:off + len(c)] = c
open(ref, "wb").write(d)
PY
	check "$id" "$dir/ref" "a write past the end (hole)"
	"$cli" --server "$loc" truncate "$id" 1000 || fail "$t: truncate down"
	truncate -s 1000 "$dir/ref"
	check "$id" "$dir/ref" "truncate down"
	"$cli" --server "$loc" truncate "$id" 9000 || fail "$t: truncate up"
	truncate -s 9000 "$dir/ref"
	check "$id" "$dir/ref" "truncate up"
	# a plain object refuses appender operations
	plain=$("$cli" --server "$loc" upload "$dir/c")
	for op in "append $plain $dir/c" "write $plain 0 $dir/c" "truncate $plain 1"; do
		rc=0; "$cli" --server "$loc" $op 2>"$dir/err" || rc=$?
		[ "$rc" -eq 1 ] && grep -q "not an appender" "$dir/err" || fail "$t: plain object took '$op' ($rc)"
	done
	cmp "$dir/c" <("$cli" --server "$loc" download "$plain" -) || fail "$t: plain object changed"
	# metadata
	"$cli" --server "$loc" meta set "$plain" width=1024 height=768 'title=a b=c' ||
		fail "$t: meta set"
	got=$("$cli" --server "$loc" meta get "$plain" | sort | tr '\n' ';')
	[ "$got" = "height=768;title=a b=c;width=1024;" ] || fail "$t: meta get: $got"
	"$cli" --server "$loc" meta set "$plain" --merge width=800 author=me
	got=$("$cli" --server "$loc" meta get "$plain" | sort | tr '\n' ';')
	[ "$got" = "author=me;height=768;title=a b=c;width=800;" ] || fail "$t: merge: $got"
	"$cli" --server "$loc" meta set "$plain" only=1
	got=$("$cli" --server "$loc" meta get "$plain" --json)
	[ "$got" = '{"only": "1"}' ] || fail "$t: overwrite, as JSON: $got"
	rc=0; "$cli" --server "$loc" meta set "$plain" 'bad key=1' 2>/dev/null || rc=$?
	[ "$rc" -eq 2 ] || fail "$t: a bad key exited $rc"
	"$cli" --server "$loc" meta get "$id" | grep -q . && fail "$t: metadata on an object that has none"
	"$cli" --server "$loc" delete "$plain"
	"$cli" --server "$loc" delete "$id"
	[ -z "$(find "$dir/s" -type f)" ] || fail "$t: left: $(find "$dir/s" -type f)"
	echo "ok: $t: append, write (hole), truncate, refusals, metadata set/merge/get, delete"
done
fs_storage_stop
