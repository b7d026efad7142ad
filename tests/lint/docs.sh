#!/usr/bin/env bash
# Docs that must follow the code:
#  - docs/RUNBOOK.md has one "## KIND" entry per alert kind the coordinator
#    can raise (every #define COORD_ALERT_* "KIND" under coordinator/), and no
#    entry for a kind that does not exist (a page links RUNBOOK.md#KIND);
#  - docs/CONFIGURATION.md's "### [alerts]" table lists every key of the
#    [alerts] schema in coordinator/policy/coord_config.c, and no other, each
#    with a type and a default column;
#  - docs/JSON.md has a section per docs/schema/*.json listing its fields.
# Prints each difference and fails if there is any.
set -euo pipefail
cd "${COFFER_SRC:-$(dirname "$0")/../..}"
bad=0

code=$(grep -rhoE '#define[[:space:]]+COORD_ALERT_[A-Z_]+[[:space:]]+"[a-z_]+"' coordinator |
	sed -E 's/.*"([a-z_]+)"/\1/' | sort -u)
doc=$(sed -nE 's/^## ([a-z_]+)$/\1/p' docs/RUNBOOK.md | sort)
[[ -n $code ]] || { echo "docs: found no COORD_ALERT_ kinds under coordinator/"; exit 1; }
dups=$(uniq -d <<<"$doc")
[[ -z $dups ]] || { echo "docs: RUNBOOK.md has these entries twice: $dups"; bad=1; }
for k in $(comm -23 <(echo "$code") <(echo "$doc" | sort -u)); do
	echo "docs: alert kind $k has no '## $k' entry in docs/RUNBOOK.md"
	bad=1
done
for k in $(comm -13 <(echo "$code") <(echo "$doc" | sort -u)); do
	echo "docs: docs/RUNBOOK.md has an entry '## $k' for no alert kind in the code"
	bad=1
done
for k in $code; do
	entry=$(awk -v k="## $k" '$0 == k { on = 1; next } /^## / { on = 0 } on' docs/RUNBOOK.md)
	for part in '**Means.**' '**First checks.**' '**Fix.**' '**Resolves when**'; do
		grep -qF "$part" <<<"$entry" || { echo "docs: RUNBOOK.md '## $k' lacks $part"; bad=1; }
	done
done

schema=$(awk '/^static const coffer_config_key alerts_keys\[\] = \{/ { on = 1; next }
	on && /^\};/ { on = 0 } on' coordinator/policy/coord_config.c |
	grep -oE '\.name = "[a-z_]+"' | sed -E 's/.*"([a-z_]+)"/\1/' | sort)
[[ -n $schema ]] || { echo "docs: found no alerts_keys in coord_config.c"; exit 1; }
table=$(awk '/^### \[alerts\]/ { on = 1; next } /^##/ { on = 0 } on' docs/CONFIGURATION.md)
keys=$(sed -nE 's/^\| `([a-z_]+)` \|.*/\1/p' <<<"$table" | sort)
for k in $(comm -23 <(echo "$schema") <(echo "$keys")); do
	echo "docs: [alerts] $k is in coord_config.c but not in docs/CONFIGURATION.md's [alerts] table"
	bad=1
done
for k in $(comm -13 <(echo "$schema") <(echo "$keys")); do
	echo "docs: docs/CONFIGURATION.md's [alerts] table lists $k, which the schema does not have"
	bad=1
done
while IFS= read -r row; do
	cols=$(awk -F'|' '{ print NF - 2 }' <<<"$row")
	[[ $cols == 4 ]] || { echo "docs: [alerts] row without key, type, default, meaning: $row"; bad=1; }
done < <(grep -E '^\| `[a-z_]+` \|' <<<"$table")
# docs/JSON.md: a "### NAME" section per docs/schema/NAME.json, listing each
# of its fields as a table row.
python3 - <<'PY' || bad=1
import glob, json, os, re, sys
md = open("docs/JSON.md").read()
bad = 0
for path in sorted(glob.glob("docs/schema/*.json")):
    name = os.path.basename(path)[:-5]
    m = re.search(r"^### %s\n(.*?)(?=^### |^## |\Z)" % re.escape(name), md, re.S | re.M)
    if m is None:
        print("docs: docs/JSON.md has no '### %s' section for docs/schema/%s.json" % (name, name))
        bad = 1
        continue
    for field in json.load(open(path))["properties"]:
        if "| `%s` |" % field not in m.group(1):
            print("docs: docs/JSON.md '### %s' does not list the field %s" % (name, field))
            bad = 1
sys.exit(bad)
PY
[[ $bad == 0 ]] && echo "docs: $(wc -w <<<"$code") alert kinds in RUNBOOK.md, $(wc -w <<<"$schema") [alerts] keys in CONFIGURATION.md"
exit $bad
