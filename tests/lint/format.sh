#!/usr/bin/env bash
# Every C file is as clang-format (the .clang-format at the top) writes it.
# Prints each file that is not, with the command that fixes it; fails if any.
set -euo pipefail
cd "${COFFER_SRC:-$(dirname "$0")/../..}"
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then
	echo "format: clang-format is not installed; run deploy/install-deps.sh" >&2
	exit 1
fi
bad=0
while IFS= read -r f; do
	if ! "$cf" --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "format: $f is not formatted; run: $cf -i $f"
		bad=1
	fi
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find agent common coordinator tests -name '*.[ch]')
[ $bad = 0 ] && echo "format: every C file is formatted"
exit $bad
