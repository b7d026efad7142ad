#!/usr/bin/env bash
# The layering rule (docs/ARCHITECTURE.md): each source folder may include
# only folders listed before it in its component's order below, and common/;
# common/ never includes agent/ or coordinator/, and those two never include
# each other. Prints every include that crosses the rule and fails if any.
set -euo pipefail
cd "${COFFER_SRC:-$(dirname "$0")/../..}"

common="base daemon conf stream crypto repo wire"
agent="pg outbox context backup restore report daemon cmd"
coordinator="catalog policy watch wal drill intake dr serve cmd cli"

rank() { # rank COMPONENT FOLDER -> position in the order, or nothing
	local i=0 f
	for f in ${!1}; do
		[ "$f" = "$2" ] && { echo $i; return; }
		i=$((i + 1))
	done
}

bad=0
for dir in common/*/ agent/*/ coordinator/*/; do
	dir=${dir%/}
	comp=${dir%%/*} folder=${dir#*/}
	self=$(rank "$comp" "$folder")
	if [ -z "$self" ]; then
		echo "layers: $dir is not in tests/lint/layers.sh's order; add it where it belongs"
		bad=1
		continue
	fi
	while IFS=: read -r file _ inc; do
		target=$(sed -E 's/.*#include "([a-z]+)\/([a-z]+)\/.*/\1 \2/' <<<"$inc")
		read -r tcomp tfolder <<<"$target"
		[ "$tcomp/$tfolder" = "$dir" ] && continue
		ok=0
		if [ "$tcomp" = "$comp" ]; then
			trank=$(rank "$comp" "$tfolder")
			[ -n "$trank" ] && [ "$trank" -lt "$self" ] && ok=1
			# The operator CLI is its own program: it shares nothing of the
			# coordinator but the protocol, which lives in common/wire.
			[ "$folder" = cli ] && ok=0
		elif [ "$tcomp" = common ] || [ "$tcomp" = proto ]; then
			ok=1
		fi
		if [ $ok = 0 ]; then
			echo "layers: $file includes $tcomp/$tfolder, which is above or beside $dir"
			bad=1
		fi
	done < <(grep -Hn '#include "[a-z]*/[a-z]*/' "$dir"/*.[ch] 2>/dev/null || true)
done
[ $bad = 0 ] && echo "layers: every include points down"
exit $bad
