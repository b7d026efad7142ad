/*
 * Config: the reader that feeds inih, the handler that checks each key
 * against the schema, and the typed accessors. See common/conf/config.h for the
 * promises and the syntax.
 *
 * Only the first problem is reported: once the reader or the handler has
 * recorded an error, the reader reports end of file so inih stops. inih's
 * own syntax errors arrive only as the line number it returns at the end;
 * the earlier of the two wins, so the message always points at the first bad
 * line of the file.
 */
#include "common/conf/config.h"

#include "common/conf/tz.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ini.h>

#include "common/base/clock.h"

/* A section appears once and inih hands its keys over in file order, so a
 * section's values are one contiguous run of vals: lookups scan only it. */
struct cfg_section {
	char *name;
	int line;
	const coffer_config_section *spec;
	size_t first; /* its first value in vals */
	size_t count;
};

struct cfg_value {
	size_t sec; /* index into secs */
	char *key;
	char *text;
	int line;
	int64_t num; /* parsed int, bool, duration ms or size */
	const coffer_config_key *spec;
};

struct cfg_pattern {
	const coffer_config_section *spec;
	const char **names;
	size_t n;
};

struct coffer_config {
	char *path;
	const coffer_config_schema *schema;
	struct cfg_section *secs;
	size_t nsecs;
	size_t capsecs;
	struct cfg_value *vals;
	size_t nvals;
	size_t capvals;
	struct cfg_pattern *pats;
	size_t npats;
};

struct parse_ctx {
	coffer_config *cfg;
	coffer_err *err;
	int err_line; /* 0: no error yet */
	int err_code;
	FILE *fp;
	const char *text;
	size_t text_off;
	size_t bytes;
	int lineno;
	long cur; /* index of the current section, -1 before any */
	bool oom;
};

static char ini_inline_prefixes[] = ";#";

static void
ini_setup(void)
{
	/* A heap buffer sized once: inih's stack buffer is only 200 bytes,
	 * shorter than a real conninfo. */
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = COFFER_CONFIG_MAX_LINE + 1;
	ini_max_line = COFFER_CONFIG_MAX_LINE + 1;
	ini_allow_multiline = false;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = ini_inline_prefixes;
	ini_allow_no_value = false;
	ini_stop_on_first_error = false;
	ini_allow_bom = true;
}

static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

static const char *
type_name(coffer_config_type t)
{
	switch (t) {
	case COFFER_CONFIG_STRING:
		return ("string");
	case COFFER_CONFIG_PATH:
		return ("path");
	case COFFER_CONFIG_INT:
		return ("integer");
	case COFFER_CONFIG_BOOL:
		return ("boolean");
	case COFFER_CONFIG_DURATION:
		return ("duration");
	case COFFER_CONFIG_SIZE:
		return ("size");
	case COFFER_CONFIG_ENUM:
		return ("enum");
	case COFFER_CONFIG_CRON:
		return ("cron");
	}
	return ("unknown");
}

/* ---- errors ---------------------------------------------------------- */

/* "<path>:<line>: " or "<path>: " when the line is unknown. */
static void
where(const coffer_config *cfg, int line, char *buf, size_t size)
{
	if (line > 0) {
		snprintf(buf, size, "%s:%d: ", cfg->path, line);
	} else {
		snprintf(buf, size, "%s: ", cfg->path);
	}
}

static int ctx_fail(struct parse_ctx *ctx, int line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the first error only; later ones are consequences or noise. */
static int
ctx_fail(struct parse_ctx *ctx, int line, int code, const char *fmt, ...)
{
	if (ctx->err_line != 0) {
		return (ctx->err_code);
	}
	char pre[COFFER_ERR_MSG_MAX];
	char msg[COFFER_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	where(ctx->cfg, line, pre, sizeof(pre));
	coffer_err_set(ctx->err, code, "%s%s", pre, msg);
	ctx->err_line = line > 0 ? line : -1;
	ctx->err_code = code;
	return (code);
}

static int ctx_hint(struct parse_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
ctx_hint(struct parse_ctx *ctx, const char *fmt, ...)
{
	if (ctx->err != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ctx->err->hint, sizeof(ctx->err->hint), fmt, ap);
		va_end(ap);
	}
	return (ctx->err_code);
}

/* ---- schema lookups --------------------------------------------------- */

static bool
is_pattern(const coffer_config_section *s)
{
	size_t n = strlen(s->name);
	return (n >= 2 && strcmp(s->name + n - 2, ".*") == 0);
}

/* The schema entry a full section name belongs to, or NULL. */
static const coffer_config_section *
schema_section(const coffer_config_schema *schema, const char *name)
{
	for (const coffer_config_section *s = schema->sections; s->name != NULL; s++) {
		if (!is_pattern(s)) {
			if (strcmp(s->name, name) == 0) {
				return (s);
			}
			continue;
		}
		size_t plen = strlen(s->name) - 1; /* "service." */
		if (strncmp(s->name, name, plen) == 0 && name[plen] != '\0') {
			return (s);
		}
	}
	return (NULL);
}

static const coffer_config_key *
schema_key(const coffer_config_section *s, const char *key)
{
	for (const coffer_config_key *k = s->keys; k->name != NULL; k++) {
		if (strcmp(k->name, key) == 0) {
			return (k);
		}
	}
	return (NULL);
}

static void
list_sections(const coffer_config_schema *schema, char *buf, size_t size)
{
	size_t off = 0;
	buf[0] = '\0';
	for (const coffer_config_section *s = schema->sections; s->name != NULL && off < size;
	     s++) {
		int n;
		if (is_pattern(s)) {
			n = snprintf(buf + off, size - off, "%s[%.*s.<name>]", off ? ", " : "",
			    (int)(strlen(s->name) - 2), s->name);
		} else {
			n = snprintf(buf + off, size - off, "%s[%s]", off ? ", " : "", s->name);
		}
		if (n < 0) {
			break;
		}
		off += (size_t)n;
	}
}

static void
list_keys(const coffer_config_section *s, bool required_only, char *buf, size_t size)
{
	size_t off = 0;
	buf[0] = '\0';
	for (const coffer_config_key *k = s->keys; k->name != NULL && off < size; k++) {
		if (required_only && !k->required) {
			continue;
		}
		int n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "", k->name);
		if (n < 0) {
			break;
		}
		off += (size_t)n;
	}
}

/* ---- value parsing ---------------------------------------------------- */

static const struct {
	const char *suffix;
	uint64_t mult;
} size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "KiB", 1ull << 10 },
	{ "MiB", 1ull << 20 },
	{ "GiB", 1ull << 30 },
	{ "TiB", 1ull << 40 },
};

static int
parse_size(const char *text, uint64_t *out)
{
	if (!isdigit((unsigned char)text[0])) {
		return (COFFER_EINVAL);
	}
	errno = 0;
	char *end;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno != 0) {
		return (COFFER_EINVAL);
	}
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		if (strcmp(end, size_units[i].suffix) == 0) {
			/* Capped at 2^62 so the result always fits int64_t too. */
			if (v > (1ull << 62) / size_units[i].mult) {
				return (COFFER_EINVAL);
			}
			*out = v * size_units[i].mult;
			return (0);
		}
	}
	return (COFFER_EINVAL);
}

static char *
format_size(char *buf, size_t size, uint64_t v)
{
	for (size_t i = sizeof(size_units) / sizeof(size_units[0]) - 1; i >= 2; i--) {
		if (v != 0 && v % size_units[i].mult == 0) {
			snprintf(buf, size, "%" PRIu64 "%s", v / size_units[i].mult,
			    size_units[i].suffix);
			return (buf);
		}
	}
	snprintf(buf, size, "%" PRIu64, v);
	return (buf);
}

static int
parse_int(const char *text, int64_t *out)
{
	const char *p = text;
	if (*p == '-') {
		p++;
	}
	if (!isdigit((unsigned char)*p)) {
		return (COFFER_EINVAL);
	}
	errno = 0;
	char *end;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0') {
		return (COFFER_EINVAL);
	}
	*out = v;
	return (0);
}

static int
parse_bool(const char *text, int64_t *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = 1;
			return (0);
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = 0;
			return (0);
		}
	}
	return (COFFER_EINVAL);
}

static bool
has_range(const coffer_config_key *k)
{
	return (k->min != 0 || k->max != 0);
}

/* What a key accepts, as a phrase for "expected ...". */
static void
describe(const coffer_config_key *k, char *buf, size_t size)
{
	char lo[32];
	char hi[32];
	switch (k->type) {
	case COFFER_CONFIG_STRING:
	case COFFER_CONFIG_PATH:
		snprintf(
		    buf, size, "a non-empty %s", k->type == COFFER_CONFIG_PATH ? "path" : "value");
		return;
	case COFFER_CONFIG_CRON:
		snprintf(
		    buf, size, "a cron expression of five fields (minute hour day month weekday)");
		return;
	case COFFER_CONFIG_BOOL:
		snprintf(buf, size, "true or false (or yes/no, on/off, 1/0)");
		return;
	case COFFER_CONFIG_INT:
		if (has_range(k)) {
			snprintf(
			    buf, size, "an integer from %" PRId64 " to %" PRId64, k->min, k->max);
		} else {
			snprintf(buf, size, "an integer");
		}
		return;
	case COFFER_CONFIG_DURATION:
		if (has_range(k)) {
			coffer_duration_format(lo, sizeof(lo), k->min);
			coffer_duration_format(hi, sizeof(hi), k->max);
			snprintf(buf, size,
			    "a duration such as 90s, 15m, 2h or 7d, from %s to %s%s", lo, hi,
			    k->allow_forever ? ", or forever" : "");
		} else {
			snprintf(buf, size, "a duration such as 90s, 15m, 2h or 7d%s",
			    k->allow_forever ? ", or forever" : "");
		}
		return;
	case COFFER_CONFIG_SIZE:
		if (has_range(k)) {
			format_size(lo, sizeof(lo), (uint64_t)k->min);
			format_size(hi, sizeof(hi), (uint64_t)k->max);
			snprintf(buf, size,
			    "a size in bytes or KiB, MiB, GiB (such as 64MiB), from %s to %s", lo,
			    hi);
		} else {
			snprintf(buf, size, "a size in bytes or KiB, MiB, GiB (such as 64MiB)");
		}
		return;
	case COFFER_CONFIG_ENUM: {
		size_t off = (size_t)snprintf(buf, size, "one of ");
		for (const char *const *w = k->words; w != NULL && *w != NULL && off < size; w++) {
			int n =
			    snprintf(buf + off, size - off, "%s%s", w == k->words ? "" : ", ", *w);
			if (n < 0) {
				break;
			}
			off += (size_t)n;
		}
		return;
	}
	}
	snprintf(buf, size, "a value");
}

/* Parses text as k's type and checks its range; 0 or COFFER_EINVAL. The
 * caller's check hooks are run separately, since their messages differ. */
static int
parse_value(const coffer_config_key *k, const char *text, int64_t *num)
{
	*num = 0;
	switch (k->type) {
	case COFFER_CONFIG_STRING:
		return (k->required && text[0] == '\0' ? COFFER_EINVAL : 0);
	case COFFER_CONFIG_PATH:
	case COFFER_CONFIG_CRON:
		return (text[0] == '\0' ? COFFER_EINVAL : 0);
	case COFFER_CONFIG_BOOL:
		return (parse_bool(text, num));
	case COFFER_CONFIG_INT:
		if (parse_int(text, num) != 0) {
			return (COFFER_EINVAL);
		}
		break;
	case COFFER_CONFIG_DURATION:
		if (coffer_duration_parse(text, k->allow_forever, num) != 0) {
			return (COFFER_EINVAL);
		}
		if (*num < 0) {
			return (0); /* forever: above every maximum by definition */
		}
		break;
	case COFFER_CONFIG_SIZE: {
		uint64_t v;
		if (parse_size(text, &v) != 0) {
			return (COFFER_EINVAL);
		}
		*num = (int64_t)v;
		break;
	}
	case COFFER_CONFIG_ENUM:
		for (const char *const *w = k->words; w != NULL && *w != NULL; w++) {
			if (strcmp(*w, text) == 0) {
				*num = w - k->words;
				return (0);
			}
		}
		return (COFFER_EINVAL);
	}
	if (has_range(k) && (*num < k->min || *num > k->max)) {
		return (COFFER_EINVAL);
	}
	return (0);
}

/* ---- the reader --------------------------------------------------------- */

static int
next_byte(struct parse_ctx *ctx)
{
	if (ctx->fp != NULL) {
		return (getc(ctx->fp));
	}
	unsigned char c = (unsigned char)ctx->text[ctx->text_off];
	if (c == '\0') {
		return (EOF);
	}
	ctx->text_off++;
	return (c);
}

static bool
name_char(char c)
{
	return (isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-');
}

/* Notes a "[name]" line: inih skips sections without keys, and both an
 * unknown and an empty known section must still be seen. Lines that inih
 * itself will refuse (no closing bracket) are left to inih. */
static void
note_section(struct parse_ctx *ctx, const char *line)
{
	coffer_config *cfg = ctx->cfg;
	const char *p = line;
	if (ctx->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) {
		p += 3;
	}
	while (*p == ' ' || *p == '\t') {
		p++;
	}
	if (*p != '[') {
		return;
	}
	const char *close = strchr(p, ']');
	if (close == NULL) {
		return;
	}
	size_t len = (size_t)(close - p - 1);
	const char *name = p + 1;
	for (const char *q = close + 1; *q != '\0'; q++) {
		if (*q == '#' || *q == ';') {
			break;
		}
		if (!isspace((unsigned char)*q)) {
			ctx_fail(ctx, ctx->lineno, COFFER_EINVAL,
			    "text after section header [%.*s]", (int)len, name);
			ctx_hint(ctx, "put the section header alone on its line");
			return;
		}
	}
	bool ok = len > 0 && len <= COFFER_CONFIG_MAX_NAME;
	for (size_t i = 0; ok && i < len; i++) {
		ok = name_char(name[i]);
	}
	if (!ok) {
		ctx_fail(ctx, ctx->lineno, COFFER_EINVAL, "bad section name [%.*s]",
		    (int)(len > 64 ? 64 : len), name);
		ctx_hint(ctx, "section names are 1 to %d letters, digits, '.', '_' or '-'",
		    COFFER_CONFIG_MAX_NAME);
		return;
	}
	char sname[COFFER_CONFIG_MAX_NAME + 1];
	memcpy(sname, name, len);
	sname[len] = '\0';
	const coffer_config_section *spec = schema_section(cfg->schema, sname);
	if (spec == NULL) {
		char allowed[COFFER_ERR_MSG_MAX];
		list_sections(cfg->schema, allowed, sizeof(allowed));
		ctx_fail(ctx, ctx->lineno, COFFER_EINVAL, "unknown section [%s] (allowed: %s)",
		    sname, allowed);
		ctx_hint(ctx, "rename the section to one of the allowed ones or remove it");
		return;
	}
	for (size_t i = 0; i < cfg->nsecs; i++) {
		if (strcmp(cfg->secs[i].name, sname) == 0) {
			ctx_fail(ctx, ctx->lineno, COFFER_EINVAL,
			    "duplicate section [%s] (first on line %d)", sname, cfg->secs[i].line);
			ctx_hint(ctx, "merge the two [%s] sections into one", sname);
			return;
		}
	}
	if (cfg->nsecs == cfg->capsecs) {
		size_t cap = cfg->capsecs ? cfg->capsecs * 2 : 8;
		struct cfg_section *s = realloc(cfg->secs, cap * sizeof(*s));
		if (s == NULL) {
			ctx->oom = true;
			return;
		}
		cfg->secs = s;
		cfg->capsecs = cap;
	}
	char *dup = strdup(sname);
	if (dup == NULL) {
		ctx->oom = true;
		return;
	}
	cfg->secs[cfg->nsecs] = (struct cfg_section) {
		.name = dup, .line = ctx->lineno, .spec = spec, .first = cfg->nvals
	};
	ctx->cur = (long)cfg->nsecs++;
}

/* fgets-shaped: one physical line per call, so the call count is the line
 * number inih also reports. Returns NULL (end) after the first error. */
static char *
reader(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	if (ctx->err_line != 0 || ctx->oom || num < 2) {
		return (NULL);
	}
	size_t len = 0;
	bool too_long = false;
	bool nul = false;
	int c = EOF;
	while ((c = next_byte(ctx)) != EOF) {
		if (++ctx->bytes > COFFER_CONFIG_MAX_BYTES) {
			ctx_fail(ctx, ctx->lineno + 1, COFFER_ETOOBIG,
			    "config file is larger than %d bytes", COFFER_CONFIG_MAX_BYTES);
			ctx_hint(ctx,
			    "a configuration this large is a mistake: check that "
			    "the path names the right file");
			return (NULL);
		}
		if (c == '\0') {
			nul = true;
		}
		if (len + 1 < (size_t)num && len < COFFER_CONFIG_MAX_LINE) {
			str[len++] = (char)c;
		} else {
			too_long = true;
		}
		if (c == '\n') {
			break;
		}
	}
	/* The limit counts the text, not its newline. */
	if (len > 0 && str[len - 1] != '\n' && len >= COFFER_CONFIG_MAX_LINE) {
		too_long = true;
	}
	if (ctx->fp != NULL && ferror(ctx->fp)) {
		ctx_fail(ctx, ctx->lineno + 1, COFFER_EIO, "cannot read config file: %s",
		    strerror(errno));
		ctx_hint(ctx, "check the file and the disk it is on");
		return (NULL);
	}
	if (len == 0 && c == EOF) {
		return (NULL);
	}
	str[len] = '\0';
	ctx->lineno++;
	if (too_long) {
		ctx_fail(ctx, ctx->lineno, COFFER_ETOOBIG, "line is longer than %d bytes",
		    COFFER_CONFIG_MAX_LINE - 1);
		ctx_hint(ctx, "shorten the value on line %d", ctx->lineno);
		return (NULL);
	}
	if (nul) {
		ctx_fail(ctx, ctx->lineno, COFFER_EINVAL, "line contains a NUL byte");
		ctx_hint(ctx, "a config file is text: check that the path names the right file");
		return (NULL);
	}
	note_section(ctx, str);
	if (ctx->err_line != 0 || ctx->oom) {
		return (NULL);
	}
	return (str);
}

/* ---- the handler -------------------------------------------------------- */

static const struct cfg_section *
find_section(const coffer_config *cfg, const char *section)
{
	for (size_t i = 0; i < cfg->nsecs; i++) {
		if (strcmp(cfg->secs[i].name, section) == 0) {
			return (&cfg->secs[i]);
		}
	}
	return (NULL);
}

static struct cfg_value *
section_value(const coffer_config *cfg, const struct cfg_section *sec, const char *key)
{
	for (size_t i = sec->first; i < sec->first + sec->count; i++) {
		if (strcmp(cfg->vals[i].key, key) == 0) {
			return (&cfg->vals[i]);
		}
	}
	return (NULL);
}

static struct cfg_value *
find_value(const coffer_config *cfg, const char *section, const char *key)
{
	const struct cfg_section *sec = find_section(cfg, section);
	return (sec != NULL ? section_value(cfg, sec, key) : NULL);
}

/* Runs the caller's hooks; the message they give follows the prefix. */
static int
run_check(struct parse_ctx *ctx, const char *section, const coffer_config_key *k, const char *value,
    int line)
{
	coffer_config_check_fn fn = k->check;
	if (fn == NULL && k->type == COFFER_CONFIG_CRON) {
		fn = ctx->cfg->schema->check_cron;
	}
	if (fn == NULL) {
		return (0);
	}
	coffer_err cerr = { 0 };
	int rc = fn(value, &cerr);
	if (rc == 0) {
		return (0);
	}
	/* Whatever the hook met (a missing zone file is ENOENT to the tz
	 * loader), to the caller it is a wrong value in the file. */
	if (rc != COFFER_ENOMEM) {
		rc = COFFER_EINVAL;
	}
	if (k->type == COFFER_CONFIG_CRON) {
		ctx_fail(ctx, line, rc, "[%s] %s = '%s': %s", section, k->name, value, cerr.msg);
	} else {
		/* No echo: the value may be a secret. */
		ctx_fail(ctx, line, rc, "[%s] %s: %s", section, k->name, cerr.msg);
	}
	if (cerr.hint[0] != '\0') {
		ctx_hint(ctx, "%s", cerr.hint);
	} else {
		char exp[256];
		describe(k, exp, sizeof(exp));
		ctx_hint(ctx, "set %s to %s", k->name, exp);
	}
	return (rc);
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;
	coffer_config *cfg = ctx->cfg;
	(void)section; /* the reader's view; the same as inih's for valid lines */
	if (ctx->err_line != 0 || ctx->oom) {
		return (1);
	}
	int line = ctx->lineno;
	if (ctx->cur < 0) {
		ctx_fail(ctx, line, COFFER_EINVAL, "key '%s' outside any section", name);
		ctx_hint(ctx, "put a [section] header above line %d", line);
		return (1);
	}
	struct cfg_section *sec = &cfg->secs[ctx->cur];
	const coffer_config_key *k = schema_key(sec->spec, name);
	if (k == NULL) {
		char allowed[COFFER_ERR_MSG_MAX];
		list_keys(sec->spec, false, allowed, sizeof(allowed));
		ctx_fail(ctx, line, COFFER_EINVAL, "[%s] unknown key '%s' (allowed: %s)", sec->name,
		    name, allowed);
		ctx_hint(ctx, "correct the key's name or remove line %d", line);
		return (1);
	}
	struct cfg_value *prev = section_value(cfg, sec, name);
	if (prev != NULL) {
		ctx_fail(ctx, line, COFFER_EINVAL, "[%s] duplicate key '%s' (first set on line %d)",
		    sec->name, name, prev->line);
		ctx_hint(ctx, "keep only one of lines %d and %d", prev->line, line);
		return (1);
	}
	int64_t num;
	if (parse_value(k, value, &num) != 0) {
		char exp[256];
		describe(k, exp, sizeof(exp));
		ctx_fail(ctx, line, COFFER_EINVAL, "[%s] %s = '%.64s': expected %s", sec->name,
		    name, value, exp);
		ctx_hint(ctx, "set %s to %s", name, exp);
		return (1);
	}
	if (run_check(ctx, sec->name, k, value, line) != 0) {
		return (1);
	}
	if (cfg->nvals == cfg->capvals) {
		size_t cap = cfg->capvals ? cfg->capvals * 2 : 16;
		struct cfg_value *v = realloc(cfg->vals, cap * sizeof(*v));
		if (v == NULL) {
			ctx->oom = true;
			return (1);
		}
		cfg->vals = v;
		cfg->capvals = cap;
	}
	char *kdup = strdup(name);
	char *vdup = strdup(value);
	if (kdup == NULL || vdup == NULL) {
		free(kdup);
		free(vdup);
		ctx->oom = true;
		return (1);
	}
	cfg->vals[cfg->nvals++] = (struct cfg_value) { .sec = (size_t)ctx->cur,
		.key = kdup,
		.text = vdup,
		.line = line,
		.num = num,
		.spec = k };
	sec->count++;
	return (1);
}

/* ---- load --------------------------------------------------------------- */

/* A default that does not parse is the schema author's bug; refusing every
 * file makes it impossible to miss in the first test. */
static int
check_defaults(const coffer_config_schema *schema, coffer_err *err)
{
	for (const coffer_config_section *s = schema->sections; s->name != NULL; s++) {
		for (const coffer_config_key *k = s->keys; k->name != NULL; k++) {
			int64_t num;
			if (k->def != NULL && parse_value(k, k->def, &num) != 0) {
				coffer_err_set(err, COFFER_EINTERNAL,
				    "config schema: default '%s' of [%s] %s is not a valid %s",
				    k->def, s->name, k->name, type_name(k->type));
				return (coffer_err_hint(
				    err, "this is a bug in Coffer; please report it"));
			}
		}
	}
	return (0);
}

static int
check_required(struct parse_ctx *ctx)
{
	coffer_config *cfg = ctx->cfg;
	char req[COFFER_ERR_MSG_MAX];
	for (const coffer_config_section *s = cfg->schema->sections; s->name != NULL; s++) {
		if (!s->required || is_pattern(s) ||
		    (cfg->schema->optional != NULL && cfg->schema->optional(cfg, s->name, NULL))) {
			continue;
		}
		bool found = false;
		for (size_t i = 0; i < cfg->nsecs && !found; i++) {
			found = cfg->secs[i].spec == s;
		}
		if (!found) {
			const char *why = NULL;
			for (const coffer_config_key *k = s->keys; k->name != NULL && !why; k++) {
				why = k->required ? k->why : NULL;
			}
			list_keys(s, true, req, sizeof(req));
			ctx_fail(ctx, 0, COFFER_EINVAL, "missing required section [%s]%s%s%s",
			    s->name, req[0] ? " (it must set " : "", req, req[0] ? ")" : "");
			return (ctx_hint(ctx, "add a [%s] section%s%s; see docs/CONFIGURATION.md",
			    s->name, why ? ": " : "", why ? why : ""));
		}
	}
	for (size_t i = 0; i < cfg->nsecs; i++) {
		struct cfg_section *sec = &cfg->secs[i];
		for (const coffer_config_key *k = sec->spec->keys; k->name != NULL; k++) {
			if (k->required && section_value(cfg, sec, k->name) == NULL &&
			    (cfg->schema->optional == NULL ||
			        !cfg->schema->optional(cfg, sec->name, k->name))) {
				char exp[256];
				describe(k, exp, sizeof(exp));
				ctx_fail(ctx, sec->line, COFFER_EINVAL,
				    "[%s] missing required key '%s'", sec->name, k->name);
				return (ctx_hint(ctx, "add '%s = ...' (%s) under [%s]%s%s", k->name,
				    exp, sec->name, k->why ? ": " : "", k->why ? k->why : ""));
			}
		}
	}
	return (0);
}

static int
build_patterns(coffer_config *cfg)
{
	size_t n = 0;
	for (const coffer_config_section *s = cfg->schema->sections; s->name != NULL; s++) {
		n += is_pattern(s);
	}
	cfg->pats = calloc(n ? n : 1, sizeof(*cfg->pats));
	if (cfg->pats == NULL) {
		return (COFFER_ENOMEM);
	}
	for (const coffer_config_section *s = cfg->schema->sections; s->name != NULL; s++) {
		if (!is_pattern(s)) {
			continue;
		}
		struct cfg_pattern *p = &cfg->pats[cfg->npats++];
		p->spec = s;
		p->names = calloc(cfg->nsecs ? cfg->nsecs : 1, sizeof(*p->names));
		if (p->names == NULL) {
			return (COFFER_ENOMEM);
		}
		size_t plen = strlen(s->name) - 1;
		for (size_t i = 0; i < cfg->nsecs; i++) {
			if (cfg->secs[i].spec == s) {
				p->names[p->n++] = cfg->secs[i].name + plen;
			}
		}
	}
	return (0);
}

static int
load(struct parse_ctx *ctx)
{
	pthread_once(&ini_once, ini_setup);
	int rc = ini_parse_stream(reader, ctx, handler, ctx);
	if (ctx->oom) {
		return (coffer_err_set(
		    ctx->err, COFFER_ENOMEM, "%s: out of memory reading config", ctx->cfg->path));
	}
	if (rc == -2) {
		return (coffer_err_set(
		    ctx->err, COFFER_ENOMEM, "%s: out of memory in inih", ctx->cfg->path));
	}
	if (rc > 0 && (ctx->err_line == 0 || rc < ctx->err_line)) {
		ctx->err_line = 0;
		ctx_fail(ctx, rc, COFFER_EINVAL,
		    "syntax error: expected '[section]', 'key = value' or a comment");
		return (ctx_hint(ctx,
		    "fix line %d: a section header is '[name]' and a setting is "
		    "'key = value'",
		    rc));
	}
	if (ctx->err_line != 0) {
		return (ctx->err_code);
	}
	if (rc != 0) {
		return (
		    coffer_err_set(ctx->err, COFFER_EIO, "%s: cannot read config", ctx->cfg->path));
	}
	if (check_required(ctx) != 0) {
		return (ctx->err_code);
	}
	if (build_patterns(ctx->cfg) != 0) {
		return (coffer_err_set(
		    ctx->err, COFFER_ENOMEM, "%s: out of memory reading config", ctx->cfg->path));
	}
	return (0);
}

static int
load_common(const char *path, FILE *fp, const char *text, const coffer_config_schema *schema,
    coffer_config **out, coffer_err *err)
{
	*out = NULL;
	int rc = check_defaults(schema, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_config *cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		free(cfg);
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "%s: out of memory reading config", path));
	}
	cfg->schema = schema;
	struct parse_ctx ctx = { .cfg = cfg, .err = err, .fp = fp, .text = text, .cur = -1 };
	rc = load(&ctx);
	if (rc != 0) {
		coffer_config_free(cfg);
		return (rc);
	}
	*out = cfg;
	return (0);
}

bool
coffer_config_conninfo_has_password(const char *conninfo)
{
	if (strncmp(conninfo, "postgresql://", 13) == 0 ||
	    strncmp(conninfo, "postgres://", 11) == 0) {
		const char *auth = strstr(conninfo, "://") + 3;
		size_t n = strcspn(auth, "/?");
		const char *at = memchr(auth, '@', n);
		if (at != NULL && memchr(auth, ':', (size_t)(at - auth)) != NULL) {
			return (true);
		}
	}
	/* Keyword form, or ?password= in a URI; a word that merely contains
	 * "password" elsewhere costs a chmod, never a leak. */
	return (strcasestr(conninfo, "password") != NULL);
}

/* The first key set in the file whose value is a secret, as "[section]
 * key" in out; false if none. */
static bool
secret_held(const coffer_config *cfg, char *out, size_t size)
{
	for (size_t i = 0; i < cfg->nvals; i++) {
		const struct cfg_value *v = &cfg->vals[i];
		if (v->spec == NULL) {
			continue;
		}
		if ((v->spec->secret == COFFER_CONFIG_SECRET && v->text[0] != '\0') ||
		    (v->spec->secret == COFFER_CONFIG_SECRET_IF_PASSWORD &&
		        coffer_config_conninfo_has_password(v->text))) {
			snprintf(out, size, "[%s] %s", cfg->secs[v->sec].name, v->key);
			return (true);
		}
	}
	return (false);
}

int
coffer_config_load(
    const char *path, const coffer_config_schema *schema, coffer_config **out, coffer_err *err)
{
	*out = NULL;
	FILE *fp = fopen(path, "r");
	if (fp == NULL) {
		int e = errno;
		int code = e == ENOENT || e == ENOTDIR ? COFFER_ENOENT
		    : e == EACCES || e == EPERM        ? COFFER_EPERM
		                                       : COFFER_EIO;
		coffer_err_set(err, code, "cannot open config file %s: %s", path, strerror(e));
		if (code == COFFER_EPERM) {
			return (coffer_err_hint(err,
			    "make the file readable by this user "
			    "(it holds no secrets itself, but should not be world-writable)"));
		}
		return (coffer_err_hint(err,
		    "pass the right path with -c, or create the file "
		    "(deploy/examples/ has a commented example)"));
	}
	struct stat st = { 0 };
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(fp);
		coffer_err_set(err, COFFER_EINVAL, "config file %s is a directory", path);
		return (coffer_err_hint(err, "pass the path of the file itself with -c"));
	}
	int rc = load_common(path, fp, NULL, schema, out, err);
	fclose(fp);
	char held[2 * COFFER_CONFIG_MAX_NAME + 8];
	if (rc == 0 && (st.st_mode & 077) != 0 && secret_held(*out, held, sizeof(held))) {
		coffer_config_free(*out);
		*out = NULL;
		coffer_err_set(err, COFFER_EPERM,
		    "%s: %s by group or others (mode %04o) and it holds %s", path,
		    (st.st_mode & 044) != 0 ? "readable" : "writable",
		    (unsigned)(st.st_mode & 07777), held);
		return (coffer_err_hint(
		    err, "run: chmod 600 %s (and consider %s exposed)", path, held));
	}
	return (rc);
}

int
coffer_config_load_string(const char *text, const char *name, const coffer_config_schema *schema,
    coffer_config **out, coffer_err *err)
{
	return (load_common(name, NULL, text, schema, out, err));
}

void
coffer_config_free(coffer_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	for (size_t i = 0; i < cfg->nvals; i++) {
		free(cfg->vals[i].key);
		free(cfg->vals[i].text);
	}
	for (size_t i = 0; i < cfg->nsecs; i++) {
		free(cfg->secs[i].name);
	}
	for (size_t i = 0; i < cfg->npats; i++) {
		free(cfg->pats[i].names);
	}
	free(cfg->pats);
	free(cfg->vals);
	free(cfg->secs);
	free(cfg->path);
	free(cfg);
}

const char *
coffer_config_path(const coffer_config *cfg)
{
	return (cfg->path);
}

/* ---- accessors ---------------------------------------------------------- */

static void cfg_misuse(const char *section, const char *key, const char *what)
    __attribute__((noreturn));

static void
cfg_misuse(const char *section, const char *key, const char *what)
{
	fprintf(stderr, "coffer: bug: config [%s] %s: %s\n", section, key, what);
	abort();
}

/* The schema entry for a key the program asks about; a key outside the
 * schema is a typo in the program, caught on the first run. */
static const coffer_config_key *
spec_for(const coffer_config *cfg, const char *section, const char *key, int type)
{
	const coffer_config_section *s = schema_section(cfg->schema, section);
	if (s == NULL) {
		cfg_misuse(section, key, "section not in the schema");
	}
	const coffer_config_key *k = schema_key(s, key);
	if (k == NULL) {
		cfg_misuse(section, key, "key not in the schema");
	}
	if (type >= 0 && (int)k->type != type) {
		cfg_misuse(section, key, "read with the accessor of another type");
	}
	return (k);
}

static int64_t
num_of(const coffer_config *cfg, const char *section, const char *key, int type)
{
	const coffer_config_key *k = spec_for(cfg, section, key, type);
	const struct cfg_value *v = find_value(cfg, section, key);
	if (v != NULL) {
		return (v->num);
	}
	int64_t num = 0;
	if (k->def != NULL && parse_value(k, k->def, &num) != 0) {
		num = 0; /* unreachable: check_defaults refused the schema */
	}
	return (num);
}

const char *
coffer_config_str(const coffer_config *cfg, const char *section, const char *key)
{
	const coffer_config_key *k = spec_for(cfg, section, key, -1);
	const struct cfg_value *v = find_value(cfg, section, key);
	return (v != NULL ? v->text : k->def);
}

int64_t
coffer_config_int(const coffer_config *cfg, const char *section, const char *key)
{
	return (num_of(cfg, section, key, COFFER_CONFIG_INT));
}

bool
coffer_config_bool(const coffer_config *cfg, const char *section, const char *key)
{
	return (num_of(cfg, section, key, COFFER_CONFIG_BOOL) != 0);
}

int64_t
coffer_config_duration_ms(const coffer_config *cfg, const char *section, const char *key)
{
	return (num_of(cfg, section, key, COFFER_CONFIG_DURATION));
}

uint64_t
coffer_config_size(const coffer_config *cfg, const char *section, const char *key)
{
	return ((uint64_t)num_of(cfg, section, key, COFFER_CONFIG_SIZE));
}

bool
coffer_config_has(const coffer_config *cfg, const char *section, const char *key)
{
	spec_for(cfg, section, key, -1);
	return (find_value(cfg, section, key) != NULL);
}

bool
coffer_config_has_section(const coffer_config *cfg, const char *section)
{
	return (find_section(cfg, section) != NULL);
}

int
coffer_config_sections(
    const coffer_config *cfg, const char *pattern, const char *const **names, size_t *n)
{
	size_t plen = strlen(pattern);
	if (plen >= 2 && strcmp(pattern + plen - 2, ".*") == 0) {
		plen -= 2;
	}
	for (size_t i = 0; i < cfg->npats; i++) {
		const char *pn = cfg->pats[i].spec->name;
		if (strlen(pn) == plen + 2 && strncmp(pn, pattern, plen) == 0) {
			*names = cfg->pats[i].names;
			*n = cfg->pats[i].n;
			return (0);
		}
	}
	*names = NULL;
	*n = 0;
	return (COFFER_EINVAL);
}

int
coffer_config_line(const coffer_config *cfg, const char *section, const char *key)
{
	if (key != NULL) {
		const struct cfg_value *v = find_value(cfg, section, key);
		if (v != NULL) {
			return (v->line);
		}
	}
	const struct cfg_section *s = find_section(cfg, section);
	return (s != NULL ? s->line : 0);
}

int
coffer_config_err_at(const coffer_config *cfg, const char *section, const char *key,
    coffer_err *err, const char *fmt, ...)
{
	char pre[COFFER_ERR_MSG_MAX];
	char msg[COFFER_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	where(cfg, coffer_config_line(cfg, section, key), pre, sizeof(pre));
	if (key != NULL) {
		return (
		    coffer_err_set(err, COFFER_EINVAL, "%s[%s] %s: %s", pre, section, key, msg));
	}
	return (coffer_err_set(err, COFFER_EINVAL, "%s[%s] %s", pre, section, msg));
}

int
coffer_config_check_timezone(const char *value, coffer_err *err)
{
	coffer_tz *tz = coffer_tz_load(value, err);
	if (tz == NULL) {
		int code = err != NULL && err->code != 0 ? err->code : COFFER_EINVAL;
		if (err != NULL && err->hint[0] == '\0') {
			coffer_err_hint(err,
			    "use UTC or a tz database name such as Europe/Rome; "
			    "install tzdata if the zone should exist");
		}
		return (code);
	}
	coffer_tz_free(tz);
	return (0);
}

int
coffer_config_check_http_url(const char *value, coffer_err *err)
{
	if ((strncmp(value, "https://", 8) == 0 && value[8] != '\0') ||
	    (strncmp(value, "http://", 7) == 0 && value[7] != '\0')) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not an http(s) URL", value);
	return (coffer_err_hint(err, "write https://host[:port][/path]"));
}
