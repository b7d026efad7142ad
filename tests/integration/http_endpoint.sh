#!/usr/bin/env bash
# The coordinator's HTTP endpoint (/metrics, /healthz) against a hostile
# neighbour on the same host, with a real coordinator and catalog:
# - 200 sockets held open without a request (and more dribbling a head one
#   byte at a time) do not starve /healthz or /metrics: each still answers
#   within seconds, and a silent socket is closed after the head deadline;
# - /metrics asks for its bearer token (401 without it or with a wrong one,
#   200 with it); /healthz stays open;
# - /metrics renders at most once per [coordinator] metrics_cache however
#   fast it is asked (coffer_metrics_rendered_timestamp_seconds);
# - a metrics_listen beyond loopback without a token is refused at load,
#   and so is a token file that group or others can read.
source "$(dirname "$0")/lib.sh"
t_init http_endpoint
bg=()
cleanup_bg() {
	local p
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap cleanup_bg EXIT

catalog_start "$T/pg"
pki=$T/pki
pki_make "$pki" alice
mkdir -p "$T/repo"
openssl rand -hex 32 >"$T/metrics.token"
chmod 600 "$T/metrics.token"
token=$(cat "$T/metrics.token")
fleet_coordinator_conf "$T/coordinator.conf" "metrics_listen = 127.0.0.1:0" "metrics_cache = 5s" \
	"metrics_token_file = $T/metrics.token" <<CONF
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
CONF

# --- refused at load ---------------------------------------------------------------------
sed -e 's/^metrics_listen = .*/metrics_listen = 0.0.0.0:0/' -e '/^metrics_token_file/d' "$T/coordinator.conf" >"$T/open.conf"
chmod 600 "$T/open.conf"
if "$COFFER_BIN/coffer-coordinator" check-config -c "$T/open.conf" >"$T/open.out" 2>&1; then
	fail "metrics_listen = 0.0.0.0 without a token was accepted"
fi
grep -q "metrics_listen" "$T/open.out" && grep -q "metrics_token_file" "$T/open.out" ||
	fail "the refusal does not name the key and the fix: $(cat "$T/open.out")"
pass "metrics_listen beyond loopback without a token refused: $(head -1 "$T/open.out" | cut -c1-200)"
sed -i 's/^metrics_listen = .*/&\nmetrics_public = true/' "$T/open.conf"
"$COFFER_BIN/coffer-coordinator" check-config -c "$T/open.conf" >/dev/null 2>&1 ||
	fail "metrics_public = true did not allow it"

fleet_coordinator_up "$T/coordinator.conf" 300
grep -q 'msg="metrics listening".*token=required' "$T/coord.log" || fail "the log does not say a token is required"
grep -qF "$token" "$T/coord.log" && fail "the token is in the coordinator's log"
base_url=http://127.0.0.1:$mport

# --- the token --------------------------------------------------------------------------
code() { curl -s -o "$T/body" -w '%{http_code}' --max-time 10 "$@"; }
[[ $(code "$base_url/metrics") == 401 ]] || fail "/metrics without a token: $(cat "$T/body")"
[[ $(code -H "Authorization: Bearer nottherightone1234" "$base_url/metrics") == 401 ]] ||
	fail "/metrics with a wrong token answered"
[[ $(code -H "Authorization: Bearer $token" "$base_url/metrics") == 200 ]] ||
	fail "/metrics with the token: $(head -3 "$T/body")"
grep -q '^coffer_catalog_up 1$' "$T/body" || fail "the answer lacks coffer_catalog_up 1"
[[ $(code "$base_url/healthz") == 200 ]] || fail "/healthz needs no token: $(cat "$T/body")"
pass "/metrics: 401 without or with a wrong token, 200 with it; /healthz open"

# --- the cache ---------------------------------------------------------------------------
t0=$(now_ms)
for _ in $(seq 40); do
	curl -fsS --max-time 10 -H "Authorization: Bearer $token" "$base_url/metrics" |
		sed -n 's/^coffer_metrics_rendered_timestamp_seconds //p'
done >"$T/stamps"
elapsed=$(($(now_ms) - t0))
renders=$(sort -u "$T/stamps" | wc -l)
[[ $(wc -l <"$T/stamps") == 40 ]] || fail "not every scrape carried its render time: $(wc -l <"$T/stamps")"
allowed=$((2 + elapsed / 5000))
((renders <= allowed)) || fail "$renders renders for 40 scrapes in $elapsed ms (cache 5 s: at most $allowed)"
pass "40 scrapes in $elapsed ms: $renders render(s) (metrics_cache 5s)"

# --- a hostile neighbour -----------------------------------------------------------------
# 200 silent sockets and 40 that dribble a head a byte a second, held for
# 12 s; meanwhile /healthz and /metrics must answer. The holder reports how
# soon the silent ones were closed by the coordinator.
python3 - "$mport" 200 40 12 >"$T/hold.out" 2>&1 <<'PY' &
import socket, sys, time
port, silent, dribble, hold = map(int, sys.argv[1:])
socks, drib, closed_after = [], [], []
t0 = time.monotonic()
for _ in range(silent):
    s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False); socks.append(s)
for _ in range(dribble):
    s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False); drib.append(s)
print("opened", len(socks) + len(drib), flush=True)
open_socks = set(socks)
while time.monotonic() - t0 < hold:
    for s in drib:
        try: s.send(b"G")
        except OSError: pass
    for s in list(open_socks):
        try:
            if s.recv(1) == b"":
                closed_after.append(time.monotonic() - t0); open_socks.discard(s)
        except BlockingIOError: pass
        except OSError:
            closed_after.append(time.monotonic() - t0); open_socks.discard(s)
    time.sleep(0.2)
print("silent closed by the server:", len(closed_after), "of", silent,
      "latest after %.1f s" % (max(closed_after) if closed_after else -1), flush=True)
PY
holder=$!
bg+=("$holder")
for _ in $(seq 50); do grep -q opened "$T/hold.out" && break; sleep 0.1; done
grep -q opened "$T/hold.out" || fail "the holder did not open its sockets: $(cat "$T/hold.out")"
worst=0
for i in $(seq 10); do
	t0=$(now_ms)
	[[ $(code --max-time 5 "$base_url/healthz") == 200 ]] || fail "/healthz starved ($i): $(cat "$T/body")"
	[[ $(code --max-time 5 -H "Authorization: Bearer $token" "$base_url/metrics") == 200 ]] ||
		fail "/metrics starved ($i)"
	d=$(($(now_ms) - t0))
	((d > worst)) && worst=$d
	sleep 0.5
done
wait "$holder" || fail "the holder failed: $(cat "$T/hold.out")"
grep -q "silent closed by the server: 200 of 200" "$T/hold.out" ||
	fail "silent sockets were not all closed by the head deadline: $(cat "$T/hold.out")"
pass "240 hostile sockets held: /healthz and /metrics answered 10 times each (slowest pair $worst ms); $(tail -1 "$T/hold.out")"

# --- a loose token file ------------------------------------------------------------------
chmod 644 "$T/metrics.token"
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
if timeout 20 "$COFFER_BIN/coffer-coordinator" run -c "$T/coordinator.conf" >/dev/null 2>"$T/loose.err"; then
	fail "the coordinator ran with a token file others can read"
fi
grep -q "chmod 600 $T/metrics.token" "$T/loose.err" || fail "the refusal does not give the fix: $(cat "$T/loose.err")"
grep -qF "$token" "$T/loose.err" && fail "the refusal shows the token"
pass "a token file readable by others is refused: $(grep -o 'metrics_token_file.*' "$T/loose.err" | head -1 | cut -c1-160)"
