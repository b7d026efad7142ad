#!/usr/bin/env bash
# The daemons speak systemd's notify protocol without systemd: this script
# is the service manager. NOTIFY_SOCKET points at a unix datagram socket a
# small listener (python3) reads, WATCHDOG_USEC asks for a watchdog, and the
# real coordinator and agent run against a real catalog over mutual TLS.
#   - a coordinator that refuses to start (catalog not migrated) never says
#     READY=1;
#   - the coordinator's READY=1 comes when its agent, admin and metrics
#     ports already accept connections (the listener connects to each the
#     moment READY=1 arrives);
#   - WATCHDOG=1 arrives again and again from both (every half WATCHDOG_USEC);
#   - the agent says READY=1 with its next backup, and STATUS= when a
#     backup it was asked for completes;
#   - SIGTERM: STOPPING=1 from both, then a clean exit.
# Timings are generous upper bounds only.
source "$(dirname "$0")/lib.sh"
t_init sdnotify
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer
bg=()
stop_bg() {
	local p
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap stop_bg EXIT

catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 100)"
pki=$T/pki
pki_make "$pki" alice billing-db-1
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "metrics_listen = 127.0.0.1:0" <<CONF
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
CONF

# The service manager's side: one socket per daemon; each datagram is one
# line "<ms> <fields joined by |>". When the coordinator says READY=1 the
# listener connects to every port its log names, at once.
cat >"$T/listen.py" <<'PY'
import os, re, select, socket, sys, time
tdir = sys.argv[1]
socks = {}
for who in ("coord", "agent"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(tdir, who + ".notify"))
    socks[s] = who
open(os.path.join(tdir, "listening"), "w").close()
def ports():
    log = open(os.path.join(tdir, "coord.log")).read()
    found = []
    for msg in ("coordinator listening", "admin endpoint listening", "metrics listening"):
        m = re.search(r'msg="%s".* port=(\d+)' % msg, log)
        found.append(int(m.group(1)) if m else None)
    return found
while True:
    ready, _, _ = select.select(list(socks), [], [], 1.0)
    for s in ready:
        data = s.recv(4096).decode("utf-8", "replace")
        who = socks[s]
        line = "%d %s\n" % (time.monotonic() * 1000, data.replace("\n", "|"))
        with open(os.path.join(tdir, who + ".msgs"), "a") as f:
            f.write(line)
            if who == "coord" and "READY=1" in data.split("\n"):
                result = []
                for p in ports():
                    ok = False
                    if p is not None:
                        c = socket.socket()
                        c.settimeout(1.0)
                        ok = c.connect_ex(("127.0.0.1", p)) == 0
                        c.close()
                    result.append("%s:%s" % (p, "open" if ok else "closed"))
                f.write("PORTS %s\n" % " ".join(result))
PY
python3 "$T/listen.py" "$T" &
bg+=($!)
wait_for 10 test -e "$T/listening" || fail "the notify listener did not start"
msgs() { cat "$T/$1.msgs" 2>/dev/null || true; }
count() { msgs "$1" | grep -c "$2" || true; }

# A coordinator that cannot serve (the catalog has no schema yet) exits
# without READY=1.
rc=0
NOTIFY_SOCKET=$T/coord.notify WATCHDOG_USEC=1000000 \
	timeout 60 "$COFFER_BIN/coffer-coordinator" run -c "$T/coordinator.conf" \
	>/dev/null 2>"$T/refused.log" || rc=$?
((rc != 0)) || fail "the coordinator started on an unmigrated catalog"
sleep 0.5
(($(count coord 'READY=1') == 0)) || fail "READY=1 from a coordinator that refused to start: $(msgs coord)"
pass "a coordinator that refuses to start (exit $rc) never says READY=1"

export NOTIFY_SOCKET=$T/coord.notify WATCHDOG_USEC=1000000
fleet_coordinator_up "$T/coordinator.conf" 300
unset NOTIFY_SOCKET WATCHDOG_USEC
wait_for 20 grep -qs '^PORTS' "$T/coord.msgs" || fail "no READY=1 from the coordinator: $(msgs coord)"
ports=$(sed -n 's/^PORTS //p' "$T/coord.msgs")
[[ $ports != *closed* && $ports != *None* ]] ||
	fail "READY=1 came before every port accepted connections: $ports"
grep -q 'READY=1|STATUS=serving' "$T/coord.msgs" || fail "READY=1 without its status: $(msgs coord)"
pass "coordinator READY=1 once agent, admin and metrics ports accept ($ports)"

fleet_agent_enroll billing 1s 1s
NOTIFY_SOCKET=$T/agent.notify WATCHDOG_USEC=1000000 "$agent" run -c "$T/billing.conf" 2>"$T/agent.log" &
apid=$!
bg+=($apid)
wait_for 20 grep -qs 'READY=1' "$T/agent.msgs" || fail "no READY=1 from the agent: $(msgs agent) $(cat "$T/agent.log")"
grep -q 'msg="agent started"' "$T/agent.log" || fail "READY=1 before the agent logged its start"
grep -q 'READY=1|STATUS=next backup ' "$T/agent.msgs" || fail "agent READY=1 without its next backup: $(msgs agent)"
pass "agent READY=1 after its outbox and loop are up: $(grep -m1 'READY=1' "$T/agent.msgs" | cut -d' ' -f2-)"

# WATCHDOG_USEC=1 s: a ping every 0.5 s. Over 3 s at least 3 from each (a
# generous lower bound: 6 is the rate).
c0=$(count coord 'WATCHDOG=1') a0=$(count agent 'WATCHDOG=1')
sleep 3
c1=$(count coord 'WATCHDOG=1') a1=$(count agent 'WATCHDOG=1')
((c1 - c0 >= 3)) || fail "coordinator sent $((c1 - c0)) WATCHDOG=1 in 3 s"
((a1 - a0 >= 3)) || fail "agent sent $((a1 - a0)) WATCHDOG=1 in 3 s"
grep -q 'msg="watchdog pinging" interval_ms=500' "$T/coord.log" || fail "coordinator did not log its watchdog interval"
pass "WATCHDOG=1 keeps coming: coordinator $((c1 - c0)), agent $((a1 - a0)) in 3 s"

"$cli" backup run --service billing >"$T/out" 2>"$T/err" || fail "backup run: $(cat "$T/err")"
wait_for 60 grep -qs 'STATUS=last backup .* completed' "$T/agent.msgs" ||
	fail "no STATUS for the completed backup: $(grep STATUS "$T/agent.msgs")"
grep -q 'STATUS=logical backup running' "$T/agent.msgs" || fail "no STATUS while the backup ran"
pass "agent STATUS follows a backup: $(grep -o 'STATUS=last backup[^|]*' "$T/agent.msgs" | tail -1)"

kill -TERM "$apid"
arc=0
wait "$apid" || arc=$?
((arc == 0)) || fail "agent exited $arc on SIGTERM"
grep -q 'STOPPING=1' "$T/agent.msgs" || fail "no STOPPING=1 from the agent: $(tail -3 "$T/agent.msgs")"
kill -TERM "$cpid"
crc=0
wait "$cpid" || crc=$?
((crc == 0)) || fail "coordinator exited $crc on SIGTERM"
grep -q 'STOPPING=1' "$T/coord.msgs" || fail "no STOPPING=1 from the coordinator: $(tail -3 "$T/coord.msgs")"
pass "SIGTERM: STOPPING=1 from both, clean exits"
