/*
 * Outage: the catalog's reachability and its page. See
 * coordinator/watch/outage.h.
 *
 * Design notes.
 * The page cannot go through the alert outbox: that is a catalog table,
 * and the catalog is what is missing. So the outage keeps its own outbox,
 * one small JSON file rewritten whole (durable.h: a crash leaves the old
 * or the new one), bounded by COORD_OUTAGE_MAX records of a few hundred
 * bytes each. Writing it before a send and after the answer gives the
 * same at-least-once delivery as the catalog's outbox; PagerDuty
 * deduplicates by dedup_key.
 *
 * One thread owns sending and the file; holders only flip counters under
 * the mutex and signal it, so a lane is never held up by PagerDuty or
 * fsync. The thread wakes when told, when the bound of the open outage
 * runs out, when a retry is due, and at least every few seconds.
 *
 * Times in the records are Unix ms (they outlive the process); the bound
 * is measured on the same clock, so a restart during an outage (which
 * needs the catalog, see the header) does not reset it.
 */
#include "coordinator/watch/outage.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cJSON.h>
#include <openssl/rand.h>

#include "common/base/clock.h"
#include "common/base/durable.h"
#include "common/base/log.h"
#include "common/base/utf8.h"
#include "coordinator/watch/alerts.h"
#include "coordinator/watch/notify.h"

#define FORMAT          "coffer-catalog-outage-v1"
#define DEDUP_KEY       "coffer/_coordinator/" COORD_ALERT_CATALOG_UNREACHABLE
#define WHY_MAX         300
#define FILE_MAX        (256 * 1024)
#define RETRY_BASE_MS   2000LL
#define RETRY_CAP_MS    60000LL
#define WAKE_MAX_MS     2000LL
#define WRITE_RETRY_MS  5000LL
#define PATH_MAX_OUTBOX 1024

/* Where one message to PagerDuty stands. */
typedef enum page_state {
	PAGE_NONE,      /* not owed */
	PAGE_PENDING,   /* owed: send when next_ms comes */
	PAGE_DELIVERED, /* PagerDuty took it */
	PAGE_FAILED,    /* refused (400) or no routing key: never sent */
	PAGE_CANCELLED, /* a trigger the outage's end made moot before any attempt */
} page_state;

static const char *const page_names[] = { "none", "pending", "delivered", "failed", "cancelled" };

typedef struct page {
	page_state state;
	int attempts;
	int64_t sent_ms; /* delivered at */
	int64_t next_ms; /* pending: not before */
	char error[WHY_MAX];
} page;

typedef struct record {
	char id[48];
	int64_t started_ms;
	int64_t ended_ms; /* 0 while open */
	char why[WHY_MAX];
	page trigger, resolve;
	bool audited;
} record;

struct coord_outage {
	const coord_config *cfg;
	const coord_audit_key *key;
	int64_t bound_ms;
	char path[PATH_MAX_OUTBOX];
	coord_notify *notify; /* the thread's */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool started;
	bool stop;           /* mu */
	bool dirty;          /* mu: the file is behind */
	int64_t write_after; /* mu: monotonic, after a failed write */
	int holders_down;    /* mu */
	record recs[COORD_OUTAGE_MAX];
	int n_recs; /* mu */

	atomic_bool up;
	atomic_llong since_ms;
};

/* ---- the file ---- */

static void
set_text(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src != NULL ? src : "");
	coffer_utf8_cut(dst, size - 1);
}

static cJSON *
page_json(const page *p)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "state", page_names[p->state]);
	cJSON_AddNumberToObject(o, "attempts", p->attempts);
	cJSON_AddNumberToObject(o, "sent_ms", (double)p->sent_ms);
	cJSON_AddNumberToObject(o, "next_ms", (double)p->next_ms);
	cJSON_AddStringToObject(o, "error", p->error);
	return (o);
}

static int64_t
num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return (cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0);
}

static const char *
str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

static bool
page_parse(const cJSON *o, page *p)
{
	const char *st = str(o, "state");
	memset(p, 0, sizeof(*p));
	if (st == NULL) {
		return (false);
	}
	size_t k = 0;
	while (k < sizeof(page_names) / sizeof(page_names[0]) && strcmp(page_names[k], st) != 0) {
		k++;
	}
	if (k == sizeof(page_names) / sizeof(page_names[0])) {
		return (false);
	}
	p->state = (page_state)k;
	p->attempts = (int)num(o, "attempts");
	p->sent_ms = num(o, "sent_ms");
	p->next_ms = num(o, "next_ms");
	set_text(p->error, sizeof(p->error), str(o, "error"));
	return (true);
}

/* The file's text for the records not yet audited. Called with mu held. */
static char *
serialize(coord_outage *o)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "format", FORMAT);
	cJSON *arr = cJSON_AddArrayToObject(root, "outages");
	for (int i = 0; i < o->n_recs; i++) {
		const record *r = &o->recs[i];
		if (r->audited) {
			continue;
		}
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "id", r->id);
		cJSON_AddNumberToObject(j, "started_ms", (double)r->started_ms);
		cJSON_AddNumberToObject(j, "ended_ms", (double)r->ended_ms);
		cJSON_AddStringToObject(j, "error", r->why);
		cJSON_AddItemToObject(j, "trigger", page_json(&r->trigger));
		cJSON_AddItemToObject(j, "resolve", page_json(&r->resolve));
		cJSON_AddItemToArray(arr, j);
	}
	char *text = cJSON_Print(root);
	cJSON_Delete(root);
	return (text);
}

/* Drops audited records (they are in the catalog now). mu held. */
static void
compact(coord_outage *o)
{
	int k = 0;
	for (int i = 0; i < o->n_recs; i++) {
		if (!o->recs[i].audited) {
			if (k != i) {
				o->recs[k] = o->recs[i];
			}
			k++;
		}
	}
	o->n_recs = k;
}

static int
parse_file(coord_outage *o, const char *text, coffer_err *err)
{
	cJSON *root = cJSON_Parse(text);
	const char *fmt = root != NULL ? str(root, "format") : NULL;
	const cJSON *arr = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "outages") : NULL;
	if (fmt == NULL || strcmp(fmt, FORMAT) != 0 || !cJSON_IsArray(arr)) {
		cJSON_Delete(root);
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "%s is not a catalog outage outbox (%s)", o->path, FORMAT));
	}
	const cJSON *it;
	cJSON_ArrayForEach(it, arr)
	{
		if (o->n_recs == COORD_OUTAGE_MAX) {
			break;
		}
		record *r = &o->recs[o->n_recs];
		memset(r, 0, sizeof(*r));
		const char *id = str(it, "id");
		r->started_ms = num(it, "started_ms");
		r->ended_ms = num(it, "ended_ms");
		if (id == NULL || r->started_ms <= 0 ||
		    !page_parse(cJSON_GetObjectItemCaseSensitive(it, "trigger"), &r->trigger) ||
		    !page_parse(cJSON_GetObjectItemCaseSensitive(it, "resolve"), &r->resolve)) {
			cJSON_Delete(root);
			return (coffer_err_set(err, COFFER_ECORRUPT,
			    "%s holds an outage record that does not parse", o->path));
		}
		set_text(r->id, sizeof(r->id), id);
		set_text(r->why, sizeof(r->why), str(it, "error"));
		o->n_recs++;
	}
	cJSON_Delete(root);
	return (0);
}

/* Reads the outbox if there is one. A file that cannot be understood is
 * set aside (not deleted: an operator may want to see it) and the outbox
 * starts empty: refusing to start over it would trade a lost page for a
 * coordinator that does not run at all. */
static int
load(coord_outage *o, coffer_err *err)
{
	FILE *f = fopen(o->path, "rb");
	if (f == NULL) {
		return (errno == ENOENT ? 0 : coffer_err_errno(err, errno, "open", o->path));
	}
	char *buf = malloc(FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		return (coffer_err_set(err, COFFER_ENOMEM, "reading %s: out of memory", o->path));
	}
	size_t n = fread(buf, 1, FILE_MAX + 1, f);
	bool bad_read = ferror(f) != 0;
	fclose(f);
	if (bad_read) {
		free(buf);
		return (coffer_err_errno(err, EIO, "read", o->path));
	}
	buf[n <= FILE_MAX ? n : FILE_MAX] = '\0';
	coffer_err perr;
	coffer_err_clear(&perr);
	int rv = n > FILE_MAX ? coffer_err_set(&perr, COFFER_ECORRUPT, "%s is too large", o->path)
	                      : parse_file(o, buf, &perr);
	free(buf);
	if (rv != 0) {
		char aside[PATH_MAX_OUTBOX + 16];
		snprintf(aside, sizeof(aside), "%s.corrupt", o->path);
		(void)rename(o->path, aside);
		o->n_recs = 0;
		coffer_log_error("catalog outage outbox set aside; starting empty",
		    "file=%s moved_to=%s error=%s", o->path, aside, perr.msg);
	}
	return (0);
}

static int
write_file(coord_outage *o, const char *text, coffer_err *err)
{
	return (coffer_durable_replace(o->path, text, strlen(text), NULL, err));
}

/* ---- pages ---- */

static int64_t
retry_ms(int attempts)
{
	int64_t d = RETRY_BASE_MS;
	for (int i = 1; i < attempts && d < RETRY_CAP_MS; i++) {
		d *= 2;
	}
	if (d > RETRY_CAP_MS) {
		d = RETRY_CAP_MS;
	}
	uint32_t r = 0;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
		r = (uint32_t)coffer_clock_monotonic_ms();
	}
	return (d / 2 + (int64_t)(r % (uint32_t)(d / 2)));
}

static char *
event_body(const coord_outage *o, const record *r, bool trigger)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "event_action", trigger ? "trigger" : "resolve");
	cJSON_AddStringToObject(j, "dedup_key", DEDUP_KEY);
	cJSON_AddStringToObject(j, "client", "coffer");
	if (trigger) {
		char since[40], summary[600];
		coffer_time_format(since, sizeof(since), r->started_ms);
		snprintf(summary, sizeof(summary),
		    "coffer-coordinator cannot reach its catalog since %s: %s", since, r->why);
		coffer_utf8_cut(summary, 512);
		cJSON *p = cJSON_AddObjectToObject(j, "payload");
		cJSON_AddStringToObject(p, "summary", summary);
		cJSON_AddStringToObject(p, "source", coord_alerts_coordinator_host());
		cJSON_AddStringToObject(p, "severity", "critical");
		cJSON_AddStringToObject(p, "timestamp", since);
		cJSON_AddStringToObject(p, "component", "coordinator");
		cJSON_AddStringToObject(p, "group", "platform");
		cJSON_AddStringToObject(p, "class", COORD_ALERT_CATALOG_UNREACHABLE);
		cJSON *d = cJSON_AddObjectToObject(p, "custom_details");
		cJSON_AddStringToObject(d, "since", since);
		cJSON_AddStringToObject(d, "error", r->why);
		cJSON_AddNumberToObject(d, "unreachable_after_s", (double)(o->bound_ms / 1000));
		cJSON_AddStringToObject(d, "outage_id", r->id);
	}
	char *t = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return (t);
}

/* The next page owed at now_ms: the first record's trigger, or its resolve
 * once its trigger is settled (a resolve never overtakes its trigger).
 * Sets *trigger. mu held. */
static record *
due_page(coord_outage *o, int64_t now_ms, bool *trigger)
{
	for (int i = 0; i < o->n_recs; i++) {
		record *r = &o->recs[i];
		if (r->trigger.state == PAGE_PENDING) {
			if (r->trigger.next_ms <= now_ms) {
				*trigger = true;
				return (r);
			}
			continue;
		}
		if (r->resolve.state == PAGE_PENDING && r->resolve.next_ms <= now_ms) {
			*trigger = false;
			return (r);
		}
	}
	return (NULL);
}

static record *
find(coord_outage *o, const char *id)
{
	for (int i = 0; i < o->n_recs; i++) {
		if (strcmp(o->recs[i].id, id) == 0) {
			return (&o->recs[i]);
		}
	}
	return (NULL);
}

/* Sends one page with mu released; records the answer. mu held on entry
 * and exit. */
static void
send_page(coord_outage *o, record *r, bool trigger)
{
	char id[sizeof(r->id)];
	snprintf(id, sizeof(id), "%s", r->id);
	char *body = event_body(o, r, trigger);
	pthread_mutex_unlock(&o->mu);
	long status = 0;
	char msg[600] = "out of memory building the event";
	coord_notify_outcome out = COORD_NOTIFY_RETRY;
	if (body != NULL) {
		out = coord_notify_send_pagerduty(o->notify, NULL, trigger ? "trigger" : "resolve",
		    body, &status, msg, sizeof(msg));
	}
	free(body);
	int64_t now = coffer_clock_now(NULL);
	const char *what = trigger ? "trigger" : "resolve";
	switch (out) {
	case COORD_NOTIFY_DELIVERED:
		coffer_log_info(
		    trigger ? "catalog_unreachable paged" : "catalog_unreachable resolved",
		    "dedup_key=%s outage_id=%s status=%ld", DEDUP_KEY, id, status);
		break;
	case COORD_NOTIFY_REFUSED:
	case COORD_NOTIFY_NO_KEY:
		coffer_log_error("catalog_unreachable page not sent, not retried",
		    "dedup_key=%s action=%s outage_id=%s status=%ld error=%s", DEDUP_KEY, what, id,
		    status, msg);
		break;
	default:
		coffer_log_warn("catalog_unreachable page failed, will retry",
		    "dedup_key=%s action=%s outage_id=%s status=%ld error=%s", DEDUP_KEY, what, id,
		    status, msg);
		break;
	}
	pthread_mutex_lock(&o->mu);
	/* Only this thread removes records, so r's record is still there,
	 * though the array may have moved: find it again by id. */
	record *rr = find(o, id);
	if (rr == NULL) {
		return;
	}
	page *p = trigger ? &rr->trigger : &rr->resolve;
	if (p->state != PAGE_PENDING) {
		return; /* the outage ended meanwhile and settled it */
	}
	if (out != COORD_NOTIFY_DEFERRED) {
		p->attempts++;
	}
	switch (out) {
	case COORD_NOTIFY_DELIVERED:
		p->state = PAGE_DELIVERED;
		p->sent_ms = now;
		p->error[0] = '\0';
		break;
	case COORD_NOTIFY_REFUSED:
	case COORD_NOTIFY_NO_KEY:
		p->state = PAGE_FAILED;
		set_text(p->error, sizeof(p->error), msg);
		break;
	case COORD_NOTIFY_DEFERRED:
		p->next_ms = now + 1000;
		break;
	default:
		p->next_ms = now + retry_ms(p->attempts);
		set_text(p->error, sizeof(p->error), msg);
		break;
	}
	/* A trigger that settled after the outage ended: its resolve is owed
	 * only if PagerDuty may have opened the incident. */
	if (trigger && rr->ended_ms != 0 && rr->resolve.state == PAGE_NONE &&
	    p->state == PAGE_DELIVERED) {
		rr->resolve.state = PAGE_PENDING;
		rr->resolve.next_ms = now;
	}
	o->dirty = true;
}

/* ---- the thread ---- */

static void
timed_wait(coord_outage *o, int64_t ms)
{
	if (ms > WAKE_MAX_MS) {
		ms = WAKE_MAX_MS;
	}
	if (ms < 10) {
		ms = 10;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&o->cv, &o->mu, &ts);
}

/* Writes the file when it is behind. mu held on entry and exit. */
static void
flush(coord_outage *o)
{
	if (!o->dirty || coffer_clock_monotonic_ms() < o->write_after) {
		return;
	}
	char *text = serialize(o);
	o->dirty = false;
	pthread_mutex_unlock(&o->mu);
	coffer_err err;
	coffer_err_clear(&err);
	int rv = text != NULL ? write_file(o, text, &err)
	                      : coffer_err_set(&err, COFFER_ENOMEM, "out of memory");
	free(text);
	pthread_mutex_lock(&o->mu);
	if (rv != 0) {
		coffer_log_error("cannot write the catalog outage outbox; retrying",
		    "file=%s error=%s", o->path, err.msg);
		o->dirty = true;
		o->write_after = coffer_clock_monotonic_ms() + WRITE_RETRY_MS;
	} else {
		compact(o);
	}
}

static void *
run(void *arg)
{
	coord_outage *o = arg;
	pthread_mutex_lock(&o->mu);
	while (!o->stop) {
		int64_t now = coffer_clock_now(NULL);
		int64_t wake = WAKE_MAX_MS;
		/* The open outage has lasted longer than the bound: the page
		 * becomes owed, written down before it is sent. */
		for (int i = 0; i < o->n_recs; i++) {
			record *r = &o->recs[i];
			if (r->ended_ms != 0 || r->trigger.state != PAGE_NONE) {
				continue;
			}
			int64_t due = r->started_ms + o->bound_ms;
			if (now >= due) {
				coffer_log_error("catalog unreachable for longer than "
				                 "catalog_unreachable_after; paging",
				    "dedup_key=%s outage_id=%s down_s=%lld after_s=%lld error=%s",
				    DEDUP_KEY, r->id, (long long)((now - r->started_ms) / 1000),
				    (long long)(o->bound_ms / 1000), r->why);
				r->trigger.state = PAGE_PENDING;
				r->trigger.next_ms = now;
				o->dirty = true;
			} else if (due - now < wake) {
				wake = due - now;
			}
		}
		flush(o);
		bool trigger = false;
		record *r = due_page(o, now, &trigger);
		if (r != NULL) {
			send_page(o, r, trigger);
			flush(o);
			continue;
		}
		for (int i = 0; i < o->n_recs; i++) {
			const page *ps[] = { &o->recs[i].trigger, &o->recs[i].resolve };
			for (int k = 0; k < 2; k++) {
				if (ps[k]->state == PAGE_PENDING && ps[k]->next_ms - now < wake) {
					wake = ps[k]->next_ms - now;
				}
			}
		}
		if (o->stop) {
			break;
		}
		timed_wait(o, wake);
	}
	pthread_mutex_unlock(&o->mu);
	return (NULL);
}

/* ---- holders ---- */

/* Ends the open outage at now_ms and settles what it owes PagerDuty.
 * mu held. */
static void
end_outage(coord_outage *o, record *r, int64_t now_ms)
{
	r->ended_ms = now_ms;
	if (r->trigger.state == PAGE_NONE ||
	    (r->trigger.state == PAGE_PENDING && r->trigger.attempts == 0)) {
		/* Never reached PagerDuty: nothing to resolve. */
		if (r->trigger.state == PAGE_PENDING) {
			r->trigger.state = PAGE_CANCELLED;
		}
	} else if (r->trigger.state == PAGE_PENDING || r->trigger.state == PAGE_DELIVERED) {
		/* Attempted (maybe opened, the answer lost) or delivered. */
		if (r->trigger.state == PAGE_PENDING) {
			r->trigger.state = PAGE_CANCELLED;
		}
		r->resolve.state = PAGE_PENDING;
		r->resolve.next_ms = now_ms;
	}
	o->dirty = true;
}

static record *
open_record(coord_outage *o)
{
	for (int i = 0; i < o->n_recs; i++) {
		if (o->recs[i].ended_ms == 0) {
			return (&o->recs[i]);
		}
	}
	return (NULL);
}

bool
coord_outage_down(coord_outage *o, const char *why)
{
	pthread_mutex_lock(&o->mu);
	bool first = o->holders_down++ == 0;
	if (first && open_record(o) == NULL) {
		if (o->n_recs == COORD_OUTAGE_MAX) {
			/* Full: the oldest finished record goes (there is at most
			 * one open one, and this is not it). */
			record *victim = &o->recs[0];
			coffer_log_warn("catalog outage outbox full; dropping the oldest record",
			    "outage_id=%s trigger=%s resolve=%s error=%s", victim->id,
			    page_names[victim->trigger.state], page_names[victim->resolve.state],
			    victim->why);
			memmove(&o->recs[0], &o->recs[1], sizeof(record) * (COORD_OUTAGE_MAX - 1));
			o->n_recs--;
		}
		record *r = &o->recs[o->n_recs++];
		memset(r, 0, sizeof(*r));
		r->started_ms = coffer_clock_now(NULL);
		uint32_t rnd = 0;
		(void)RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
		snprintf(r->id, sizeof(r->id), "%" PRId64 "-%08x", r->started_ms, rnd);
		set_text(r->why, sizeof(r->why), why);
		atomic_store(&o->since_ms, (long long)r->started_ms);
		atomic_store(&o->up, false);
		o->dirty = true;
		pthread_cond_signal(&o->cv);
	}
	pthread_mutex_unlock(&o->mu);
	return (first);
}

bool
coord_outage_up(coord_outage *o)
{
	pthread_mutex_lock(&o->mu);
	bool last = false;
	if (o->holders_down > 0 && --o->holders_down == 0) {
		last = true;
		record *r = open_record(o);
		if (r != NULL) {
			int64_t now = coffer_clock_now(NULL);
			end_outage(o, r, now);
			coffer_log_info("catalog outage over", "outage_id=%s down_s=%.1f paged=%s",
			    r->id, (double)(now - r->started_ms) / 1000.0,
			    r->resolve.state == PAGE_PENDING ? "yes" : "no");
		}
		atomic_store(&o->up, true);
		pthread_cond_signal(&o->cv);
	}
	pthread_mutex_unlock(&o->mu);
	return (last);
}

bool
coord_outage_catalog_up(const coord_outage *o, int64_t *since_ms)
{
	bool up = atomic_load(&o->up);
	if (!up && since_ms != NULL) {
		*since_ms = (int64_t)atomic_load(&o->since_ms);
	}
	return (up);
}

/* ---- audit ---- */

static void
add_page(cJSON *d, const char *name, const page *p)
{
	cJSON *j = cJSON_AddObjectToObject(d, name);
	cJSON_AddStringToObject(j, "state", page_names[p->state]);
	cJSON_AddNumberToObject(j, "attempts", p->attempts);
	if (p->state == PAGE_DELIVERED) {
		char t[40];
		cJSON_AddStringToObject(j, "sent_at", coffer_time_format(t, sizeof(t), p->sent_ms));
	} else {
		cJSON_AddNullToObject(j, "sent_at");
	}
	if (p->error[0] != '\0') {
		cJSON_AddStringToObject(j, "error", p->error);
	}
}

static char *
audit_details(const record *r)
{
	char a[40], b[40];
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "outage_id", r->id);
	cJSON_AddStringToObject(d, "dedup_key", DEDUP_KEY);
	cJSON_AddStringToObject(d, "started_at", coffer_time_format(a, sizeof(a), r->started_ms));
	cJSON_AddStringToObject(d, "ended_at", coffer_time_format(b, sizeof(b), r->ended_ms));
	cJSON_AddNumberToObject(d, "duration_s", (double)(r->ended_ms - r->started_ms) / 1000.0);
	cJSON_AddStringToObject(d, "error", r->why);
	add_page(d, "trigger", &r->trigger);
	add_page(d, "resolve", &r->resolve);
	char *t = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	return (t);
}

/* One outage's row, unless a previous run wrote it and crashed before the
 * file said so. */
static int
audit_one(coord_catalog *cat, const coord_audit_key *key, const char *id, const char *details,
    bool *wrote, coffer_err *err)
{
	*wrote = false;
	const char *v[] = { id };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "looking up a catalog outage's audit row",
	    "SELECT 1 FROM audit WHERE action = 'catalog.outage' AND details->>'outage_id' = $1", 1,
	    v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool seen = PQntuples(res) > 0;
	PQclear(res);
	if (seen) {
		return (0);
	}
	rv = coord_audit_append(
	    cat, key, "coordinator", "catalog.outage", "catalog", details, NULL, err);
	*wrote = rv == 0;
	return (rv);
}

int
coord_outage_audit(coord_outage *o, coord_catalog *cat, int *audited, coffer_err *err)
{
	if (audited != NULL) {
		*audited = 0;
	}
	for (;;) {
		char id[48];
		char *details = NULL;
		pthread_mutex_lock(&o->mu);
		for (int i = 0; i < o->n_recs && details == NULL; i++) {
			const record *r = &o->recs[i];
			if (r->ended_ms != 0 && !r->audited && r->trigger.state != PAGE_PENDING &&
			    r->resolve.state != PAGE_PENDING) {
				snprintf(id, sizeof(id), "%s", r->id);
				details = audit_details(r);
				if (details == NULL) {
					pthread_mutex_unlock(&o->mu);
					return (coffer_err_set(err, COFFER_ENOMEM,
					    "auditing a catalog outage: out of memory"));
				}
			}
		}
		pthread_mutex_unlock(&o->mu);
		if (details == NULL) {
			return (0);
		}
		bool wrote = false;
		int rv = audit_one(cat, o->key, id, details, &wrote, err);
		if (rv == 0) {
			coffer_log_info(
			    "catalog outage audited", "outage_id=%s details=%s", id, details);
		}
		free(details);
		if (rv != 0) {
			return (rv);
		}
		if (wrote && audited != NULL) {
			(*audited)++;
		}
		pthread_mutex_lock(&o->mu);
		record *r = find(o, id);
		if (r != NULL) {
			r->audited = true;
			o->dirty = true;
			pthread_cond_signal(&o->cv);
		}
		pthread_mutex_unlock(&o->mu);
	}
}

/* ---- life ---- */

static void
outage_free(coord_outage *o)
{
	coord_notify_free(o->notify);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

int
coord_outage_start(
    const coord_config *cfg, const coord_audit_key *key, coord_outage **out, coffer_err *err)
{
	*out = NULL;
	coord_outage *o = calloc(1, sizeof(*o));
	if (o == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the outage watch"));
	}
	o->cfg = cfg;
	o->key = key;
	o->bound_ms = coffer_config_duration_ms(cfg->ini, "alerts", "catalog_unreachable_after");
	atomic_init(&o->up, true);
	atomic_init(&o->since_ms, 0);
	pthread_mutex_init(&o->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cv, &ca);
	pthread_condattr_destroy(&ca);
	int w = snprintf(o->path, sizeof(o->path), "%s/%s", cfg->state_dir, COORD_OUTAGE_FILE);
	if (w < 0 || (size_t)w >= sizeof(o->path)) {
		outage_free(o);
		return (coffer_err_set(err, COFFER_EINVAL, "[coordinator] state_dir is too long"));
	}
	if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;
		outage_free(o);
		coffer_err_errno(err, e, "creating the state directory", cfg->state_dir);
		return (coffer_err_hint(err,
		    "set [coordinator] state_dir to a directory the "
		    "coordinator can write"));
	}
	int rv = load(o, err);
	if (rv == 0) {
		/* This start reached the catalog: an outage a previous run left
		 * open is over. */
		record *r = open_record(o);
		if (r != NULL) {
			end_outage(o, r, coffer_clock_now(NULL));
			coffer_log_info("catalog outage from before the restart is over",
			    "outage_id=%s", r->id);
		}
		char *text = serialize(o);
		rv = text != NULL ? write_file(o, text, err)
		                  : coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		free(text);
		if (rv != 0) {
			coffer_err_hint(err,
			    "the coordinator keeps its catalog outage outbox in "
			    "[coordinator] state_dir: make it writable");
		}
	}
	if (rv == 0 && (o->notify = coord_notify_new(cfg, key, err)) == NULL) {
		rv = err->code;
	}
	if (rv == 0) {
		int prv = pthread_create(&o->thread, NULL, run, o);
		if (prv != 0) {
			rv = coffer_err_set(
			    err, COFFER_ENOMEM, "cannot start the outage watch: %s", strerror(prv));
		}
	}
	if (rv != 0) {
		outage_free(o);
		return (rv);
	}
	o->started = true;
	*out = o;
	return (0);
}

void
coord_outage_stop(coord_outage *o)
{
	if (o == NULL) {
		return;
	}
	pthread_mutex_lock(&o->mu);
	o->stop = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	if (o->started) {
		pthread_join(o->thread, NULL);
	}
	pthread_mutex_lock(&o->mu);
	o->write_after = 0;
	flush(o);
	pthread_mutex_unlock(&o->mu);
	outage_free(o);
}
