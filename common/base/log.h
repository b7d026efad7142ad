/*
 * Logging: one logfmt line per record on stderr (or a chosen stream),
 *   ts=2026-11-23T02:56:26.123Z level=info prog=coffer-agent msg="backup started" service=billing
 * The message is a short lowercase phrase; details go in key=value fields
 * produced by the caller's format string, so logs stay greppable and machine
 * readable. Thread-safe: a record is written with one fwrite under a lock.
 *
 * Every record is strict logfmt (docs/OPERATIONS.md "Logs"): space-separated
 * key=value pairs, a value bare or double-quoted, and inside quotes only
 * \" \\ \n \r \t and \xNN escapes (NN: a control byte, or a byte that is
 * not valid UTF-8). The logger, not the caller, escapes: every %s argument
 * is a value, quoted when it has to be where it follows "key=", escaped
 * inside the quotes the format opened ("error=\"%s\""). Callers pass raw
 * text; never pre-quoted text.
 */
#ifndef COFFER_COMMON_BASE_LOG_H
#define COFFER_COMMON_BASE_LOG_H

#include <stdio.h>

typedef enum coffer_log_level {
	COFFER_LOG_DEBUG = 0,
	COFFER_LOG_INFO = 1,
	COFFER_LOG_WARN = 2,
	COFFER_LOG_ERROR = 3,
} coffer_log_level;

/* Names the program in every record; default "coffer". prog is not copied. */
void coffer_log_init(const char *prog, coffer_log_level min_level);

/* Sends records to stream instead of stderr (tests capture them). */
void coffer_log_set_stream(FILE *stream);

/* Parses "debug", "info", "warn", "error". Returns 0 or COFFER_EINVAL. */
int coffer_log_level_parse(const char *text, coffer_log_level *out);

/* msg: short phrase, quoted if it has spaces. fields: printf-style
 * "key=%s key=\"%s\" key=%d" (may be NULL); every %s is escaped as above,
 * so a %s must stand for a whole value or sit inside a quoted one. */
void coffer_log(coffer_log_level level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

#define coffer_log_debug(...) coffer_log(COFFER_LOG_DEBUG, __VA_ARGS__)
#define coffer_log_info(...)  coffer_log(COFFER_LOG_INFO, __VA_ARGS__)
#define coffer_log_warn(...)  coffer_log(COFFER_LOG_WARN, __VA_ARGS__)
#define coffer_log_error(...) coffer_log(COFFER_LOG_ERROR, __VA_ARGS__)

/* Writes value into buf as one logfmt value: bare if it needs no quoting,
 * else double-quoted and escaped as above (cut to fit, quotes closed). For
 * text built outside coffer_log; coffer_log's own arguments need not be.
 * Always NUL-terminates; returns buf. */
const char *coffer_log_quote(char *buf, size_t size, const char *value);

#endif
