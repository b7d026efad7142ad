/*
 * Recovery targets of a physical restore: what the operator asked for
 * (--target-time, --target-lsn, --target-xid, --target-name, --target
 * immediate, --target-inclusive, --target-action), checked once, and
 * written as PostgreSQL's recovery_target_* settings with every value
 * quoted for postgresql.auto.conf (quotes doubled, backslashes escaped,
 * control characters refused), so no input is ever spliced in as it came.
 *
 * Also the LSN and WAL segment arithmetic the window and the dry run need.
 * Pure: no I/O.
 */
#ifndef COFFER_AGENT_RESTORE_TARGET_H
#define COFFER_AGENT_RESTORE_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef enum agent_target_kind {
	AGENT_TARGET_NONE = 0, /* the end of the archived WAL */
	AGENT_TARGET_TIME,
	AGENT_TARGET_LSN,
	AGENT_TARGET_XID,
	AGENT_TARGET_NAME,
	AGENT_TARGET_IMMEDIATE,
} agent_target_kind;

typedef enum agent_target_action {
	AGENT_ACTION_PROMOTE = 0,
	AGENT_ACTION_PAUSE,
	AGENT_ACTION_SHUTDOWN,
} agent_target_action;

/* PostgreSQL's restore point names are at most 63 bytes (MAXFNAMELEN - 1). */
#define AGENT_TARGET_NAME_MAX 63

typedef struct agent_target {
	agent_target_kind kind;
	int64_t time_ms; /* TIME */
	uint64_t lsn;    /* LSN */
	uint64_t xid;    /* XID */
	char name[AGENT_TARGET_NAME_MAX + 1];
	int inclusive; /* -1: PostgreSQL's default (true); else 0 or 1 */
	agent_target_action action;
	bool action_given;
} agent_target;

/* What the command line said; NULL for an option not given. */
typedef struct agent_target_args {
	const char *time, *lsn, *xid, *name, *target, *inclusive, *action;
} agent_target_args;

/* Checks the options together and each value: exactly one target kind,
 * an LSN like 0/1A2B3C4D, a decimal xid from 3 on (0-2 are reserved), a
 * name of 1 to 63 bytes without control characters, --target only
 * "immediate", --target-inclusive true|false and only with a time, LSN or
 * xid, --target-action promote|pause|shutdown and only with a target.
 * COFFER_EINVAL with one error naming the option and the fix. */
int agent_target_parse(const agent_target_args *args, agent_target *out, coffer_err *err);

/* "time", "lsn", "xid", "name", "immediate", "none". */
const char *agent_target_kind_name(agent_target_kind kind);
const char *agent_target_action_name(agent_target_action action);

/* The target as the operator reads it (an RFC 3339 time, an LSN, ...). */
void agent_target_describe(const agent_target *t, char *buf, size_t size);

/* Appends the recovery_target_* lines to buf (NUL-terminated; *len is its
 * length and grows). COFFER_ETOOBIG if size is too small. */
int agent_target_settings(
    const agent_target *t, char *buf, size_t size, size_t *len, coffer_err *err);

/* s as a single-quoted postgresql.conf value: ' doubled, \ escaped.
 * COFFER_EINVAL for a control character (no quoting makes a newline safe),
 * COFFER_ETOOBIG if out is too small. */
int agent_conf_quote(const char *s, char *out, size_t size, coffer_err *err);

/* "X/Y" (hex, PostgreSQL's pg_lsn text) and back. parse: 0 or COFFER_EINVAL. */
int agent_lsn_parse(const char *text, uint64_t *lsn);
void agent_lsn_format(uint64_t lsn, char out[20]);

/* WAL segment names: the segment number of a 24-character name for a
 * segment size (a power of two, 1 MiB to 1 GiB), and the name of a
 * timeline's segment number. parse: 0 or COFFER_EINVAL. */
int agent_segment_number(const char *name, uint64_t seg_size, uint32_t *timeline, uint64_t *segno);
void agent_segment_name(uint32_t timeline, uint64_t segno, uint64_t seg_size, char out[25]);

#endif
