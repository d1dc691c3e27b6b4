#!/usr/bin/env bash
# fs: libferryfs (test_client) against a storage server on tcp and
# fast+udp, started here and stopped cleanly after.
# usage: fs_client.sh FERRYFS_STORAGE TEST_CLIENT
set -euo pipefail
storage=$1
client=$2
. "$(dirname "$0")/lib.sh"
fs_setup
mkdir -p "$dir/s"
fs_storage "$storage" 2 --set fsync=never --set store_path="$dir/s" \
	--set listen='tcp:host=127.0.0.1,port=0' --set listen='fast+udp:host=127.0.0.1,port=0'
"$client" "${locs[@]}" || fs_fail "test_client"
fs_storage_stop
[ -z "$(find "$dir/s" -type f)" ] || fs_fail "left: $(find "$dir/s" -type f)"
