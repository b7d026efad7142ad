#!/usr/bin/env bash
# The wire transport end to end on loopback: a real server (libuv loop, NNG
# contexts, replies from the thread pool) and real clients in threads, with a
# PKI made by deploy/certs.sh. Checks round trips over mutual TLS on
# 127.0.0.1 and ::1, concurrency, every refusal (no client certificate, a
# certificate from another CA, a wrong server name, plain TCP off loopback,
# unusable key files), oversized and garbage input that must not harm the
# server, a server that is down, and a clean stop with requests in flight.
# Every process runs under `timeout`, and the server stops itself anyway.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
t_init net

bin="$COFFER_BIN/net_itest"
[[ -x $bin ]] || fail "$bin is missing: build the net_itest target"
pki="$T/pki"
other="$T/other"
pki_make "$pki" agent-1
pki_client "$other" rogue
srv_tls=(--ca "$pki/ca.crt" --cert "$pki/localhost.crt" --key "$pki/localhost.key")
cli_tls=(--ca "$pki/ca.crt" --cert "$pki/agent-1.crt" --key "$pki/agent-1.key")

# Exit codes of net_itest: 10 - COFFER_E* code.
RC_EUNAVAIL=27
RC_EAUTH=18
RC_EPERM=16
RC_EINVAL=11
RC_ENOENT=14

servers=()
stop_all() {
	local p
	for p in "${servers[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	t_cleanup
}
trap stop_all EXIT

# start_server NAME URL [ARGS...]: sets SPID and SPORT; returns 1 if it fails.
start_server() {
	local name=$1 url=$2
	shift 2
	rm -f "$T/$name.port"
	# --foreground: SIGTERM reaches the server once, not also via its group.
	timeout --foreground 120 "$bin" server "$url" --port-file "$T/$name.port" --seconds 90 "$@" \
		>"$T/$name.out" 2>"$T/$name.err" &
	SPID=$!
	servers+=("$SPID")
	for _ in $(seq 100); do
		[[ -s $T/$name.port ]] && break
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.1
	done
	if [[ ! -s $T/$name.port ]]; then
		wait "$SPID" 2>/dev/null || true
		return 1
	fi
	SPORT=$(cat "$T/$name.port")
}

# stop_server NAME: SIGTERM, then the server must exit 0 with sanitizers quiet.
stop_server() {
	local name=$1 rc=0
	kill -TERM "$SPID"
	wait "$SPID" || rc=$?
	if ((rc != 0)) || grep -q "Sanitizer" "$T/$name.err"; then
		cat "$T/$name.err" >&2
		fail "server $name did not stop cleanly (status $rc)"
	fi
}

# client EXPECTED_RC LABEL URL [ARGS...]
client() {
	local want=$1 label=$2 url=$3 rc=0
	shift 3
	timeout 60 "$bin" client "$url" "$@" >"$T/client.out" 2>"$T/client.err" || rc=$?
	if grep -q "Sanitizer" "$T/client.err"; then
		cat "$T/client.err" >&2
		fail "$label: sanitizer report in the client"
	fi
	if ((rc != want)); then
		cat "$T/client.out" "$T/client.err" >&2
		fail "$label: client exited $rc, expected $want"
	fi
}

# --- mutual TLS on IPv4 loopback -------------------------------------------
start_server v4 "tls+tcp://127.0.0.1:0" "${srv_tls[@]}" --workers 4 ||
	fail "TLS server did not start: $(cat "$T/v4.err")"
client 0 "8x200 over TLS" "tls+tcp://127.0.0.1:$SPORT" "${cli_tls[@]}" --threads 8 --calls 200
grep -q "^ok 1600 unavailable 0$" "$T/client.out" || fail "8x200: $(cat "$T/client.out")"
pass "8 threads x 200 calls over mutual TLS on 127.0.0.1, all answered correctly"
client 0 "name localhost" "tls+tcp://localhost:$SPORT" "${cli_tls[@]}" --calls 5 --size 100000
pass "server name from the url host (localhost), 100 kB messages"

# --- refusals --------------------------------------------------------------
client $RC_EAUTH "no client cert" "tls+tcp://127.0.0.1:$SPORT" --ca "$pki/ca.crt"
grep -q "refused our client certificate" "$T/client.err" || fail "no-cert error: $(cat "$T/client.err")"
pass "a client without a certificate is refused: $(head -c 120 "$T/client.err")..."
client $RC_EAUTH "foreign CA cert" "tls+tcp://127.0.0.1:$SPORT" \
	--ca "$pki/ca.crt" --cert "$other/rogue.crt" --key "$other/rogue.key"
pass "a client certificate from another CA is refused"
client $RC_EAUTH "untrusted server" "tls+tcp://127.0.0.1:$SPORT" \
	--ca "$other/ca.crt" --cert "$other/rogue.crt" --key "$other/rogue.key"
pass "a server certificate from another CA is refused by the client"
client $RC_EAUTH "wrong server name" "tls+tcp://127.0.0.1:$SPORT" "${cli_tls[@]}" \
	--server-name coordinator.example
grep -q 'coordinator.example' "$T/client.err" || fail "wrong-name error does not name it"
pass "a server whose certificate lacks the expected name is refused by the client"
client $RC_EINVAL "key for another cert" "tls+tcp://127.0.0.1:$SPORT" \
	--ca "$pki/ca.crt" --cert "$pki/agent-1.crt" --key "$other/rogue.key"
grep -q "does not belong to certificate" "$T/client.err" || fail "mismatch: $(cat "$T/client.err")"
client $RC_ENOENT "missing key" "tls+tcp://127.0.0.1:$SPORT" \
	--ca "$pki/ca.crt" --cert "$pki/agent-1.crt" --key "$T/nope.key"
grep -q "nope.key" "$T/client.err" || fail "missing key error does not name the file"
openssl genpkey -algorithm ed25519 -out "$T/ed.key" 2>/dev/null
openssl req -x509 -new -key "$T/ed.key" -subj /CN=ed -days 2 -out "$T/ed.crt" 2>/dev/null
client $RC_EINVAL "ed25519" "tls+tcp://127.0.0.1:$SPORT" \
	--ca "$pki/ca.crt" --cert "$T/ed.crt" --key "$T/ed.key"
grep -q "Ed25519" "$T/client.err" || fail "ed25519 error: $(cat "$T/client.err")"
pass "unusable key files are named: mismatched key, missing key, Ed25519 key"
rc=0
timeout 20 "$bin" server "tcp://0.0.0.0:0" --seconds 1 >/dev/null 2>"$T/plain.err" || rc=$?
((rc == RC_EPERM)) || fail "plain tcp on 0.0.0.0 was not refused (status $rc)"
grep -q "refusing plain tcp" "$T/plain.err" || fail "plain tcp error: $(cat "$T/plain.err")"
timeout 20 "$bin" server "tcp://0.0.0.0:0" --insecure --seconds 1 >/dev/null 2>&1 ||
	fail "plain tcp with --insecure was refused"
pass "plain tcp off loopback refused unless insecure"

# --- oversized and garbage input -----------------------------------------
# The client here is deliberately configured past the server's limit (the
# real sender never sends more than COFFER_WIRE_MAX_MSG). What must hold is
# the server side: it drops the oversized request and keeps serving. On
# this side NNG 1.5.2 sometimes leaves the 2 MB send pending after the
# server hangs up, so the client may need killing; both outcomes are fine.
rc=0
timeout 20 "$bin" client "tls+tcp://127.0.0.1:$SPORT" "${cli_tls[@]}" \
	--max-msg 4194304 --size 2000000 --timeout 3000 >"$T/client.out" 2>"$T/client.err" || rc=$?
grep -q "Sanitizer" "$T/client.err" && { cat "$T/client.err" >&2; fail "oversized: sanitizer report"; }
((rc == RC_EUNAVAIL || rc == 124)) || fail "oversized: client exited $rc: $(cat "$T/client.err")"
[[ $rc == 124 ]] && note "oversized: the client's pending send did not end by itself (NNG 1.5.2); killed"
client 0 "after oversized" "tls+tcp://127.0.0.1:$SPORT" "${cli_tls[@]}" --threads 2 --calls 20
pass "a 2 MB request to a 1 MiB server is refused and the server keeps serving"
for n in 1 2 3; do
	# Random bytes where a TLS ClientHello should be, then a hang-up.
	(exec 3<>"/dev/tcp/127.0.0.1/$SPORT" && head -c $((n * 3000)) /dev/urandom >&3) 2>/dev/null || true
done
(exec 3<>"/dev/tcp/127.0.0.1/$SPORT" && sleep 0.2) 2>/dev/null || true
client 0 "after garbage" "tls+tcp://127.0.0.1:$SPORT" "${cli_tls[@]}" --threads 2 --calls 20
pass "garbage bytes and idle connections on the TLS port do not harm the server"
stop_server v4
grep -q "^served " "$T/v4.out" || fail "server printed no summary"
pass "TLS server stopped cleanly: $(cat "$T/v4.out")"

# Plain TCP on loopback: the SP layer itself gets garbage.
start_server plain "tcp://127.0.0.1:0" --workers 2 || fail "plain server: $(cat "$T/plain.err")"
(exec 3<>"/dev/tcp/127.0.0.1/$SPORT" && head -c 5000 /dev/urandom >&3) 2>/dev/null || true
# A valid SP handshake as a REQ peer (protocol 0x30), then a frame claiming
# 2^62 bytes, then one with a request id but no high bit.
(exec 3<>"/dev/tcp/127.0.0.1/$SPORT" &&
	printf '\x00SP\x00\x00\x30\x00\x00' >&3 &&
	printf '\x40\x00\x00\x00\x00\x00\x00\x00' >&3 && sleep 0.1) 2>/dev/null || true
(exec 3<>"/dev/tcp/127.0.0.1/$SPORT" &&
	printf '\x00SP\x00\x00\x30\x00\x00' >&3 &&
	printf '\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x01ab' >&3 && sleep 0.1) 2>/dev/null || true
client 0 "plain after garbage" "tcp://127.0.0.1:$SPORT" --threads 4 --calls 50
stop_server plain
pass "plain tcp on loopback: SP-level garbage and a 2^62-byte frame refused, still serving"

# --- IPv6 loopback ----------------------------------------------------------
if start_server v6 "tls+tcp://[::1]:0" "${srv_tls[@]}"; then
	client 0 "8x200 over ::1" "tls+tcp://[::1]:$SPORT" "${cli_tls[@]}" --threads 8 --calls 200
	grep -q "^ok 1600 unavailable 0$" "$T/client.out" || fail "::1: $(cat "$T/client.out")"
	stop_server v6
	pass "8 threads x 200 calls over mutual TLS on ::1"
else
	note "skipped ::1: $(tail -1 "$T/v6.err")"
fi

# --- server down ------------------------------------------------------------
start_server gone "tls+tcp://127.0.0.1:0" "${srv_tls[@]}" || fail "server did not start"
gone_port=$SPORT
stop_server gone
client $RC_EUNAVAIL "server down" "tls+tcp://127.0.0.1:$gone_port" "${cli_tls[@]}" --timeout 1500
grep -q "no connection to" "$T/client.err" || fail "server-down error: $(cat "$T/client.err")"
pass "with the server down a call fails with EUNAVAIL within its timeout"

# A server that comes up after the client: background redial finds it.
rc=0
timeout 60 "$bin" client "tls+tcp://127.0.0.1:$gone_port" "${cli_tls[@]}" --calls 3 --timeout 15000 \
	>"$T/latec.out" 2>"$T/latec.err" &
late=$!
sleep 0.5
if start_server late "tls+tcp://127.0.0.1:$gone_port" "${srv_tls[@]}"; then
	wait "$late" || rc=$?
	((rc == 0)) || fail "client did not reach a server that started late (status $rc): $(cat "$T/latec.err")"
	stop_server late
	pass "a client started before the server connects once it is up"

else
	wait "$late" || true
	note "skipped late start: port $gone_port was taken meanwhile"
fi

# --- stop with requests in flight ------------------------------------------
start_server busy "tls+tcp://127.0.0.1:0" "${srv_tls[@]}" --workers 2 --inflight 8 ||
	fail "busy server did not start"
timeout 60 "$bin" client "tls+tcp://127.0.0.1:$SPORT" "${cli_tls[@]}" --threads 8 --calls 4 \
	--prefix sleep: --timeout 2000 --allow-unavail >"$T/busyc.out" 2>"$T/busyc.err" &
busy=$!
# Stop once requests are being worked on (each takes 300 ms on the pool).
for _ in $(seq 100); do
	grep -q "peer connected" "$T/busy.err" && break
	sleep 0.1
done
sleep 0.5
stop_server busy
rc=0
wait "$busy" || rc=$?
((rc == 0)) || fail "clients in flight: status $rc: $(cat "$T/busyc.err")"
grep -q "Sanitizer" "$T/busyc.err" && fail "sanitizer report in the busy client"
pass "server stopped with requests in flight, sanitizers quiet: clients $(cat "$T/busyc.out"); server $(cat "$T/busy.out")"
