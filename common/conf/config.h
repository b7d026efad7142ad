/*
 * Config: typed INI files checked against a schema, on inih.
 *
 * A schema is a static table of sections, each with a table of keys. A
 * section is exact ("agent") or a pattern ("service.*") whose instances
 * ("service.billing") the caller enumerates with coffer_config_sections.
 * Every key has a type, is required or optional, and may have a default.
 * Keys may contain dots ("retention.daily").
 *
 * What it promises:
 * - coffer_config_load refuses, with one line naming file, line, section and
 *   key plus a hint with the fix: an unreadable file, a syntax error, an
 *   unknown or duplicate section, a key outside any section, an unknown key
 *   (listing the allowed ones), a duplicate key, a missing required section
 *   or key, and a value that does not fit its type, range or word list.
 * - After a successful load every value has been parsed, so the typed
 *   accessors cannot fail; they return the value from the file, else the
 *   schema's default, else 0 / NULL / false.
 * - Every value keeps its line number, so callers that check meaning (a
 *   policy rule, a file that must exist) report the right line with
 *   coffer_config_err_at.
 * - Memory is bounded by COFFER_CONFIG_MAX_BYTES and COFFER_CONFIG_MAX_LINE,
 *   whatever the file holds.
 *
 * Syntax: "[section]" headers, "key = value" lines, comments on their own
 * line start with '#' or ';', and a '#' or ';' after whitespace starts an
 * inline comment. Values are trimmed; quotes are not special. A section may
 * appear only once.
 *
 * Design notes.
 * Debian's libinih has no line numbers in its handler, so the loader feeds
 * inih through its own reader (ini_parse_stream), which counts lines, caps
 * their length and the file size, and notes section headers -- inih does
 * not report a section that has no keys, yet an empty "[repository.dr]" must
 * still be refused for lacking "type". inih's line buffer and comment rules
 * are process-wide globals in Debian's build; they are set once (pthread_once)
 * to a heap buffer of COFFER_CONFIG_MAX_LINE, '#' and ';' inline comments and
 * no multi-line values (an indented line is a key of its own, not a silent
 * continuation of the previous value). No other code in Coffer calls inih.
 *
 * Thread-safety: a loaded coffer_config is read-only and may be shared.
 */
#ifndef COFFER_COMMON_CONF_CONFIG_H
#define COFFER_COMMON_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/base/name.h"

#define COFFER_CONFIG_MAX_LINE  4096          /* a line is at most this - 1 bytes, newline apart */
#define COFFER_CONFIG_MAX_BYTES (1024 * 1024) /* bytes per file */
/* Bytes in a section or key name: room for the longest prefix
 * ("repository.") and a whole name (common/base/name.h), so every name the
 * rule accepts can have its [service.NAME] or [operator.NAME] section. */
#define COFFER_CONFIG_MAX_NAME (16 + COFFER_NAME_MAX)

typedef enum coffer_config_type {
	COFFER_CONFIG_STRING,   /* any text; a required one must not be empty */
	COFFER_CONFIG_PATH,     /* a file or directory name, not empty */
	COFFER_CONFIG_INT,      /* decimal integer in [min, max] */
	COFFER_CONFIG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
	COFFER_CONFIG_DURATION, /* "90s", "15m", "2h", "7d"; ms in [min, max] */
	COFFER_CONFIG_SIZE,     /* "1048576", "512KiB", "64MiB", "1GiB"; bytes in [min, max] */
	COFFER_CONFIG_ENUM,     /* one of words */
	COFFER_CONFIG_CRON,     /* text, checked by the schema's check_cron if set */
} coffer_config_type;

/* Whether a key's value is a secret. A file that holds one (a key set in
 * it, not a default) must be closed to group and others, or
 * coffer_config_load refuses it naming the key and the chmod. */
typedef enum coffer_config_secret {
	COFFER_CONFIG_PUBLIC = 0,
	COFFER_CONFIG_SECRET,             /* always: secret_key, routing_key */
	COFFER_CONFIG_SECRET_IF_PASSWORD, /* a libpq conninfo that has a password in it */
} coffer_config_secret;

/* A caller's extra check of one value; fills err (message without the
 * file/line prefix, which the loader adds) and returns a COFFER_E* code. */
typedef int (*coffer_config_check_fn)(const char *value, coffer_err *err);

/* Fields in the order a schema entry reads; the 8 bytes of padding the analyzer
 * finds per entry come to about a kilobyte of static tables in all. */
/* NOLINTNEXTLINE(clang-analyzer-optin.performance.Padding) */
typedef struct coffer_config_key {
	const char *name;
	coffer_config_type type;
	bool required;
	const char *def;              /* default, written as in a file; NULL: none */
	int64_t min, max;             /* int, duration (ms), size (bytes); ignored if both 0 */
	bool allow_forever;           /* duration: "forever" (read back as -1) */
	const char *const *words;     /* enum: NULL-terminated */
	coffer_config_check_fn check; /* optional, after the type check */
	const char *why;              /* required keys: why, shown when missing; may be NULL */
	coffer_config_secret secret;
} coffer_config_key;

typedef struct coffer_config_section {
	const char *name;              /* "agent", or "service.*" for instances */
	bool required;                 /* exact sections only */
	const coffer_config_key *keys; /* terminated by an entry with name == NULL */
} coffer_config_section;

struct coffer_config;

typedef struct coffer_config_schema {
	const coffer_config_section *sections; /* terminated by name == NULL */
	coffer_config_check_fn check_cron;     /* for every CRON key; may be NULL */
	/* May be NULL. Asked, once the whole file is read, about each required
	 * section (key NULL) and key: true lets this file leave it out (an
	 * agent.conf for a drill runner has no [schedule]). */
	bool (*optional)(const struct coffer_config *cfg, const char *section, const char *key);
} coffer_config_schema;

typedef struct coffer_config coffer_config;

/* Reads and checks path against schema (which must outlive the result). On
 * success *out is a new handle for coffer_config_free. Errors: COFFER_ENOENT
 * (no such file), COFFER_EPERM (not readable), COFFER_EIO, COFFER_ETOOBIG
 * (file or line too long), COFFER_EINVAL (anything in the text),
 * COFFER_EINTERNAL (the schema's own default does not parse), COFFER_EPERM
 * (the file sets a secret key and group or others may read or write it). */
int coffer_config_load(
    const char *path, const coffer_config_schema *schema, coffer_config **out, coffer_err *err);

/* The same from text in memory; name stands in for the path in messages. */
int coffer_config_load_string(const char *text, const char *name,
    const coffer_config_schema *schema, coffer_config **out, coffer_err *err);

void coffer_config_free(coffer_config *cfg);

/* The path (or name) the configuration was loaded from. */
const char *coffer_config_path(const coffer_config *cfg);

/*
 * Accessors. section is a full name ("agent", "service.billing"); key must be
 * in the schema with the accessor's type (str works for every type and gives
 * the text), else the program aborts naming the caller's mistake: that is a
 * bug, never the file's fault. Values are owned by cfg.
 */
const char *coffer_config_str(const coffer_config *cfg, const char *section, const char *key);
int64_t coffer_config_int(const coffer_config *cfg, const char *section, const char *key);
bool coffer_config_bool(const coffer_config *cfg, const char *section, const char *key);
/* -1 for "forever". */
int64_t coffer_config_duration_ms(const coffer_config *cfg, const char *section, const char *key);
uint64_t coffer_config_size(const coffer_config *cfg, const char *section, const char *key);

/* True if the file sets key in section (a default does not count). */
bool coffer_config_has(const coffer_config *cfg, const char *section, const char *key);

/* True if the file has the section header. */
bool coffer_config_has_section(const coffer_config *cfg, const char *section);

/* The instances of a pattern section, in file order: for "service" (or
 * "service.*") and [service.billing], [service.ledger], names is
 * {"billing", "ledger"}. The array is owned by cfg. COFFER_EINVAL if the
 * schema has no such pattern. */
int coffer_config_sections(
    const coffer_config *cfg, const char *pattern, const char *const **names, size_t *n);

/* Line of key in section (or of the section header when key is NULL or not
 * set); 0 if neither is in the file. */
int coffer_config_line(const coffer_config *cfg, const char *section, const char *key);

/* Sets err to "<path>:<line>: [section] key: <message>" for a problem the
 * caller found in a value; the line is coffer_config_line's. key may be NULL.
 * Returns COFFER_EINVAL; add the fix with coffer_err_hint. */
int coffer_config_err_at(const coffer_config *cfg, const char *section, const char *key,
    coffer_err *err, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Value checks several schemas share (coffer_config_key.check). A time
 * zone is loaded, not only looked up, so damaged tzdata is found at start
 * rather than at the first scheduled run. */
int coffer_config_check_timezone(const char *value, coffer_err *err);
/* An http:// or https:// URL with something after the scheme. */
/* Whether a libpq conninfo ("k=v ..." or a postgres:// URI) carries a
 * password. */
bool coffer_config_conninfo_has_password(const char *conninfo);

int coffer_config_check_http_url(const char *value, coffer_err *err);

#endif
