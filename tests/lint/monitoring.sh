#!/usr/bin/env bash
# The monitoring pack and the metrics reference cannot drift from the code:
# - deploy/monitoring/coffer.rules.yml passes `promtool check rules` and its
#   unit tests (`promtool test rules coffer.rules.test.yml`); every alert has
#   runbook_url docs/RUNBOOK.md#<its name in lower case> and at least one
#   test where it fires and one where it does not;
# - grafana-dashboard.json parses, has a datasource variable, and every
#   panel's query is valid PromQL (promtool checks them as recording rules);
# - the metric names in docs/METRICS.md's tables are exactly the families of
#   coordinator/serve/metrics.c (its `.name = "coffer_..."` rows);
# - every coffer_ name a rule or a panel queries is one of them.
# With --scrape FILE (a real /metrics page, from
# tests/integration/catalog_outage.sh), also: the page passes `promtool
# check metrics`, and its families are exactly the documented names.
set -euo pipefail
cd "${COFFER_SRC:-$(dirname "$0")/../..}"
scrape=
if [[ ${1:-} == --scrape ]]; then
	scrape=$2
fi
command -v promtool >/dev/null || {
	echo "monitoring: promtool is missing (Debian package prometheus; deploy/install-deps.sh)"
	exit 1
}
mon=deploy/monitoring
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
problem() {
	echo "monitoring: $*"
	bad=1
}

promtool check rules "$mon/coffer.rules.yml" >"$tmp/check.out" 2>&1 ||
	problem "promtool check rules: $(cat "$tmp/check.out")"
(cd "$mon" && promtool test rules coffer.rules.test.yml) >"$tmp/test.out" 2>&1 ||
	problem "promtool test rules: $(cat "$tmp/test.out")"
python3 -m json.tool "$mon/grafana-dashboard.json" >/dev/null 2>"$tmp/json.out" ||
	problem "grafana-dashboard.json does not parse: $(cat "$tmp/json.out")"

# The names: documented, in the code's tables, used by rules and panels.
# "name type" pairs: the doc's table rows, the code's .name/.type rows, the
# scrape's TYPE lines.
sed -n 's/^| `\(coffer_[a-z0-9_]*\)` | \(gauge\|counter\) |.*/\1 \2/p' docs/METRICS.md | sort >"$tmp/doc"
awk 'match($0, /^[ \t]*\.name = "coffer_[a-z0-9_]*",$/) { split($0, q, "\""); name = q[2] }
	match($0, /^[ \t]*\.type = "[a-z]*",$/) && name != "" { split($0, q, "\""); print name, q[2]; name = "" }' \
	coordinator/serve/metrics.c | sort >"$tmp/code"
[[ -s $tmp/code ]] || problem "no .name = \"coffer_...\" rows found in coordinator/serve/metrics.c"
[[ $(cut -d' ' -f1 "$tmp/doc" | sort -u | wc -l) == $(wc -l <"$tmp/doc") ]] ||
	problem "docs/METRICS.md lists a name twice: $(cut -d' ' -f1 "$tmp/doc" | uniq -d)"
if ! diff "$tmp/code" "$tmp/doc" >"$tmp/diff"; then
	problem "docs/METRICS.md and coordinator/serve/metrics.c name (or type) different metrics (< code only, > doc only):
$(grep '^[<>]' "$tmp/diff")"
fi

python3 - "$mon" "$tmp" <<'PY' || bad=1
import json, re, sys
mon, tmp = sys.argv[1], sys.argv[2]
ok = True
def problem(msg):
    global ok
    print("monitoring: " + msg)
    ok = False
names = re.compile(r"\bcoffer_[a-z0-9_]+")
documented = set(l.split()[0] for l in open(tmp + "/doc") if l.strip())

# Rules: their expressions, names and runbook links (the file's own layout:
# "- alert: X", "expr: ..." or "expr: |" followed by a deeper block).
rules = open(mon + "/coffer.rules.yml").read().split("\n")
alerts, used, i = [], set(), 0
while i < len(rules):
    line = rules[i]
    m = re.match(r"\s*- alert: (\w+)\s*$", line)
    if m:
        alerts.append({"name": m.group(1), "runbook": None})
    m = re.match(r"(\s*)expr: ?(.*)$", line)
    if m:
        expr, indent = m.group(2), len(m.group(1))
        if expr.strip() in ("|", ">-", "|-", ">"):
            expr = ""
            while i + 1 < len(rules) and (rules[i + 1].strip() == "" or len(rules[i + 1]) - len(rules[i + 1].lstrip()) > indent):
                i += 1
                expr += rules[i] + "\n"
        used |= set(names.findall(expr))
    m = re.match(r"\s*runbook_url: \"?([^\"]*)\"?\s*$", line)
    if m and alerts:
        alerts[-1]["runbook"] = m.group(1)
    i += 1
if not alerts:
    problem("no alerts found in coffer.rules.yml")
tests = open(mon + "/coffer.rules.test.yml").read()
for a in alerts:
    want = "docs/RUNBOOK.md#" + a["name"].lower()
    if a["runbook"] != want:
        problem("%s: runbook_url is %s, want %s" % (a["name"], a["runbook"], want))
    blocks = re.findall(r"alertname: %s\n\s*exp_alerts:(.*?)(?=\n\s*- eval_time:|\n\s*- interval:|\Z)" % a["name"], tests, re.S)
    if not any(b.strip() == "[]" for b in blocks):
        problem("%s: no test where it does not fire (exp_alerts: [])" % a["name"])
    if not any("exp_labels" in b for b in blocks):
        problem("%s: no test where it fires" % a["name"])

# The dashboard: a datasource variable, every query valid PromQL (written as
# recording rules for promtool), its names documented.
dash = json.load(open(mon + "/grafana-dashboard.json"))
variables = dash.get("templating", {}).get("list", [])
if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
    problem("grafana-dashboard.json has no prometheus datasource variable")
exprs = []
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dash.get("panels", [])):
    for t in p.get("targets", []):
        exprs.append((p.get("title"), t["expr"]))
        if t.get("datasource", {}).get("uid") != "${datasource}":
            problem("panel %r does not query the datasource variable" % p.get("title"))
for v in variables:
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query", "")
        used |= set(names.findall(q))
if not exprs:
    problem("grafana-dashboard.json has no queries")
with open(tmp + "/dashboard.rules.yml", "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for n, (title, e) in enumerate(exprs):
        # Grafana's variables, as promtool would see a value of theirs.
        e = e.replace("$instance", ".*").replace("$service", ".*")
        f.write("      - record: dashboard:query_%d\n        expr: %s\n" % (n, json.dumps(e)))
        used |= set(names.findall(e))
for n in sorted(used - documented):
    problem("%s is queried (rules or dashboard) but not a documented metric" % n)
open(tmp + "/used", "w").write("\n".join(sorted(used)) + "\n")
sys.exit(0 if ok else 1)
PY
promtool check rules "$tmp/dashboard.rules.yml" >"$tmp/dash.out" 2>&1 ||
	problem "a dashboard query is not valid PromQL: $(cat "$tmp/dash.out")"

if [[ -n $scrape ]]; then
	promtool check metrics <"$scrape" >"$tmp/scrape.lint" 2>&1 ||
		problem "promtool check metrics on $scrape: $(cat "$tmp/scrape.lint")"
	sed -n 's/^# TYPE \(coffer_[a-z0-9_]*\) \([a-z]*\)$/\1 \2/p' "$scrape" | sort >"$tmp/scraped"
	if ! diff "$tmp/scraped" "$tmp/doc" >"$tmp/sdiff"; then
		problem "the scrape and docs/METRICS.md name (or type) different metrics (< scrape only, > doc only):
$(grep '^[<>]' "$tmp/sdiff")"
	fi
	missing=$(comm -23 "$tmp/used" <(cut -d' ' -f1 "$tmp/scraped"))
	[[ -z $missing ]] || problem "queried by rules or dashboard, not on the scrape: $missing"
fi

if [[ $bad == 0 ]]; then
	echo "monitoring: $(wc -l <"$tmp/doc") metrics documented as the code names them; rules checked and tested; dashboard's $(grep -c 'record:' "$tmp/dashboard.rules.yml") queries valid${scrape:+; the scrape names exactly them}"
fi
exit $bad
