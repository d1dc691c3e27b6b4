# Sourced by the shell tests (tests/*/*.sh): a missing capability skips the
# test (exit 77) on other people's machines, and fails it where
# FERRY_REQUIRE names the capability (CI: .ci/run), since a skip there
# would hide that the test never ran.
#   ferry_skip CAP WHY      skip, or fail when CAP is required
#   ferry_need_netns        root, ip, and a network namespace can be made
ferry_skip() {
	local cap=$1
	shift
	case ",${FERRY_REQUIRE:-}," in
	*,"$cap",*) echo "FAIL: $cap required: $*"; exit 1 ;;
	esac
	echo "SKIP: $*"
	exit 77
}

ferry_need_netns() {
	[ "$(id -u)" -eq 0 ] || ferry_skip netns "needs root for network namespaces"
	command -v ip >/dev/null || ferry_skip netns "no ip (iproute2)"
	local probe=ferry-probe-$$
	ip netns add "$probe" 2>/dev/null || ferry_skip netns "cannot create network namespaces"
	ip netns del "$probe"
}
