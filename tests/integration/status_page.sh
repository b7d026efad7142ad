#!/usr/bin/env bash
# The coordinator's status page (/status on the metrics listener), with a
# real catalog, a real coordinator, two real agents and a real browser
# (Debian's chromium, headless):
# - a service backs up (verified by the coordinator), another one's backup
#   fails (backup_failed stays open); its name is the name rule's edge
#   case (upper case, dot, dash, underscore); a legal hold's reason is
#   hostile HTML (<img src=x onerror=alert(1)>);
# - curl: /status is 401 without the token or with a wrong one, 200 with
#   it, HTML with CSP, nosniff, no-store, no-referrer and DENY; / redirects;
# - chromium renders a copy fetched with the token (it cannot send a
#   bearer header), once as it comes and once with JavaScript off (driven
#   over DevTools, tests/harness/headless.py): the DOM has every section,
#   no script, no img, no on* attribute, the hostile reason as text, and a
#   screenshot; a control page shows JavaScript really is off there;
# - with metrics_public = true and no token, chromium fetches
#   http://127.0.0.1:PORT/status itself;
# - with the catalog stopped, /status answers 503 with "Catalog
#   unreachable since" and the last figures it read.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077
t_init status_page
chmod 755 "$T"
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer
harness=$(cd "$(dirname "$0")/../harness" && pwd)
bg=()
cleanup_bg() {
	local p
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap cleanup_bg EXIT
command -v chromium >/dev/null || fail "chromium is not installed (deploy/install-deps.sh installs it)"

odd=Shop.EU-west_2
hostile='<img src=x onerror=alert(1)>'
catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 1000)"
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1 "$odd-db-1"
mkdir -p "$T/repo"
openssl rand -hex 32 >"$T/metrics.token"
chmod 600 "$T/metrics.token"
token=$(cat "$T/metrics.token")
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 2s" "metrics_listen = 127.0.0.1:0" \
	"metrics_cache = 0s" "metrics_token_file = $T/metrics.token" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = st0123456789abcdef0123456789abcd
catalog_unreachable_after = 5s
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
[service.$odd]
owner = team-shop
schedule = 0 3 * * *
rpo = 1h
retention.daily = 7
CONF
fleet_coordinator_up "$T/coordinator.conf" 300
fleet_agent_enroll billing
# Its database does not exist: its backups fail.
fleet_agent_enroll "$odd"

"$agent" backup -c "$T/billing.conf" >"$T/backup.out" 2>"$T/backup.err" || fail "billing backup: $(tail -3 "$T/backup.err")"
if "$agent" backup -c "$T/$odd.conf" >/dev/null 2>"$T/odd.err"; then fail "a backup of a missing database succeeded"; fi
for svc in billing "$odd"; do
	timeout 60 "$agent" flush -c "$T/$svc.conf" --timeout 30s >/dev/null 2>"$T/flush.err" ||
		fail "flush $svc: $(cat "$T/flush.err")"
done
bid=$("$agent" list -c "$T/billing.conf" --output json | grep -o '"id":"[^"]*"' | tail -1 | cut -d'"' -f4)
[[ -n $bid ]] || fail "no billing backup id"
verified() { "$cli" status --output json 2>/dev/null | grep -qF "$bid"; }
wait_for 30 verified || fail "billing's backup $bid was not verified: $(tail -5 "$T/coord.log")"
# The DR figures the page shows come with coffer status's (no dr.copy here: nothing pending).
"$cli" status --output json | grep -q '"pending_bytes":0' || fail "coffer status lacks dr.pending_bytes"
"$cli" hold add --backup "$bid" --reason "$hostile" >/dev/null 2>"$T/err" || fail "hold add: $(cat "$T/err")"
open_failed() {
	[[ $(psql_at "$ci" -tAc "select count(*) from alerts where state = 'triggered' and check_name = 'backup_failed' and service = '$odd'") == 1 ]]
}
wait_for 30 open_failed || fail "backup_failed did not open for $odd: $(tail -5 "$T/coord.log")"
pass "billing backed up and verified ($bid), held for '$hostile'; $odd's backup failed and backup_failed is open"

# --- curl: the token, the headers ------------------------------------------------------------
url=http://127.0.0.1:$mport
code() { curl -s -D "$T/headers" -o "$T/body" -w '%{http_code}' --max-time 20 "$@"; }
[[ $(code "$url/status") == 401 ]] || fail "/status without a token: $(head -3 "$T/body")"
grep -qi '^WWW-Authenticate: Bearer' "$T/headers" || fail "the 401 does not ask for a bearer token"
[[ $(code -H "Authorization: Bearer wrongwrongwrongwrong" "$url/status") == 401 ]] || fail "/status with a wrong token answered"
grep -q "onerror" "$T/body" && fail "the 401 shows page content"
[[ $(code -H "Authorization: Bearer $token" "$url/status") == 200 ]] || fail "/status with the token: $(head -5 "$T/body")"
cp "$T/body" "$T/status.html"
tr -d '\r' <"$T/headers" >"$T/h200"
for h in "Content-Type: text/html; charset=utf-8" \
	"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'" \
	"X-Content-Type-Options: nosniff" "Cache-Control: no-store" "Referrer-Policy: no-referrer" \
	"X-Frame-Options: DENY"; do
	grep -qiF "$h" "$T/h200" || fail "/status lacks '$h': $(cat "$T/h200")"
done
[[ $(code "$url/") == 302 ]] && grep -qi '^Location: /status' "$T/headers" || fail "/ does not redirect to /status: $(cat "$T/headers")"
grep -qF '&lt;img src=x onerror=alert(1)&gt;' "$T/status.html" || fail "the hold reason is not escaped text"
grep -qiE '<script|<img' "$T/status.html" && fail "the page holds a script or img element"
pass "curl: 401 without or with a wrong token, 200 with it and CSP/nosniff/no-store/no-referrer/DENY; / redirects"

# --- chromium --------------------------------------------------------------------------------
# What every rendering must show: python's HTML parser on chromium's DOM.
check_dom() {
	python3 - "$1" "$bid" "$odd" "$hostile" 2>"$T/dom.err" <<'PY' || fail "DOM of $1: $(cat "$T/dom.err")"
import sys
from html.parser import HTMLParser
path, bid, odd, hostile = sys.argv[1:5]
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.tags = {}; self.text = []; self.onattrs = []; self.ids = []
        self.cells = []; self.in_td = False
    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.onattrs += [k for k, _ in attrs if k.lower().startswith("on")]
        self.ids += [v for k, v in attrs if k == "id"]
        if tag == "td": self.in_td = True; self.cells.append("")
    def handle_endtag(self, tag):
        if tag == "td": self.in_td = False
    def handle_data(self, d):
        self.text.append(d)
        if self.in_td: self.cells[-1] += d
p = P(); p.feed(open(path, encoding="utf-8").read())
text = "".join(p.text)
errs = []
for t in ("script", "img", "iframe", "object", "embed", "form", "a", "link"):
    if p.tags.get(t): errs.append("%d <%s> element(s)" % (p.tags[t], t))
if p.onattrs: errs.append("event handler attributes: %s" % p.onattrs)
for sec in ("services", "alerts", "drills", "dr", "holds"):
    if sec not in p.ids: errs.append("no section " + sec)
if hostile not in p.cells: errs.append("the hold reason is not a cell's text")
for want in (bid, odd, "billing", "backup_failed", "coffer/%s/backup_failed" % odd, "within RPO",
             "no backup", "operator:alice", "Legal holds", "Open alerts", "DR copy lag"):
    if want not in text: errs.append("missing text: " + want)
if errs:
    sys.stderr.write("; ".join(errs) + "\n"); sys.exit(1)
PY
}
mkdir -p "$T/chr1" "$T/chr2" "$T/chr3" "$T/chr4" "$T/chr5"
timeout 30 python3 "$harness/headless.py" "file://$T/status.html" "$T/dom2.html" "$T/status.png" "$T/chr2" 2>"$T/hl.err" ||
	fail "headless chromium without JavaScript: $(cat "$T/hl.err")"
check_dom "$T/dom2.html"
timeout 30 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chr1" \
	--dump-dom "file://$T/status.html" >"$T/dom1.html" 2>"$T/chr1.log" ||
	fail "chromium --dump-dom (JavaScript on) did not finish: $(tail -3 "$T/chr1.log")"
check_dom "$T/dom1.html"
[[ -s $T/status.png ]] && [[ $(head -c 8 "$T/status.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
	fail "no PNG screenshot"
# The control: a page whose script rewrites its text. Rendered the same way
# it keeps its text (JavaScript is off); with --dump-dom it does not.
printf '<!DOCTYPE html><p id="x">static</p><script>document.getElementById("x").textContent="JS RAN"</script>\n' >"$T/control.html"
timeout 30 python3 "$harness/headless.py" "file://$T/control.html" "$T/control.dom" "$T/control.png" "$T/chr3" 2>"$T/hl.err" ||
	fail "control: $(cat "$T/hl.err")"
grep -q 'id="x">static<' "$T/control.dom" && ! grep -q 'id="x">JS RAN<' "$T/control.dom" || fail "JavaScript ran in the no-script browser: $(cat "$T/control.dom")"
timeout 30 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chr4" \
	--dump-dom "file://$T/control.html" 2>/dev/null | grep -q 'id="x">JS RAN<' || fail "the control's script did not run with JavaScript on"
pass "chromium: every section, no script/img/on* attribute, the hold reason as text, with and without JavaScript; screenshot $(stat -c %s "$T/status.png") bytes"

# --- metrics_public: chromium asks the coordinator itself ------------------------------------
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
sed -e '/^metrics_token_file/d' -e 's/^metrics_listen = .*/&\nmetrics_public = true/' "$T/coordinator.conf" >"$T/public.conf"
chmod 600 "$T/public.conf"
coord_start "$T/public.conf" 200
url=http://127.0.0.1:$mport
timeout 30 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chr5" \
	--dump-dom "$url/status" >"$T/dom3.html" 2>"$T/chr5.log" || fail "chromium on $url/status: $(tail -3 "$T/chr5.log")"
check_dom "$T/dom3.html"
mkdir -p "$T/chr6"
timeout 30 python3 "$harness/headless.py" "$url/status" "$T/dom4.html" "$T/public.png" "$T/chr6" 2>"$T/hl.err" ||
	fail "headless chromium on $url/status without JavaScript: $(cat "$T/hl.err")"
check_dom "$T/dom4.html"
pass "metrics_public = true: chromium renders $url/status itself, with and without JavaScript"

# --- the catalog down ------------------------------------------------------------------------
runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null ||
	fail "cannot stop the catalog"
down() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/healthz") == 503 ]]; }
wait_for 30 down || fail "/healthz did not turn 503 with the catalog stopped"
[[ $(code "$url/status") == 503 ]] || fail "/status with the catalog down: $(code "$url/status") $(head -c 300 "$T/body")"
grep -q 'Catalog unreachable since' "$T/body" || fail "no banner: $(grep -o '<body>.\{0,300\}' "$T/body")"
grep -qF '&lt;img src=x onerror=alert(1)&gt;' "$T/body" && grep -q "$bid" "$T/body" ||
	fail "the page lost what it had read"
grep -qi "Content-Security-Policy" "$T/headers" || fail "the 503 page lacks its CSP"
pass "catalog down: /status 503, '$(sed 's/<[^>]*>//g' "$T/body" | grep -o 'Catalog unreachable since[^.]*' | head -1)', the last figures shown"
grep -q "$token" "$T/coord.log" && fail "the token is in the coordinator's log"
assert_no_core "$cpid" coordinator
exit 0
