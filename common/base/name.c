/*
 * Names: see name.h. One scan, no locale (isalnum would accept letters of
 * the current locale in some C libraries).
 */
#include "common/base/name.h"

#include <string.h>

static bool
name_rule(const char *s, size_t max, bool colon_ok)
{
	if (s == NULL) {
		return (false);
	}
	size_t n = strnlen(s, max + 1);
	if (n == 0 || n > max) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (alnum) {
			continue;
		}
		bool punct = c == '_' || c == '.' || c == '-' || (colon_ok && c == ':');
		if (i == 0 || !punct) {
			return (false);
		}
	}
	return (true);
}

bool
coffer_name_valid(const char *s)
{
	return (name_rule(s, COFFER_NAME_MAX, false));
}

bool
coffer_name_id_valid(const char *s)
{
	return (name_rule(s, COFFER_NAME_ID_MAX, true));
}

int
coffer_name_check(const char *s, const char *what, coffer_err *err)
{
	if (coffer_name_valid(s)) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not a valid %s", s != NULL ? s : "", what);
	coffer_err_hint(err, "use " COFFER_NAME_RULE);
	return (COFFER_EINVAL);
}
