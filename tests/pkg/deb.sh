#!/usr/bin/env bash
# The Debian package, installed for real on this machine (CI machines are
# throwaway; run as root): built with CPack from a release build tree
# ($COFFER_BUILD, where ctest runs it; tests/run.sh's build-rel), then
#   dpkg -i: the file layout (binaries, units, man pages, examples, docs),
#     the coffer system user, /etc/coffer and the state directories with
#     their owners and modes, each binary's --version, `man -w`, the
#     installed units through systemd-analyze (security and verify);
#   dpkg -i again (an upgrade in place): an administrator's mode stands;
#   dpkg --purge: every file the package owned is gone, the state
#     directories too, /etc/coffer only when empty (keys live there), the
#     user stays (Debian keeps system users).
# Not exercised here: systemd as PID 1 (none in CI), so postinst's
# daemon-reload/try-restart and prerm's stop take their "no systemd" path;
# tests/integration/sdnotify.sh runs the daemons' notify protocol instead.
set -euo pipefail
: "${COFFER_BUILD:?run through ctest in a release build tree}"
name=deb
fail() {
	echo "FAIL $name: $*" >&2
	exit 1
}
pass() { echo "ok   $name: $*"; }

if [[ $(id -u) != 0 ]]; then
	echo "skip $name: needs root (dpkg -i)"
	exit 77
fi
[[ -f $COFFER_BUILD/CPackConfig.cmake ]] ||
	fail "$COFFER_BUILD has no CPackConfig.cmake: package from a release build (no COFFER_SANITIZE)"
if dpkg-query -W -f='${Status}' coffer 2>/dev/null | grep -q installed; then
	fail "a coffer package is installed already; dpkg --purge coffer first"
fi

T=$(mktemp -d /tmp/coffer-deb.XXXXXX)
installed=false
cleanup() {
	if $installed; then
		dpkg --purge coffer >/dev/null 2>&1 || true
	fi
	rm -f /etc/coffer/deb-test.key
	rmdir /etc/coffer 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

cpack --config "$COFFER_BUILD/CPackConfig.cmake" -G DEB -B "$T" >"$T/cpack.log" 2>&1 ||
	fail "cpack: $(cat "$T/cpack.log")"
deb=$(ls "$T"/coffer_*.deb)
version=$(dpkg-deb -f "$deb" Version)
depends=$(dpkg-deb -f "$deb" Depends)
for d in postgresql-client adduser libpq5 libuv1 libnng1 libssl3 libsystemd0; do
	grep -q "\b$d\b" <<<"$depends" || fail "Depends lacks $d: $depends"
done
pass "built $(basename "$deb"); Depends computed (libraries) plus postgresql-client, adduser"

dpkg -i "$deb" >"$T/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$T/dpkg.log")"
installed=true
dpkg-query -L coffer >"$T/files"

for f in /usr/bin/coffer /usr/bin/coffer-agent /usr/bin/coffer-coordinator; do
	[[ -x $f ]] || fail "$f missing or not executable"
done
for f in /usr/lib/systemd/system/coffer-agent.service /usr/lib/systemd/system/coffer-coordinator.service \
	/usr/share/man/man1/coffer.1.gz /usr/share/man/man1/coffer-agent.1.gz \
	/usr/share/man/man1/coffer-coordinator.1.gz \
	/usr/share/doc/coffer/examples/agent.conf /usr/share/doc/coffer/examples/coordinator.conf \
	/usr/share/doc/coffer/examples/cli.conf /usr/share/doc/coffer/examples/certs.sh \
	/usr/share/doc/coffer/INSTALL.md /usr/share/doc/coffer/copyright \
	/usr/share/doc/coffer/changelog.Debian.gz; do
	[[ -f $f ]] || fail "$f not installed"
done
grep -q '^ExecStart=/usr/bin/coffer-agent run ' /usr/lib/systemd/system/coffer-agent.service ||
	fail "the agent unit does not start /usr/bin/coffer-agent"
# Only what the package ships: nothing under /usr/local, /etc or /var.
if grep -Ev '^/usr/(bin|lib/systemd/system|share/(doc|man|lintian))(/|$)|^/\.$|^/usr(/lib|/lib/systemd|/share)?$' \
	"$T/files" >"$T/stray"; then
	fail "files outside the layout: $(cat "$T/stray")"
fi
pass "layout: $(grep -c . "$T/files") paths under /usr/bin, the units' dir, the docs and man1"

ent=$(getent passwd coffer) || fail "no coffer user after install"
IFS=: read -r _ _ uid _ _ home shell <<<"$ent"
((uid < 1000)) || fail "coffer is not a system user (uid $uid)"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "coffer has a login shell: $shell"
[[ $home == /var/lib/coffer-coordinator ]] || fail "coffer's home is $home"
check_dir() { # PATH OWNER:GROUP MODE
	local got
	got=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || fail "$1 missing"
	[[ $got == "$2 $3" ]] || fail "$1 is $got, want $2 $3"
}
check_dir /etc/coffer root:root 755
check_dir /var/lib/coffer-coordinator coffer:coffer 700
if getent passwd postgres >/dev/null; then
	check_dir /var/lib/coffer-agent postgres:postgres 700
fi
pass "system user coffer (uid $uid, $shell); /etc/coffer, state directories with owners and modes"

for prog in coffer coffer-agent coffer-coordinator; do
	out=$("/usr/bin/$prog" --version) || fail "$prog --version exited $?"
	[[ $out =~ ^$prog\ ${version%-*}( \(.+\))?$ ]] || fail "$prog --version says: $out"
	"/usr/bin/$prog" --help >"$T/help" || fail "$prog --help exited $?"
	grep -q '^commands:' "$T/help" || fail "$prog --help lists no commands"
done
pass "each binary's --version: $(/usr/bin/coffer-agent --version)"

page=$(man -w coffer-agent) || fail "man -w coffer-agent finds nothing"
[[ $page == /usr/share/man/man1/coffer-agent.1.gz ]] || fail "man -w coffer-agent: $page"
man -P cat coffer-coordinator >"$T/man.txt" 2>/dev/null || fail "man coffer-coordinator failed"
grep -q 'check-config' "$T/man.txt" || fail "coffer-coordinator(1) does not list its commands"
pass "man pages: $page"

for unit in coffer-agent.service coffer-coordinator.service; do
	out=$(systemd-analyze security --offline=true --no-pager "/usr/lib/systemd/system/$unit" 2>&1 || true)
	score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
	awk -v s="${score:-99}" 'BEGIN { exit !(s <= 3.0) }' || fail "installed $unit rates ${score:-nothing}"
	# verify works without systemd as PID 1: the unit's syntax, its
	# ExecStart binaries, its Documentation= man pages. Any line is a fault.
	systemd-analyze verify "/usr/lib/systemd/system/$unit" >"$T/verify" 2>&1 ||
		fail "systemd-analyze verify $unit: $(cat "$T/verify")"
	[[ ! -s $T/verify ]] || fail "systemd-analyze verify $unit: $(cat "$T/verify")"
	echo "     $unit: exposure $score; verify: clean"
done
pass "installed units: systemd-analyze security at most 3.0, verify clean"

# An upgrade in place: postinst runs with the old version and must not reset
# what an administrator changed.
chmod 0750 /etc/coffer
echo secret >/etc/coffer/deb-test.key
dpkg -i "$deb" >"$T/dpkg2.log" 2>&1 || fail "dpkg -i again: $(cat "$T/dpkg2.log")"
check_dir /etc/coffer root:root 750
check_dir /var/lib/coffer-coordinator coffer:coffer 700
pass "reinstalled over itself; the administrator's mode on /etc/coffer stands"

dpkg --purge coffer >"$T/purge.log" 2>&1 || fail "dpkg --purge: $(cat "$T/purge.log")"
installed=false
dpkg-query -W -f='${Status}' coffer 2>/dev/null | grep -q installed && fail "coffer still installed"
while read -r f; do
	[[ -d $f ]] && continue
	[[ -e $f ]] && fail "$f left after purge"
done <"$T/files"
for d in /var/lib/coffer-coordinator /var/lib/coffer-agent; do
	[[ -e $d ]] && fail "$d left after purge"
done
[[ -f /etc/coffer/deb-test.key ]] || fail "purge removed a key from /etc/coffer"
rm -f /etc/coffer/deb-test.key
rmdir /etc/coffer
getent passwd coffer >/dev/null || fail "purge removed the coffer user (Debian keeps it)"
pass "purged: no file of the package left, state directories gone, keys in /etc/coffer kept"
