/*
 * pg_dump's argv and the check of [postgres] dump_options. See agent/pg/dump.h.
 *
 * Design notes.
 * pg_dump parses with getopt_long, so the check has to see what getopt will
 * see: short options bundle ("-vZ9" is -v -Z 9), a short option's value may
 * be glued on or be the next word, and long options may be abbreviated to
 * any unique prefix ("--snap=..." is --snapshot). The short options that
 * take a value are those of pg_dump 15's option string; a newer pg_dump
 * with more is still safe, because a word we wrongly take for a value can
 * only make us refuse, never let a refused option through.
 */
#include "agent/pg/dump.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DUMP_KEY "[postgres] dump_options"

/* pg_dump 15: "abBcCd:e:E:f:F:h:ij:n:N:Op:RsS:t:T:U:vwWxZ:" */
static const char short_with_value[] = "deEfFhjnNpStTUZ";

/* Long options that take a value in the next word when no "=" is given. */
static const char *const long_with_value[] = {
	"compress",
	"dbname",
	"encoding",
	"exclude-schema",
	"exclude-table",
	"exclude-table-data",
	"exclude-table-and-children",
	"exclude-table-data-and-children",
	"extension",
	"exclude-extension",
	"extra-float-digits",
	"file",
	"filter",
	"format",
	"host",
	"include-foreign-data",
	"jobs",
	"lock-wait-timeout",
	"port",
	"role",
	"rows-per-insert",
	"schema",
	"section",
	"snapshot",
	"superuser",
	"table",
	"table-and-children",
	"username",
	NULL,
};

/* The manifest's row counts cover every table, and restore checks them: a
 * dump that leaves tables, their data or their definitions out would fail
 * that check (or pass it wrongly), so it is refused up front. */
#define PARTIAL                                                                           \
	"the manifest counts the rows of every table and restore checks them; a partial " \
	"dump cannot pass that check"

struct forbidden {
	const char *name;
	const char *why;
};

/* format and compress are checked by value instead. */
static const struct forbidden forbidden_long[] = {
	{ "file", "the agent reads the dump from pg_dump's standard output" },
	{ "snapshot", "the agent passes the snapshot its row counts were taken in" },
	{ "dbname", "the connection comes from [postgres] conninfo" },
	{ "host", "the connection comes from [postgres] conninfo" },
	{ "port", "the connection comes from [postgres] conninfo" },
	{ "username", "the connection comes from [postgres] conninfo" },
	{ "password", "nobody is there to type a password; use a passfile" },
	{ "help", "pg_dump would print help and produce no dump" },
	{ "version", "pg_dump would print its version and produce no dump" },
	{ "data-only", PARTIAL },
	{ "schema-only", PARTIAL },
	{ "section", PARTIAL },
	{ "table", PARTIAL },
	{ "exclude-table", PARTIAL },
	{ "schema", PARTIAL },
	{ "exclude-schema", PARTIAL },
	{ "exclude-table-data", PARTIAL },
	{ "no-unlogged-table-data", PARTIAL },
	{ "table-and-children", PARTIAL },
	{ "exclude-table-and-children", PARTIAL },
	{ "exclude-table-data-and-children", PARTIAL },
	{ "filter", PARTIAL },
	{ "format", NULL },
	{ "compress", NULL },
	{ NULL, NULL },
};

static int
refuse(coffer_err *err, const char *word, const char *why)
{
	coffer_err_set(err, COFFER_EINVAL, "%s: %s is not allowed: %s", DUMP_KEY, word, why);
	return (coffer_err_hint(err,
	    "remove it from %s; the agent always runs pg_dump -Fc -Z0 --snapshot=... "
	    "--dbname=<conninfo> to stdout",
	    DUMP_KEY));
}

static bool
format_ok(const char *v)
{
	return (strcasecmp(v, "c") == 0 || strcasecmp(v, "custom") == 0);
}

static bool
compress_ok(const char *v)
{
	return (strcmp(v, "0") == 0 || strcmp(v, "none") == 0);
}

static int
check_value(coffer_err *err, const char *word, const char *opt, const char *value)
{
	if (strcmp(opt, "format") == 0 && !format_ok(value)) {
		return (refuse(err, word,
		    "the agent stores pg_dump's custom format (-Fc) only, so pg_restore can read it"));
	}
	if (strcmp(opt, "compress") == 0 && !compress_ok(value)) {
		return (refuse(
		    err, word, "the backup stream compresses (zstd); pg_dump must not (-Z0)"));
	}
	return (0);
}

static bool
in_list(const char *const *list, const char *name, size_t len)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strlen(list[i]) == len && strncmp(list[i], name, len) == 0) {
			return (true);
		}
	}
	return (false);
}

/* Checks "--name[=value]"; *takes_next says the next word is its value. */
static int
check_long(coffer_err *err, const char *word, const char *next, bool *takes_next)
{
	const char *name = word + 2;
	const char *eq = strchr(name, '=');
	size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
	*takes_next = eq == NULL && in_list(long_with_value, name, len);
	const char *value = eq != NULL ? eq + 1 : (*takes_next ? next : NULL);
	if (len == 0) {
		return (refuse(err, word, "an option name is missing"));
	}
	for (size_t i = 0; forbidden_long[i].name != NULL; i++) {
		const struct forbidden *f = &forbidden_long[i];
		if (strncmp(f->name, name, len) != 0) {
			continue;
		}
		bool exact = strlen(f->name) == len;
		if (f->why != NULL) {
			return (refuse(err, word, f->why));
		}
		if (!exact) {
			return (refuse(err, word,
			    "it abbreviates --format or --compress; write the option in full"));
		}
		if (value == NULL) {
			return (refuse(err, word, "its value is missing"));
		}
		return (check_value(err, word, f->name, value));
	}
	return (0);
}

/* Checks a bundle of short options "-vZ0"; *takes_next as above. */
static int
check_short(coffer_err *err, const char *word, const char *next, bool *takes_next)
{
	*takes_next = false;
	for (const char *p = word + 1; *p != '\0'; p++) {
		char c = *p;
		char one[3] = { '-', c, '\0' };
		switch (c) {
		case 'f':
			return (refuse(
			    err, one, "the agent reads the dump from pg_dump's standard output"));
		case 'd':
		case 'h':
		case 'p':
		case 'U':
			return (refuse(err, one, "the connection comes from [postgres] conninfo"));
		case 'a':
		case 's':
		case 't':
		case 'T':
		case 'n':
		case 'N':
			return (refuse(err, one, PARTIAL));
		case 'W':
			return (
			    refuse(err, one, "nobody is there to type a password; use a passfile"));
		case 'V':
		case '?':
			return (refuse(err, one, "pg_dump would print and produce no dump"));
		default:
			break;
		}
		if (strchr(short_with_value, c) == NULL) {
			continue;
		}
		const char *value = p[1] != '\0' ? p + 1 : next;
		*takes_next = p[1] == '\0';
		if (value == NULL) {
			return (refuse(err, one, "its value is missing"));
		}
		if (c == 'F') {
			return (check_value(err, word, "format", value));
		}
		if (c == 'Z') {
			return (check_value(err, word, "compress", value));
		}
		return (0); /* the rest of the word was the value */
	}
	return (0);
}

void
agent_dump_argv_free(char **argv)
{
	if (argv == NULL) {
		return;
	}
	for (size_t i = 0; argv[i] != NULL; i++) {
		free(argv[i]);
	}
	free(argv);
}

static bool
is_space(char c)
{
	return (c == ' ' || c == '\t' || c == '\n' || c == '\r');
}

int
agent_dump_argv(const char *pg_dump, const char *snapshot_id, const char *conninfo,
    const char *extra_opts, char ***out, coffer_err *err)
{
	*out = NULL;
	if (pg_dump == NULL || pg_dump[0] == '\0' || snapshot_id == NULL ||
	    snapshot_id[0] == '\0') {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "agent_dump_argv: pg_dump path and snapshot id are required"));
	}
	if (extra_opts == NULL) {
		extra_opts = "";
	}
	/* Words first, in a copy split in place. */
	char *copy = strdup(extra_opts);
	size_t max_words = strlen(extra_opts) / 2 + 1;
	char **words = calloc(max_words + 1, sizeof(*words));
	/* 6 fixed arguments, the words, --dbname and the NULL. */
	char **argv = calloc(max_words + 8, sizeof(*argv));
	if (copy == NULL || words == NULL || argv == NULL) {
		free(copy);
		free(words);
		free(argv);
		return (coffer_err_set(
		    err, COFFER_ENOMEM, "out of memory building pg_dump's arguments"));
	}
	size_t nw = 0;
	for (char *p = copy; *p != '\0';) {
		while (is_space(*p)) {
			*p++ = '\0';
		}
		if (*p == '\0') {
			break;
		}
		words[nw++] = p;
		while (*p != '\0' && !is_space(*p)) {
			p++;
		}
	}

	int rv = 0;
	for (size_t i = 0; i < nw && rv == 0; i++) {
		const char *w = words[i];
		const char *next = i + 1 < nw ? words[i + 1] : NULL;
		bool takes_next = false;
		if (strcmp(w, "--") == 0) {
			rv = refuse(err, w, "it would end pg_dump's options");
		} else if (w[0] != '-' || w[1] == '\0') {
			rv = refuse(err, w,
			    "pg_dump would take a bare word as the database name (write long "
			    "options as --name=value)");
		} else if (w[1] == '-') {
			rv = check_long(err, w, next, &takes_next);
		} else {
			rv = check_short(err, w, next, &takes_next);
		}
		if (takes_next) {
			i++;
		}
	}

	size_t argc = 0;
	if (rv == 0) {
		char snap[128];
		snprintf(snap, sizeof(snap), "--snapshot=%s", snapshot_id);
		const char *fixed[] = { pg_dump, "-Fc", "-Z0", snap, "--no-owner",
			"--no-privileges" };
		for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
			argv[argc++] = strdup(fixed[i]);
		}
		for (size_t i = 0; i < nw; i++) {
			argv[argc++] = strdup(words[i]);
		}
		size_t cl = strlen(conninfo != NULL ? conninfo : "") + sizeof("--dbname=");
		char *db = malloc(cl);
		if (db != NULL) {
			snprintf(db, cl, "--dbname=%s", conninfo != NULL ? conninfo : "");
		}
		argv[argc++] = db;
		argv[argc] = NULL;
		for (size_t i = 0; i < argc; i++) {
			if (argv[i] == NULL) {
				rv = coffer_err_set(err, COFFER_ENOMEM,
				    "out of memory building pg_dump's arguments");
			}
		}
	}
	free(copy);
	free(words);
	if (rv != 0) {
		for (size_t i = 0; i < argc; i++) {
			free(argv[i]);
		}
		free(argv);
		return (rv);
	}
	*out = argv;
	return (0);
}
