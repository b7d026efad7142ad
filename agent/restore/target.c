/*
 * Recovery targets (agent/restore/target.h).
 */
#include "agent/restore/target.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"

/* "--option 'value' is not what": one error naming the value. */
static int
bad(coffer_err *err, const char *hint, const char *option, const char *value, const char *what)
{
	coffer_err_set(err, COFFER_EINVAL, "%s '%s' is not %s", option, value, what);
	return (coffer_err_hint(err, "%s", hint));
}

int
agent_lsn_parse(const char *text, uint64_t *lsn)
{
	const char *slash = text != NULL ? strchr(text, '/') : NULL;
	size_t hi_len = slash != NULL ? (size_t)(slash - text) : 0;
	if (slash == NULL || hi_len < 1 || hi_len > 8 || strlen(slash + 1) < 1 ||
	    strlen(slash + 1) > 8 || strspn(text, "0123456789abcdefABCDEF") != hi_len ||
	    strspn(slash + 1, "0123456789abcdefABCDEF") != strlen(slash + 1)) {
		return (COFFER_EINVAL);
	}
	uint64_t hi = strtoull(text, NULL, 16), lo = strtoull(slash + 1, NULL, 16);
	*lsn = hi << 32 | lo;
	return (0);
}

void
agent_lsn_format(uint64_t lsn, char out[20])
{
	snprintf(out, 20, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

static bool
seg_size_ok(uint64_t seg_size)
{
	return (
	    seg_size >= (1u << 20) && seg_size <= (1u << 30) && (seg_size & (seg_size - 1)) == 0);
}

int
agent_segment_number(const char *name, uint64_t seg_size, uint32_t *timeline, uint64_t *segno)
{
	if (name == NULL || strlen(name) < 24 || strspn(name, "0123456789ABCDEF") < 24 ||
	    !seg_size_ok(seg_size)) {
		return (COFFER_EINVAL);
	}
	char part[9];
	uint64_t v[3];
	for (int i = 0; i < 3; i++) {
		memcpy(part, name + 8 * i, 8);
		part[8] = '\0';
		v[i] = strtoull(part, NULL, 16);
	}
	uint64_t per_log = UINT64_C(0x100000000) / seg_size;
	if (v[2] >= per_log) {
		return (COFFER_EINVAL);
	}
	*timeline = (uint32_t)v[0];
	*segno = v[1] * per_log + v[2];
	return (0);
}

void
agent_segment_name(uint32_t timeline, uint64_t segno, uint64_t seg_size, char out[25])
{
	uint64_t per_log = UINT64_C(0x100000000) / (seg_size_ok(seg_size) ? seg_size : 1u << 24);
	snprintf(out, 25, "%08X%08X%08X", timeline, (unsigned)(segno / per_log),
	    (unsigned)(segno % per_log));
}

int
agent_conf_quote(const char *s, char *out, size_t size, coffer_err *err)
{
	size_t n = 0;
	if (size < 3) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "no room to quote a setting"));
	}
	out[n++] = '\'';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f) {
			return (coffer_err_set(err, COFFER_EINVAL,
			            "the value holds a control character (0x%02x)", c),
			    coffer_err_hint(err, "use printable characters only"));
		}
		size_t need = (c == '\'' || c == '\\') ? 2 : 1;
		if (n + need + 2 > size) {
			return (
			    coffer_err_set(err, COFFER_ETOOBIG, "the value is too long to quote"));
		}
		if (c == '\'') {
			out[n++] = '\'';
		} else if (c == '\\') {
			out[n++] = '\\';
		}
		out[n++] = (char)c;
	}
	out[n++] = '\'';
	out[n] = '\0';
	return (0);
}

static int
parse_bool(const char *text, int *out)
{
	if (strcmp(text, "true") == 0 || strcmp(text, "on") == 0 || strcmp(text, "yes") == 0) {
		*out = 1;
		return (0);
	}
	if (strcmp(text, "false") == 0 || strcmp(text, "off") == 0 || strcmp(text, "no") == 0) {
		*out = 0;
		return (0);
	}
	return (COFFER_EINVAL);
}

int
agent_target_parse(const agent_target_args *a, agent_target *t, coffer_err *err)
{
	memset(t, 0, sizeof(*t));
	t->inclusive = -1;
	int given = (a->time != NULL) + (a->lsn != NULL) + (a->xid != NULL) + (a->name != NULL) +
	    (a->target != NULL);
	if (given > 1) {
		return (coffer_err_set(err, COFFER_EINVAL,
		            "more than one recovery target given; PostgreSQL stops at exactly one"),
		    coffer_err_hint(err,
		        "pass only one of --target-time, --target-lsn, --target-xid, "
		        "--target-name and --target immediate"));
	}
	if (a->time != NULL) {
		t->kind = AGENT_TARGET_TIME;
		if (coffer_time_parse(a->time, &t->time_ms) != 0) {
			return (bad(err,
			    "write it like 2026-11-24T17:05:00Z or 2026-11-24T18:05:00.250+01:00",
			    "--target-time", a->time, "a time"));
		}
	} else if (a->lsn != NULL) {
		t->kind = AGENT_TARGET_LSN;
		if (agent_lsn_parse(a->lsn, &t->lsn) != 0) {
			return (bad(err,
			    "write it as PostgreSQL prints one, two hex numbers like 0/1A2B3C4D "
			    "(SELECT pg_current_wal_lsn())",
			    "--target-lsn", a->lsn, "an LSN"));
		}
	} else if (a->xid != NULL) {
		t->kind = AGENT_TARGET_XID;
		errno = 0;
		char *end = NULL;
		unsigned long long v = strtoull(a->xid, &end, 10);
		if (a->xid[0] < '0' || a->xid[0] > '9' || *end != '\0' || errno != 0 || v < 3) {
			return (bad(err,
			    "pass a transaction id in decimal, from 3 on (SELECT pg_current_xact_id() "
			    "in the transaction, or xmin of its rows)",
			    "--target-xid", a->xid, "a transaction id"));
		}
		t->xid = v;
	} else if (a->name != NULL) {
		t->kind = AGENT_TARGET_NAME;
		size_t len = strlen(a->name);
		if (len == 0 || len > AGENT_TARGET_NAME_MAX) {
			coffer_err_set(err, COFFER_EINVAL,
			    "--target-name must be 1 to %d bytes, not %zu", AGENT_TARGET_NAME_MAX,
			    len);
			return (coffer_err_hint(
			    err, "pass the name given to pg_create_restore_point()"));
		}
		for (const char *p = a->name; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				return (coffer_err_set(err, COFFER_EINVAL,
				            "--target-name holds a control character"),
				    coffer_err_hint(err,
				        "pass the name given to pg_create_restore_point(); names "
				        "with control characters are not supported"));
			}
		}
		memcpy(t->name, a->name, len + 1);
	} else if (a->target != NULL) {
		if (strcmp(a->target, "immediate") != 0) {
			return (bad(err,
			    "--target takes only immediate (stop as soon as the backup is consistent); "
			    "for other targets use --target-time, --target-lsn, --target-xid or "
			    "--target-name",
			    "--target", a->target, "a target"));
		}
		t->kind = AGENT_TARGET_IMMEDIATE;
	}
	if (a->inclusive != NULL) {
		if (parse_bool(a->inclusive, &t->inclusive) != 0) {
			return (
			    bad(err, "pass true (stop after the target) or false (just before it)",
			        "--target-inclusive", a->inclusive, "true or false"));
		}
		if (t->kind != AGENT_TARGET_TIME && t->kind != AGENT_TARGET_LSN &&
		    t->kind != AGENT_TARGET_XID) {
			return (coffer_err_set(err, COFFER_EINVAL,
			            "--target-inclusive applies to --target-time, --target-lsn and "
			            "--target-xid only"),
			    coffer_err_hint(err, "drop --target-inclusive or give one of those"));
		}
	}
	if (a->action != NULL) {
		if (strcmp(a->action, "promote") == 0) {
			t->action = AGENT_ACTION_PROMOTE;
		} else if (strcmp(a->action, "pause") == 0) {
			t->action = AGENT_ACTION_PAUSE;
		} else if (strcmp(a->action, "shutdown") == 0) {
			t->action = AGENT_ACTION_SHUTDOWN;
		} else {
			return (bad(err,
			    "pass promote (open for writes), pause (stay in recovery, read-only, to "
			    "inspect) or shutdown",
			    "--target-action", a->action, "promote, pause or shutdown"));
		}
		if (t->kind == AGENT_TARGET_NONE) {
			return (coffer_err_set(err, COFFER_EINVAL,
			            "--target-action needs a recovery target; without one recovery "
			            "replays all archived WAL and promotes"),
			    coffer_err_hint(err,
			        "add --target-time, --target-lsn, --target-xid, --target-name or "
			        "--target immediate"));
		}
		t->action_given = true;
	}
	return (0);
}

const char *
agent_target_kind_name(agent_target_kind kind)
{
	switch (kind) {
	case AGENT_TARGET_TIME:
		return ("time");
	case AGENT_TARGET_LSN:
		return ("lsn");
	case AGENT_TARGET_XID:
		return ("xid");
	case AGENT_TARGET_NAME:
		return ("name");
	case AGENT_TARGET_IMMEDIATE:
		return ("immediate");
	case AGENT_TARGET_NONE:
		break;
	}
	return ("none");
}

const char *
agent_target_action_name(agent_target_action action)
{
	return (action == AGENT_ACTION_PAUSE      ? "pause"
	        : action == AGENT_ACTION_SHUTDOWN ? "shutdown"
	                                          : "promote");
}

void
agent_target_describe(const agent_target *t, char *buf, size_t size)
{
	char v[64];
	switch (t->kind) {
	case AGENT_TARGET_TIME:
		coffer_time_format(buf, size, t->time_ms);
		return;
	case AGENT_TARGET_LSN:
		agent_lsn_format(t->lsn, v);
		snprintf(buf, size, "%s", v);
		return;
	case AGENT_TARGET_XID:
		snprintf(buf, size, "%" PRIu64, t->xid);
		return;
	case AGENT_TARGET_NAME:
		snprintf(buf, size, "%s", t->name);
		return;
	case AGENT_TARGET_IMMEDIATE:
		snprintf(buf, size, "immediate");
		return;
	case AGENT_TARGET_NONE:
		break;
	}
	snprintf(buf, size, "end of archived WAL");
}

static int
append(char *buf, size_t size, size_t *len, coffer_err *err, const char *key, const char *quoted)
{
	int n = snprintf(buf + *len, size - *len, "%s = %s\n", key, quoted);
	if (n < 0 || (size_t)n >= size - *len) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "the recovery settings are too long"));
	}
	*len += (size_t)n;
	return (0);
}

int
agent_target_settings(const agent_target *t, char *buf, size_t size, size_t *len, coffer_err *err)
{
	char value[AGENT_TARGET_NAME_MAX * 2 + 8], q[AGENT_TARGET_NAME_MAX * 2 + 16];
	const char *key = NULL;
	switch (t->kind) {
	case AGENT_TARGET_TIME: {
		/* PostgreSQL's recovery_target_time check refuses "T...Z";
		 * "2026-11-24 17:13:08.905+00" is what it takes. */
		coffer_time_format(value, sizeof(value), t->time_ms);
		char *tt = strchr(value, 'T'), *z = strchr(value, 'Z');
		if (tt != NULL) {
			*tt = ' ';
		}
		if (z != NULL && (size_t)(z - value) + 4 <= sizeof(value)) {
			memcpy(z, "+00", 4);
		}
		key = "recovery_target_time";
		break;
	}
	case AGENT_TARGET_LSN:
		agent_lsn_format(t->lsn, value);
		key = "recovery_target_lsn";
		break;
	case AGENT_TARGET_XID:
		snprintf(value, sizeof(value), "%" PRIu64, t->xid);
		key = "recovery_target_xid";
		break;
	case AGENT_TARGET_NAME:
		snprintf(value, sizeof(value), "%s", t->name);
		key = "recovery_target_name";
		break;
	case AGENT_TARGET_IMMEDIATE:
		snprintf(value, sizeof(value), "immediate");
		key = "recovery_target";
		break;
	case AGENT_TARGET_NONE:
		break;
	}
	int rc = 0;
	if (key != NULL) {
		rc = agent_conf_quote(value, q, sizeof(q), err);
		if (rc == 0) {
			rc = append(buf, size, len, err, key, q);
		}
	}
	if (rc == 0 && t->inclusive >= 0) {
		rc = append(buf, size, len, err, "recovery_target_inclusive",
		    t->inclusive ? "'true'" : "'false'");
	}
	if (rc == 0) {
		char aq[16];
		snprintf(aq, sizeof(aq), "'%s'", agent_target_action_name(t->action));
		rc = append(buf, size, len, err, "recovery_target_action", aq);
	}
	return (rc);
}
