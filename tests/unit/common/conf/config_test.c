/* Config: a schema with every type, loaded from real files. Values, defaults,
 * dotted keys, pattern sections and line numbers; then every way a file can
 * be wrong, each checked for the file:line, section, key and hint it names. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/conf/config.h"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];
	char path[600];
};

static int cron_calls;

/* Stands in for the caller's cron parser: the hook's contract is what is
 * under test, so any rule will do; this one refuses anything with "61". */
static int
fake_cron(const char *expr, coffer_err *err)
{
	cron_calls++;
	if (strstr(expr, "61") != NULL) {
		coffer_err_set(err, COFFER_EINVAL, "minute 61 is out of range 0-59");
		return (coffer_err_hint(err, "use a minute from 0 to 59"));
	}
	return (0);
}

static int
no_secrets(const char *value, coffer_err *err)
{
	if (strncmp(value, "bad", 3) == 0) {
		return (coffer_err_set(err, COFFER_EINVAL, "token is malformed"));
	}
	return (0);
}

static const char *const colors[] = { "red", "green", "blue", NULL };

static const coffer_config_key main_keys[] = {
	{ .name = "name", .type = COFFER_CONFIG_STRING, .required = true },
	{ .name = "dir", .type = COFFER_CONFIG_PATH, .def = "/var/lib/x" },
	{ .name = "level", .type = COFFER_CONFIG_INT, .def = "3", .min = 1, .max = 19 },
	{ .name = "count", .type = COFFER_CONFIG_INT },
	{ .name = "enabled", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ .name = "window",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "2h",
	    .min = 60000,
	    .max = 7 * 86400000LL },
	{ .name = "keep", .type = COFFER_CONFIG_DURATION, .allow_forever = true, .def = "7d" },
	{ .name = "chunk",
	    .type = COFFER_CONFIG_SIZE,
	    .def = "1MiB",
	    .min = 65536,
	    .max = 16 << 20 },
	{ .name = "color", .type = COFFER_CONFIG_ENUM, .def = "green", .words = colors },
	{ .name = "when", .type = COFFER_CONFIG_CRON },
	{ .name = "token", .type = COFFER_CONFIG_STRING, .check = no_secrets },
	{ .name = "notes", .type = COFFER_CONFIG_STRING, .def = "" },
	{ 0 },
};

static const coffer_config_key svc_keys[] = {
	{ .name = "owner", .type = COFFER_CONFIG_STRING, .required = true },
	{ .name = "retention.daily", .type = COFFER_CONFIG_INT, .def = "7", .min = 0, .max = 3650 },
	{ .name = "pitr.window", .type = COFFER_CONFIG_DURATION, .allow_forever = true },
	{ 0 },
};

static const coffer_config_key opt_keys[] = {
	{ .name = "url", .type = COFFER_CONFIG_STRING, .required = true },
	{ 0 },
};

static const coffer_config_section sections[] = {
	{ .name = "main", .required = true, .keys = main_keys },
	{ .name = "service.*", .keys = svc_keys },
	{ .name = "operator.*", .keys = opt_keys },
	{ .name = "optional", .keys = opt_keys },
	{ 0 },
};

static const coffer_config_schema schema = { .sections = sections, .check_cron = fake_cron };

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("config-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->path, sizeof(f->path), "%s/t.conf", f->dir);
	cron_calls = 0;
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static void
write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
}

/* Loads text from a real file and expects failure with code; checks that
 * the message starts with "<path>:<line>: " (line 0: "<path>: ") and holds
 * every given fragment, and that a hint is there. */
static void
expect_fail(struct fixture *f, const char *text, int code, int line, ...)
{
	write_text(f->path, text);
	coffer_config *cfg = (coffer_config *)0x1;
	coffer_err err = { 0 };
	int rc = coffer_config_load(f->path, &schema, &cfg, &err);
	if (rc != code) {
		print_error("rc %d, message: %s\n", rc, err.msg);
	}
	assert_int_equal(rc, code);
	assert_null(cfg);
	char prefix[700];
	if (line > 0) {
		snprintf(prefix, sizeof(prefix), "%s:%d: ", f->path, line);
	} else {
		snprintf(prefix, sizeof(prefix), "%s: ", f->path);
	}
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0) {
		print_error("message '%s' does not start with '%s'\n", err.msg, prefix);
		fail();
	}
	va_list ap;
	va_start(ap, line);
	const char *frag;
	while ((frag = va_arg(ap, const char *)) != NULL) {
		if (strstr(err.msg, frag) == NULL) {
			print_error("message '%s' lacks '%s'\n", err.msg, frag);
			fail();
		}
	}
	va_end(ap);
	assert_true(strlen(err.hint) > 0);
	assert_null(strchr(err.msg, '\n'));
}

static const char *full_text = "# a comment\n"
                               "; another comment\n"
                               "[main]\n"
                               "name = alpha beta   # inline comment\n"
                               "level = 19\n"
                               "count = -42\n"
                               "enabled = Yes\n"
                               "window = 90m\n"
                               "keep = forever\n"
                               "chunk = 64KiB\n"
                               "color = blue\n"
                               "when = 0 2 * * *\n"
                               "token = good ; trailing\n"
                               "\n"
                               "[service.billing]\n"
                               "owner = team-payments\n"
                               "retention.daily = 30\n"
                               "pitr.window = 7d\n"
                               "[service.ledger]\n"
                               "  owner = team-ledger\n"
                               "[optional]\n"
                               "url = tcp://127.0.0.1:1\n";

static void
test_full_file(void **state)
{
	struct fixture *f = *state;
	write_text(f->path, full_text);
	coffer_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), 0);
	assert_string_equal(coffer_config_path(cfg), f->path);
	assert_string_equal(coffer_config_str(cfg, "main", "name"), "alpha beta");
	assert_int_equal(coffer_config_int(cfg, "main", "level"), 19);
	assert_int_equal(coffer_config_int(cfg, "main", "count"), -42);
	assert_true(coffer_config_bool(cfg, "main", "enabled"));
	assert_int_equal(coffer_config_duration_ms(cfg, "main", "window"), 90 * 60000);
	assert_int_equal(coffer_config_duration_ms(cfg, "main", "keep"), -1);
	assert_int_equal(coffer_config_size(cfg, "main", "chunk"), 65536);
	assert_string_equal(coffer_config_str(cfg, "main", "color"), "blue");
	assert_string_equal(coffer_config_str(cfg, "main", "when"), "0 2 * * *");
	assert_string_equal(coffer_config_str(cfg, "main", "token"), "good");
	assert_int_equal(cron_calls, 1);
	/* str reads any type as its text. */
	assert_string_equal(coffer_config_str(cfg, "main", "window"), "90m");

	assert_string_equal(coffer_config_str(cfg, "service.billing", "owner"), "team-payments");
	assert_int_equal(coffer_config_int(cfg, "service.billing", "retention.daily"), 30);
	assert_int_equal(
	    coffer_config_duration_ms(cfg, "service.billing", "pitr.window"), 7 * 86400000LL);
	/* The indented line is a key of its own, not a continuation. */
	assert_string_equal(coffer_config_str(cfg, "service.ledger", "owner"), "team-ledger");
	assert_int_equal(coffer_config_int(cfg, "service.ledger", "retention.daily"), 7);
	assert_false(coffer_config_has(cfg, "service.ledger", "retention.daily"));
	assert_true(coffer_config_has(cfg, "service.billing", "retention.daily"));

	const char *const *names;
	size_t n;
	assert_int_equal(coffer_config_sections(cfg, "service", &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "billing");
	assert_string_equal(names[1], "ledger");
	assert_int_equal(coffer_config_sections(cfg, "service.*", &names, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(coffer_config_sections(cfg, "operator", &names, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(coffer_config_sections(cfg, "main", &names, &n), COFFER_EINVAL);
	assert_int_equal(coffer_config_sections(cfg, "nothing", &names, &n), COFFER_EINVAL);

	assert_true(coffer_config_has_section(cfg, "optional"));
	assert_false(coffer_config_has_section(cfg, "service.other"));
	assert_int_equal(coffer_config_line(cfg, "main", "level"), 5);
	assert_int_equal(coffer_config_line(cfg, "service.ledger", "owner"), 20);
	assert_int_equal(coffer_config_line(cfg, "service.ledger", "retention.daily"), 19);
	assert_int_equal(coffer_config_line(cfg, "service.ledger", NULL), 19);
	assert_int_equal(coffer_config_line(cfg, "service.none", "owner"), 0);

	assert_int_equal(coffer_config_err_at(cfg, "service.billing", "retention.daily", &err,
	                     "%d is below the %s minimum of %d", 30, "gdpr", 90),
	    COFFER_EINVAL);
	char expect[800];
	snprintf(expect, sizeof(expect),
	    "%s:17: [service.billing] retention.daily: 30 is below the gdpr minimum of 90",
	    f->path);
	assert_string_equal(err.msg, expect);
	coffer_config_err_at(cfg, "service.ledger", NULL, &err, "has no owner team");
	snprintf(expect, sizeof(expect), "%s:19: [service.ledger] has no owner team", f->path);
	assert_string_equal(err.msg, expect);
	coffer_config_err_at(cfg, "service.gone", "owner", &err, "x");
	snprintf(expect, sizeof(expect), "%s: [service.gone] owner: x", f->path);
	assert_string_equal(err.msg, expect);
	coffer_config_free(cfg);
}

static void
test_defaults(void **state)
{
	struct fixture *f = *state;
	write_text(f->path, "\xEF\xBB\xBF[main]\nname = x\n");
	coffer_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), 0);
	assert_string_equal(coffer_config_str(cfg, "main", "dir"), "/var/lib/x");
	assert_int_equal(coffer_config_int(cfg, "main", "level"), 3);
	assert_int_equal(coffer_config_int(cfg, "main", "count"), 0);
	assert_false(coffer_config_bool(cfg, "main", "enabled"));
	assert_int_equal(coffer_config_duration_ms(cfg, "main", "window"), 2 * 3600000);
	assert_int_equal(coffer_config_duration_ms(cfg, "main", "keep"), 7 * 86400000LL);
	assert_int_equal(coffer_config_size(cfg, "main", "chunk"), 1 << 20);
	assert_string_equal(coffer_config_str(cfg, "main", "color"), "green");
	assert_null(coffer_config_str(cfg, "main", "when"));
	assert_string_equal(coffer_config_str(cfg, "main", "notes"), "");
	assert_false(coffer_config_has(cfg, "main", "level"));
	/* An absent optional section still answers with defaults. */
	assert_false(coffer_config_has_section(cfg, "optional"));
	assert_null(coffer_config_str(cfg, "optional", "url"));
	assert_int_equal(cron_calls, 0);
	coffer_config_free(cfg);
}

static void
test_sizes_and_long_lines(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *text;
		uint64_t bytes;
	} ok[] = { { "65536", 65536 }, { "65536B", 65536 }, { "1MiB", 1 << 20 },
		{ "16MiB", 16 << 20 }, { "512KiB", 512 << 10 } };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "[main]\nname = x\nchunk = %s\n", ok[i].text);
		coffer_config *cfg = NULL;
		coffer_err err = { 0 };
		assert_int_equal(coffer_config_load_string(text, "mem", &schema, &cfg, &err), 0);
		assert_int_equal(coffer_config_size(cfg, "main", "chunk"), ok[i].bytes);
		coffer_config_free(cfg);
	}
	/* inih's own buffer is 200 bytes; a real conninfo can be longer. */
	char *text = malloc(5000);
	char value[3001];
	memset(value, 'v', 3000);
	value[3000] = '\0';
	snprintf(text, 5000, "[main]\nname = %s\n", value);
	write_text(f->path, text);
	coffer_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), 0);
	assert_string_equal(coffer_config_str(cfg, "main", "name"), value);
	coffer_config_free(cfg);
	free(text);
}

static void
test_missing_and_unreadable(void **state)
{
	struct fixture *f = *state;
	coffer_config *cfg = (coffer_config *)0x1;
	coffer_err err = { 0 };
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), COFFER_ENOENT);
	assert_null(cfg);
	assert_non_null(strstr(err.msg, f->path));
	assert_non_null(strstr(err.msg, "No such file"));
	assert_true(strlen(err.hint) > 0);

	char sub[700];
	snprintf(sub, sizeof(sub), "%s/x", f->path);
	write_text(f->path, "[main]\nname = x\n");
	assert_int_equal(coffer_config_load(sub, &schema, &cfg, &err), COFFER_ENOENT);

	assert_int_equal(coffer_config_load(f->dir, &schema, &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "is a directory"));

	if (geteuid() != 0) { /* root reads anything */
		assert_int_equal(chmod(f->path, 0), 0);
		assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), COFFER_EPERM);
		assert_non_null(strstr(err.msg, "Permission denied"));
	}
}

static void
test_syntax_errors(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, "[main]\nname = x\njust words\n", COFFER_EINVAL, 3, "syntax error", NULL);
	expect_fail(f, "[main\nname = x\n", COFFER_EINVAL, 1, "syntax error", NULL);
	/* The first bad line wins, whoever finds it. */
	expect_fail(
	    f, "[main]\nname = x\noops\nnope = 1\n", COFFER_EINVAL, 3, "syntax error", NULL);
	expect_fail(f, "[main]\nnope = 1\noops\n", COFFER_EINVAL, 2, "unknown key 'nope'", NULL);
	expect_fail(
	    f, "name = x\n[main]\n", COFFER_EINVAL, 1, "key 'name' outside any section", NULL);
	expect_fail(
	    f, "[main] extra\nname = x\n", COFFER_EINVAL, 1, "text after section header", NULL);
	expect_fail(
	    f, "[main]\nname = x\n[bad name]\n", COFFER_EINVAL, 3, "bad section name", NULL);
	expect_fail(f, "[main]\nname = x\n[]\n", COFFER_EINVAL, 3, "bad section name", NULL);
}

static void
test_sections_and_keys(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, "[main]\nname = x\n\n[mian]\n", COFFER_EINVAL, 4, "unknown section [mian]",
	    "[main]", "[service.<name>]", "[optional]", NULL);
	/* "service." alone is not an instance of service.* */
	expect_fail(f, "[main]\nname = x\n[service.]\n", COFFER_EINVAL, 3,
	    "unknown section [service.]", NULL);
	expect_fail(f, "[main]\nname = x\n[main]\n", COFFER_EINVAL, 3,
	    "duplicate section [main] (first on line 1)", NULL);
	expect_fail(f, "[main]\nname = x\nlevle = 3\n", COFFER_EINVAL, 3,
	    "[main] unknown key 'levle'", "allowed: name, dir, level, count", NULL);
	expect_fail(f, "[main]\nname = x\nlevel = 3\nlevel = 4\n", COFFER_EINVAL, 4,
	    "[main] duplicate key 'level' (first set on line 3)", NULL);
	expect_fail(f, "[main]\nname = x\n[service.a]\nowner = o\nretention.weekly = 3\n",
	    COFFER_EINVAL, 5, "[service.a] unknown key 'retention.weekly'", "retention.daily",
	    NULL);
}

static void
test_required(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, "[optional]\nurl = u\n", COFFER_EINVAL, 0, "missing required section [main]",
	    "name", NULL);
	expect_fail(f, "# c\n[main]\nlevel = 3\n", COFFER_EINVAL, 2,
	    "[main] missing required key 'name'", NULL);
	/* A required string may not be empty. */
	expect_fail(f, "[main]\nname =\n", COFFER_EINVAL, 2,
	    "[main] name = '': expected a non-empty", NULL);
	/* An empty pattern instance is still checked. */
	expect_fail(f, "[main]\nname = x\n[service.a]\n[service.b]\nowner = o\n", COFFER_EINVAL, 3,
	    "[service.a] missing required key 'owner'", NULL);
	/* Optional section: absent is fine (test_defaults), present needs its keys. */
	expect_fail(f, "[main]\nname = x\n[optional]\n# nothing\n", COFFER_EINVAL, 3,
	    "[optional] missing required key 'url'", NULL);
}

static void
test_bad_values(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, "[main]\nname = x\nlevel = 20\n", COFFER_EINVAL, 3,
	    "[main] level = '20': expected an integer from 1 to 19", NULL);
	expect_fail(f, "[main]\nname = x\nlevel = 0\n", COFFER_EINVAL, 3, "from 1 to 19", NULL);
	expect_fail(f, "[main]\nname = x\nlevel = 3x\n", COFFER_EINVAL, 3, "level = '3x'", NULL);
	expect_fail(f, "[main]\nname = x\ncount = 99999999999999999999\n", COFFER_EINVAL, 3,
	    "expected an integer", NULL);
	expect_fail(f, "[main]\nname = x\nenabled = maybe\n", COFFER_EINVAL, 3,
	    "expected true or false", NULL);
	expect_fail(f, "[main]\nname = x\nwindow = 2 hours\n", COFFER_EINVAL, 3,
	    "window = '2 hours': expected a duration", "from 1m to 7d", NULL);
	expect_fail(f, "[main]\nname = x\nwindow = 30s\n", COFFER_EINVAL, 3, "from 1m to 7d", NULL);
	expect_fail(f, "[main]\nname = x\nwindow = forever\n", COFFER_EINVAL, 3,
	    "expected a duration", NULL);
	expect_fail(f, "[main]\nname = x\nkeep = never\n", COFFER_EINVAL, 3, "or forever", NULL);
	expect_fail(f, "[main]\nname = x\nchunk = 1MB\n", COFFER_EINVAL, 3,
	    "chunk = '1MB': expected a size", "from 64KiB to 16MiB", NULL);
	expect_fail(
	    f, "[main]\nname = x\nchunk = 32MiB\n", COFFER_EINVAL, 3, "from 64KiB to 16MiB", NULL);
	expect_fail(f, "[main]\nname = x\nchunk = 99999999999TiB\n", COFFER_EINVAL, 3,
	    "expected a size", NULL);
	expect_fail(f, "[main]\nname = x\ncolor = Red\n", COFFER_EINVAL, 3,
	    "color = 'Red': expected one of red, green, blue", NULL);
	expect_fail(
	    f, "[main]\nname = x\ndir =\n", COFFER_EINVAL, 3, "expected a non-empty path", NULL);
	expect_fail(f, "[main]\nname = x\n[service.a]\nowner = o\npitr.window = 7 days\n",
	    COFFER_EINVAL, 5, "[service.a] pitr.window = '7 days'", NULL);
}

static void
test_hooks(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, "[main]\nname = x\nwhen = 61 2 * * *\n", COFFER_EINVAL, 3,
	    "[main] when = '61 2 * * *': minute 61 is out of range", NULL);
	assert_int_equal(cron_calls, 1);
	write_text(f->path, "[main]\nname = x\ntoken = bad-secret-value\n");
	coffer_config *cfg;
	coffer_err err = { 0 };
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, ":3: [main] token: token is malformed"));
	/* The value may be a secret: never echoed. */
	assert_null(strstr(err.msg, "bad-secret-value"));
	assert_true(strlen(err.hint) > 0);
}

static void
test_limits(void **state)
{
	struct fixture *f = *state;
	size_t n = COFFER_CONFIG_MAX_LINE + 100;
	char *text = malloc(n + 64);
	int off = snprintf(text, n + 64, "[main]\nname = ");
	memset(text + off, 'a', n - (size_t)off);
	strcpy(text + n, "\n");
	expect_fail(f, text, COFFER_ETOOBIG, 2, "line is longer than", NULL);
	free(text);

	/* The boundary: COFFER_CONFIG_MAX_LINE - 1 bytes of text pass, with
	 * or without a newline; one more is refused either way. */
	for (int extra = 0; extra <= 1; extra++) {
		for (int nl = 0; nl <= 1; nl++) {
			size_t len = COFFER_CONFIG_MAX_LINE - 1 + (size_t)extra;
			char *t = malloc(len + 16);
			int o = snprintf(t, len + 16, "[main]\nname = ");
			memset(t + o, 'b', len - (size_t)(o - 7));
			t[7 + len] = '\0';
			if (nl) {
				strcat(t, "\n");
			}
			coffer_config *c = NULL;
			coffer_err e = { 0 };
			int rc = coffer_config_load_string(t, "mem", &schema, &c, &e);
			assert_int_equal(rc, extra ? COFFER_ETOOBIG : 0);
			if (!extra) {
				assert_int_equal(
				    strlen(coffer_config_str(c, "main", "name")), len - 7);
			}
			coffer_config_free(c);
			free(t);
		}
	}

	/* A file over the size cap, made of valid lines, is refused without
	 * being held in memory. */
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs("[main]\nname = x\n", fp);
	for (size_t i = 0; i < COFFER_CONFIG_MAX_BYTES / 10 + 10; i++) {
		fputs("# padding\n", fp);
	}
	fclose(fp);
	coffer_config *cfg;
	coffer_err err = { 0 };
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "larger than"));

	fp = fopen(f->path, "w");
	fwrite("[main]\nname = a\0b\n", 1, 18, fp);
	fclose(fp);
	assert_int_equal(coffer_config_load(f->path, &schema, &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, ":2: line contains a NUL byte"));
}

static const coffer_config_key bad_default_keys[] = {
	{ .name = "level", .type = COFFER_CONFIG_INT, .def = "40", .min = 1, .max = 19 },
	{ 0 },
};
static const coffer_config_section bad_default_sections[] = {
	{ .name = "main", .keys = bad_default_keys },
	{ 0 },
};
static const coffer_config_schema bad_default_schema = { .sections = bad_default_sections };

static void
test_bad_schema_default(void **state)
{
	(void)state;
	coffer_config *cfg;
	coffer_err err = { 0 };
	assert_int_equal(
	    coffer_config_load_string("[main]\n", "mem", &bad_default_schema, &cfg, &err),
	    COFFER_EINTERNAL);
	assert_non_null(strstr(err.msg, "default '40' of [main] level"));
}

/* Asking for a key outside the schema, or with the wrong type, is a bug in
 * the program: it must stop loudly, not read as 0. */
static void
expect_abort(const coffer_config *cfg, int which)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (freopen("/dev/null", "w", stderr) == NULL) {
			_exit(3);
		}
		switch (which) {
		case 0:
			(void)coffer_config_int(cfg, "main", "name");
			break;
		case 1:
			(void)coffer_config_str(cfg, "main", "nokey");
			break;
		case 2:
			(void)coffer_config_bool(cfg, "nosection", "enabled");
			break;
		case 3:
			(void)coffer_config_size(cfg, "main", "window");
			break;
		}
		_exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void
test_accessor_misuse(void **state)
{
	(void)state;
	coffer_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(
	    coffer_config_load_string("[main]\nname = x\n", "mem", &schema, &cfg, &err), 0);
	for (int i = 0; i < 4; i++) {
		expect_abort(cfg, i);
	}
	coffer_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sizes_and_long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sections_and_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hooks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_schema_default, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accessor_misuse, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
