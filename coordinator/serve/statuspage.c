/*
 * Status page: the fleet as server-rendered HTML. See statuspage.h.
 *
 * Design notes.
 * Reading and rendering are apart: coord_statuspage_collect turns the
 * catalog into one JSON snapshot (the very objects `coffer status` and
 * `coffer alerts list` answer with), and coord_statuspage_html turns a
 * snapshot and the configuration into HTML without touching the catalog.
 * So the renderer is tested on hand-made snapshots (hostile text
 * included), and while the catalog is down the page renders the last
 * snapshot it read, labelled with its age, beside what the configuration
 * alone says.
 *
 * Ages are measured at rendering time from the timestamps in the snapshot,
 * not taken from its age_seconds: a snapshot shown during an outage must
 * not say a backup is as young as it was when the catalog went away.
 *
 * Every value from the snapshot or the configuration is written with
 * put_text (coffer_html_escape); the only unescaped text is the page's own
 * literals. Nothing the page writes is a URL or an attribute value built
 * from data, except the class names, which come from a fixed list.
 */
#include "coordinator/serve/statuspage.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/html.h"
#include "common/base/log.h"
#include "common/base/strbuf.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"
#include "coordinator/serve/admin.h"
#include "coordinator/watch/alerts.h"

/* The page is a few hundred bytes a row; this is far above what
 * COORD_STATUSPAGE_MAX_ROWS rows of five sections can make. */
#define PAGE_MAX (8u * 1024 * 1024)
/* A derived RPO is walked again after this long (a monthly schedule's gap
 * depends on the month). */
#define RPO_TTL_MS (3600LL * 1000)

/* ---- reading ---- */

int
coord_statuspage_collect(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, cJSON **snap, coffer_err *err)
{
	*snap = NULL;
	int rv = coord_catalog_exec(cat, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    "starting the status page snapshot", err);
	if (rv != 0) {
		return (rv);
	}
	cJSON *st = NULL, *alerts = NULL;
	PGresult *res = NULL;
	if ((rv = coord_admin_status_read(cat, cfg, now_ms, &st, err)) != 0) {
		goto out;
	}
	res = coord_catalog_adhoc(cat, "counting open alerts and active holds",
	    "SELECT (SELECT count(*) FROM alerts WHERE state = 'triggered'), "
	    "(SELECT count(*) FROM holds WHERE released_at IS NULL)",
	    0, NULL, &rv, err);
	if (res == NULL) {
		goto out;
	}
	cJSON_AddNumberToObject(st, "alerts_open", strtod(PQgetvalue(res, 0, 0), NULL));
	cJSON_AddNumberToObject(st, "holds_active", strtod(PQgetvalue(res, 0, 1), NULL));
	PQclear(res);
	/* Triggered ones come first in the list: the first MAX_ROWS rows hold
	 * every open alert the page can show. */
	if ((rv = coord_alerts_list(cat, COORD_STATUSPAGE_MAX_ROWS, &alerts, err)) != 0) {
		goto out;
	}
	cJSON *open = cJSON_AddArrayToObject(st, "alerts");
	const cJSON *a;
	cJSON_ArrayForEach(a, alerts)
	{
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(a, "state");
		if (open != NULL && cJSON_IsString(state) &&
		    strcmp(state->valuestring, "triggered") == 0) {
			cJSON_AddItemToArray(open, cJSON_Duplicate(a, true));
		}
	}
	rv = coord_catalog_commit(cat, err);
out:
	cJSON_Delete(alerts);
	if (rv != 0) {
		coord_catalog_rollback(cat);
		cJSON_Delete(st);
		return (rv);
	}
	*snap = st;
	return (0);
}

/* ---- small helpers ---- */

static const char *
jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

static bool
jnum(const cJSON *o, const char *key, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsNumber(v)) {
		return (false);
	}
	*out = v->valuedouble;
	return (true);
}

static bool
jtime(const cJSON *o, const char *key, int64_t *ms)
{
	const char *s = jstr(o, key);
	return (s != NULL && coffer_time_parse(s, ms) == 0);
}

static void
put_text(coffer_strbuf *b, const char *text)
{
	if (text == NULL || text[0] == '\0') {
		coffer_strbuf_put(b, "&#8212;");
		return;
	}
	coffer_html_escape(b, text);
}

/* "3d 4h", "5h 12m", "4m 10s", "12s", "250ms": two units, for people. */
static char *
human(char *buf, size_t size, int64_t ms)
{
	static const struct {
		int64_t unit;
		const char *name;
	} units[] = { { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } };
	if (ms < 0) {
		ms = 0;
	}
	if (ms < 1000) {
		snprintf(buf, size, "%" PRId64 "ms", ms);
		return (buf);
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms < units[i].unit) {
			continue;
		}
		int64_t big = ms / units[i].unit;
		if (i + 1 < sizeof(units) / sizeof(units[0])) {
			int64_t small = ms % units[i].unit / units[i + 1].unit;
			if (small > 0) {
				snprintf(buf, size, "%" PRId64 "%s %" PRId64 "%s", big,
				    units[i].name, small, units[i + 1].name);
				return (buf);
			}
		}
		snprintf(buf, size, "%" PRId64 "%s", big, units[i].name);
		return (buf);
	}
	snprintf(buf, size, "%" PRId64 "ms", ms);
	return (buf);
}

/* A time as "2026-12-07 02:00:00Z". */
static void
put_time(coffer_strbuf *b, int64_t at_ms)
{
	char t[40];
	coffer_time_format(t, sizeof(t), at_ms);
	/* Seconds are enough for people; the T reads better as a space. */
	char *dot = strchr(t, '.');
	if (dot != NULL) {
		dot[0] = 'Z';
		dot[1] = '\0';
	}
	char *tee = strchr(t, 'T');
	if (tee != NULL) {
		*tee = ' ';
	}
	coffer_strbuf_printf(b, "<span class=\"when\">%s</span>", t);
}

/* The same, then "(3h ago)" or "(in 3h)". */
static void
put_when(coffer_strbuf *b, int64_t at_ms, int64_t now_ms)
{
	char d[40];
	put_time(b, at_ms);
	coffer_strbuf_put(b, " <span class=\"rel\">(");
	if (at_ms <= now_ms) {
		coffer_strbuf_printf(b, "%s ago)</span>", human(d, sizeof(d), now_ms - at_ms));
	} else {
		coffer_strbuf_printf(b, "in %s)</span>", human(d, sizeof(d), at_ms - now_ms));
	}
}

static void
put_when_text(coffer_strbuf *b, const cJSON *o, const char *key, int64_t now_ms)
{
	int64_t at;
	if (jtime(o, key, &at)) {
		put_when(b, at, now_ms);
	} else {
		put_text(b, jstr(o, key));
	}
}

/* A state cell: a fixed class and its label (both literals). */
static void
put_state(coffer_strbuf *b, const char *cls, const char *label)
{
	coffer_strbuf_printf(b, "<td class=\"state %s\">%s</td>", cls, label);
}

static void
put_more(coffer_strbuf *b, double total, size_t shown, const char *what)
{
	if (total > (double)shown) {
		coffer_strbuf_printf(b, "<p class=\"more\">%.0f more %s not shown.</p>\n",
		    total - (double)shown, what);
	}
}

static const cJSON *
snap_service(const cJSON *snap, const char *name)
{
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(snap, "services"))
	{
		const char *n = jstr(s, "service");
		if (n != NULL && strcmp(n, name) == 0) {
			return (s);
		}
	}
	return (NULL);
}

/* The next scheduled run after now_ms, or 0 when there is none. */
static int64_t
next_run(const coord_service_policy *p, int64_t now_ms)
{
	coffer_err err;
	coffer_err_clear(&err);
	coffer_cron *cron = coffer_cron_parse(p->schedule, &err);
	if (cron == NULL) {
		return (0);
	}
	coffer_tz *tz = coffer_tz_load(p->timezone != NULL ? p->timezone : "UTC", &err);
	int64_t next = 0;
	if (tz == NULL || coffer_cron_next(cron, tz, now_ms / 1000, &next, &err) != 0) {
		next = 0;
	}
	coffer_tz_free(tz);
	coffer_cron_free(cron);
	return (next * 1000);
}

/* ---- sections ---- */

enum {
	ST_OK = 0,
	ST_BAD = 1,
	ST_UNKNOWN = 2
};

typedef struct svc_row {
	size_t idx; /* in cfg->services */
	int state;
	int64_t age_ms; /* -1: no verified backup */
	const cJSON *st;
} svc_row;

static int
row_order(const void *a, const void *b)
{
	const svc_row *x = a, *y = b;
	/* Missed RPOs first, then unknown, then the rest; file order within. */
	static const int rank[] = { 2, 0, 1 };
	if (rank[x->state] != rank[y->state]) {
		return (rank[x->state] - rank[y->state]);
	}
	return (x->idx < y->idx ? -1 : x->idx > y->idx);
}

static void
section_services(
    coffer_strbuf *b, const coord_config *cfg, const coord_statuspage_input *in, svc_row *rows)
{
	size_t n = cfg->n_services;
	size_t late = 0;
	for (size_t i = 0; i < n; i++) {
		svc_row *r = &rows[i];
		r->idx = i;
		r->age_ms = -1;
		r->st = in->snap != NULL ? snap_service(in->snap, cfg->services[i].name) : NULL;
		const cJSON *last =
		    r->st != NULL ? cJSON_GetObjectItemCaseSensitive(r->st, "last_backup") : NULL;
		int64_t settled = 0;
		if (cJSON_IsObject(last) && jtime(last, "settled_at", &settled)) {
			r->age_ms = in->now_ms > settled ? in->now_ms - settled : 0;
		}
		int64_t rpo = in->rpo_ms != NULL ? in->rpo_ms[i] : 0;
		if (r->st == NULL) {
			r->state = ST_UNKNOWN;
		} else if (r->age_ms < 0 || (rpo > 0 && r->age_ms > rpo)) {
			r->state = ST_BAD;
			late++;
		} else {
			r->state = rpo > 0 ? ST_OK : ST_UNKNOWN;
		}
	}
	qsort(rows, n, sizeof(*rows), row_order);
	coffer_strbuf_printf(b,
	    "<section id=\"services\">\n<h2>Services</h2>\n"
	    "<p class=\"summary\">%zu service%s configured; %zu past %s RPO.</p>\n",
	    n, n == 1 ? "" : "s", late, late == 1 ? "its" : "their");
	if (n == 0) {
		coffer_strbuf_put(
		    b, "<p>No [service.NAME] section in coordinator.conf.</p>\n</section>\n");
		return;
	}
	coffer_strbuf_put(b,
	    "<table>\n<thead><tr><th>Service</th><th>State</th><th>Last verified backup</th>"
	    "<th>Age</th><th>RPO</th><th>Kind</th><th>Next scheduled run</th></tr></thead>\n"
	    "<tbody>\n");
	size_t shown = n < COORD_STATUSPAGE_MAX_ROWS ? n : COORD_STATUSPAGE_MAX_ROWS;
	for (size_t k = 0; k < shown; k++) {
		const svc_row *r = &rows[k];
		const coord_service_policy *p = &cfg->services[r->idx];
		const cJSON *last =
		    r->st != NULL ? cJSON_GetObjectItemCaseSensitive(r->st, "last_backup") : NULL;
		char d[40];
		coffer_strbuf_put(b, "<tr><td class=\"name\">");
		put_text(b, p->name);
		coffer_strbuf_put(b, "</td>");
		if (r->state == ST_BAD) {
			put_state(b, "bad", r->age_ms < 0 ? "no backup" : "RPO missed");
		} else if (r->state == ST_OK) {
			put_state(b, "ok", "within RPO");
		} else {
			put_state(b, "unknown", "unknown");
		}
		coffer_strbuf_put(b, "<td>");
		if (cJSON_IsObject(last)) {
			put_when_text(b, last, "settled_at", in->now_ms);
			coffer_strbuf_put(b, "<br><span class=\"id\">");
			put_text(b, jstr(last, "id"));
			coffer_strbuf_put(b, "</span>");
		} else {
			coffer_strbuf_put(b, r->st != NULL ? "none verified yet" : "&#8212;");
		}
		coffer_strbuf_put(b, "</td><td>");
		if (r->age_ms >= 0) {
			coffer_strbuf_put(b, human(d, sizeof(d), r->age_ms));
		} else {
			coffer_strbuf_put(b, "&#8212;");
		}
		coffer_strbuf_put(b, "</td><td>");
		int64_t rpo = in->rpo_ms != NULL ? in->rpo_ms[r->idx] : 0;
		if (rpo > 0) {
			coffer_strbuf_put(b, human(d, sizeof(d), rpo));
			if (in->rpo_derived != NULL && in->rpo_derived[r->idx]) {
				coffer_strbuf_put(
				    b, " <span class=\"note\">(from the schedule)</span>");
			}
		} else {
			coffer_strbuf_put(b, "&#8212;");
		}
		coffer_strbuf_put(b, "</td><td>");
		put_text(b, cJSON_IsObject(last) ? jstr(last, "kind") : NULL);
		coffer_strbuf_put(b, "</td><td>");
		int64_t next = next_run(p, in->now_ms);
		if (next > 0) {
			put_when(b, next, in->now_ms);
		} else {
			coffer_strbuf_put(b, "&#8212;");
		}
		coffer_strbuf_put(b, "</td></tr>\n");
	}
	coffer_strbuf_put(b, "</tbody>\n</table>\n");
	put_more(b, (double)n, shown, "services");
	coffer_strbuf_put(b, "</section>\n");
}

static void
section_alerts(coffer_strbuf *b, const coord_statuspage_input *in)
{
	const cJSON *list =
	    in->snap != NULL ? cJSON_GetObjectItemCaseSensitive(in->snap, "alerts") : NULL;
	double total = 0;
	if (in->snap == NULL || !jnum(in->snap, "alerts_open", &total)) {
		total = cJSON_GetArraySize(list);
	}
	coffer_strbuf_printf(b, "<section id=\"alerts\">\n<h2>Open alerts</h2>\n");
	if (in->snap == NULL) {
		coffer_strbuf_put(
		    b, "<p>Unknown: the catalog has not been read.</p>\n</section>\n");
		return;
	}
	if (total == 0 && cJSON_GetArraySize(list) == 0) {
		coffer_strbuf_put(
		    b, "<p class=\"summary ok-text\">No open alerts.</p>\n</section>\n");
		return;
	}
	coffer_strbuf_printf(b, "<p class=\"summary\">%.0f open.</p>\n", total);
	coffer_strbuf_put(b,
	    "<table>\n<thead><tr><th>Check</th><th>Service</th><th>Agent</th><th>Severity</th>"
	    "<th>Since</th><th>Summary</th><th>Dedup key</th></tr></thead>\n<tbody>\n");
	size_t shown = 0;
	const cJSON *a;
	cJSON_ArrayForEach(a, list)
	{
		if (shown >= COORD_STATUSPAGE_MAX_ROWS) {
			break;
		}
		shown++;
		const char *key = jstr(a, "dedup_key");
		/* coffer/<service>/<check>/<agent>: the agent is the fourth part. */
		const char *agent = NULL;
		if (key != NULL) {
			const char *p = key;
			for (int parts = 0; p != NULL && parts < 3; parts++) {
				p = strchr(p, '/');
				p = p != NULL ? p + 1 : NULL;
			}
			agent = p;
		}
		const char *svc = jstr(a, "service");
		coffer_strbuf_put(b, "<tr><td>");
		put_text(b, jstr(a, "check"));
		coffer_strbuf_put(b, "</td><td class=\"name\">");
		put_text(b, svc != NULL ? svc : "_coordinator");
		coffer_strbuf_put(b, "</td><td class=\"name\">");
		put_text(b, agent);
		const char *sev = jstr(a, "severity");
		bool loud =
		    sev != NULL && (strcmp(sev, "critical") == 0 || strcmp(sev, "error") == 0);
		coffer_strbuf_printf(b, "</td><td class=\"state %s\">", loud ? "bad" : "warn");
		put_text(b, sev);
		coffer_strbuf_put(b, "</td><td>");
		put_when_text(b, a, "last_changed_at", in->now_ms);
		coffer_strbuf_put(b, "</td><td>");
		put_text(b, jstr(a, "summary"));
		coffer_strbuf_put(b, "</td><td class=\"id\">");
		put_text(b, key);
		coffer_strbuf_put(b, "</td></tr>\n");
	}
	coffer_strbuf_put(b, "</tbody>\n</table>\n");
	put_more(b, total, shown, "open alerts (coffer alerts list shows them)");
	coffer_strbuf_put(b, "</section>\n");
}

static void
section_drills(coffer_strbuf *b, const coord_config *cfg, const coord_statuspage_input *in,
    const svc_row *rows)
{
	coffer_strbuf_put(b, "<section id=\"drills\">\n<h2>Restore drills</h2>\n");
	if (cfg->n_services == 0) {
		coffer_strbuf_put(b, "<p>No services.</p>\n</section>\n");
		return;
	}
	coffer_strbuf_put(b,
	    "<table>\n<thead><tr><th>Service</th><th>State</th><th>Last drill</th><th>Result</th>"
	    "<th>Restore time</th><th>RTO</th></tr></thead>\n<tbody>\n");
	size_t n = cfg->n_services;
	size_t shown = n < COORD_STATUSPAGE_MAX_ROWS ? n : COORD_STATUSPAGE_MAX_ROWS;
	for (size_t k = 0; k < shown; k++) {
		const coord_service_policy *p = &cfg->services[rows[k].idx];
		const cJSON *d = rows[k].st != NULL
		    ? cJSON_GetObjectItemCaseSensitive(rows[k].st, "last_drill")
		    : NULL;
		char t[40];
		double restore = 0, rto = 0;
		bool has_restore = cJSON_IsObject(d) && jnum(d, "restore_ms", &restore);
		if (!cJSON_IsObject(d) || !jnum(d, "rto_ms", &rto)) {
			rto = (double)p->drill.rto_ms;
		}
		const char *status = cJSON_IsObject(d) ? jstr(d, "status") : NULL;
		coffer_strbuf_put(b, "<tr><td class=\"name\">");
		put_text(b, p->name);
		coffer_strbuf_put(b, "</td>");
		if (rows[k].st == NULL) {
			put_state(b, "unknown", "unknown");
		} else if (!cJSON_IsObject(d)) {
			put_state(b, p->drill.runner != NULL ? "bad" : "unknown",
			    p->drill.runner != NULL ? "never drilled"
			                            : "not drilled (no drill.runner)");
		} else if (status != NULL && strcmp(status, "failed") == 0) {
			put_state(b, "bad", "failed");
		} else if (has_restore && restore > rto) {
			put_state(b, "bad", "over RTO");
		} else if (status != NULL && strcmp(status, "passed") == 0) {
			put_state(b, "ok", "within RTO");
		} else {
			put_state(b, "unknown", "running");
		}
		coffer_strbuf_put(b, "<td>");
		if (cJSON_IsObject(d)) {
			put_when_text(b, d, "started_at", in->now_ms);
		} else {
			coffer_strbuf_put(b, "&#8212;");
		}
		coffer_strbuf_put(b, "</td><td>");
		put_text(b, status);
		const char *why = cJSON_IsObject(d) ? jstr(d, "failure_reason") : NULL;
		if (why != NULL) {
			coffer_strbuf_put(b, ": ");
			put_text(b, why);
		}
		coffer_strbuf_put(b, "</td><td>");
		coffer_strbuf_put(
		    b, has_restore ? human(t, sizeof(t), (int64_t)restore) : "&#8212;");
		coffer_strbuf_printf(
		    b, "</td><td>%s</td></tr>\n", human(t, sizeof(t), (int64_t)rto));
	}
	coffer_strbuf_put(b, "</tbody>\n</table>\n");
	put_more(b, (double)n, shown, "services");
	coffer_strbuf_put(b, "</section>\n");
}

static void
section_dr(coffer_strbuf *b, const coord_config *cfg, const coord_statuspage_input *in,
    const svc_row *rows)
{
	coffer_strbuf_put(b, "<section id=\"dr\">\n<h2>DR copy lag</h2>\n");
	if (cfg->n_services == 0) {
		coffer_strbuf_put(b, "<p>No services.</p>\n</section>\n");
		return;
	}
	coffer_strbuf_put(b,
	    "<table>\n<thead><tr><th>Service</th><th>State</th><th>dr.copy</th>"
	    "<th>Copies not yet in DR</th><th>Bytes pending</th><th>Oldest backup not in DR</th>"
	    "<th>Waiting since</th><th>Newest verified copy</th></tr></thead>\n<tbody>\n");
	size_t n = cfg->n_services;
	size_t shown = n < COORD_STATUSPAGE_MAX_ROWS ? n : COORD_STATUSPAGE_MAX_ROWS;
	for (size_t k = 0; k < shown; k++) {
		const coord_service_policy *p = &cfg->services[rows[k].idx];
		const cJSON *dr =
		    rows[k].st != NULL ? cJSON_GetObjectItemCaseSensitive(rows[k].st, "dr") : NULL;
		coffer_strbuf_put(b, "<tr><td class=\"name\">");
		put_text(b, p->name);
		coffer_strbuf_put(b, "</td>");
		const char *mode = cJSON_IsObject(dr) ? jstr(dr, "copy") : NULL;
		if (!cJSON_IsObject(dr)) {
			put_state(b, "unknown", "unknown");
			coffer_strbuf_put(b, "<td colspan=\"6\">&#8212;</td></tr>\n");
			continue;
		}
		if (mode == NULL || strcmp(mode, "none") == 0) {
			put_state(b, "unknown", "no DR copy");
			coffer_strbuf_put(b, "<td>none</td><td colspan=\"5\">&#8212;</td></tr>\n");
			continue;
		}
		double pending = 0, failed = 0, bytes = 0;
		(void)jnum(dr, "pending", &pending);
		(void)jnum(dr, "failed", &failed);
		(void)jnum(dr, "pending_bytes", &bytes);
		if (failed > 0) {
			put_state(b, "bad", "copy failed");
		} else if (pending > 0) {
			put_state(b, "warn", "copying");
		} else {
			put_state(b, "ok", "up to date");
		}
		char sz[COFFER_FMT_BYTES_SIZE];
		coffer_strbuf_put(b, "<td>");
		put_text(b, mode);
		coffer_strbuf_printf(b, "</td><td>%.0f", pending + failed);
		if (failed > 0) {
			coffer_strbuf_printf(b, " (%.0f failed)", failed);
		}
		coffer_strbuf_printf(
		    b, "</td><td>%s</td><td class=\"id\">", coffer_fmt_bytes(sz, bytes));
		put_text(b, jstr(dr, "oldest_pending_backup"));
		coffer_strbuf_put(b, "</td><td>");
		put_when_text(b, dr, "oldest_pending_since", in->now_ms);
		coffer_strbuf_put(b, "</td><td>");
		put_when_text(b, dr, "last_verified_at", in->now_ms);
		coffer_strbuf_put(b, "</td></tr>\n");
	}
	coffer_strbuf_put(b, "</tbody>\n</table>\n");
	put_more(b, (double)n, shown, "services");
	coffer_strbuf_put(b, "</section>\n");
}

static void
section_holds(coffer_strbuf *b, const coord_statuspage_input *in)
{
	coffer_strbuf_put(b, "<section id=\"holds\">\n<h2>Legal holds</h2>\n");
	if (in->snap == NULL) {
		coffer_strbuf_put(
		    b, "<p>Unknown: the catalog has not been read.</p>\n</section>\n");
		return;
	}
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(in->snap, "holds");
	double total = 0;
	if (!jnum(in->snap, "holds_active", &total)) {
		total = cJSON_GetArraySize(list);
	}
	if (cJSON_GetArraySize(list) == 0) {
		coffer_strbuf_put(
		    b, "<p class=\"summary\">No active legal holds.</p>\n</section>\n");
		return;
	}
	coffer_strbuf_printf(b,
	    "<p class=\"summary\">%.0f active: retention keeps these backups until the hold is "
	    "released.</p>\n",
	    total);
	coffer_strbuf_put(b,
	    "<table>\n<thead><tr><th>Backup</th><th>Service</th><th>Reason</th><th>Placed by</th>"
	    "<th>Since</th></tr></thead>\n<tbody>\n");
	size_t shown = 0;
	const cJSON *h;
	cJSON_ArrayForEach(h, list)
	{
		if (shown >= COORD_STATUSPAGE_MAX_ROWS) {
			break;
		}
		shown++;
		coffer_strbuf_put(b, "<tr><td class=\"id\">");
		put_text(b, jstr(h, "backup_id"));
		coffer_strbuf_put(b, "</td><td class=\"name\">");
		put_text(b, jstr(h, "service"));
		coffer_strbuf_put(b, "</td><td class=\"reason\">");
		put_text(b, jstr(h, "reason"));
		coffer_strbuf_put(b, "</td><td class=\"name\">");
		put_text(b, jstr(h, "placed_by"));
		coffer_strbuf_put(b, "</td><td>");
		put_when_text(b, h, "placed_at", in->now_ms);
		coffer_strbuf_put(b, "</td></tr>\n");
	}
	coffer_strbuf_put(b, "</tbody>\n</table>\n");
	put_more(b, total, shown, "holds (coffer holds list shows them)");
	coffer_strbuf_put(b, "</section>\n");
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta name=\"referrer\" content=\"no-referrer\">\n"
    "<title>Coffer status</title>\n<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}\n"
    "h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em}\n"
    "table{border-collapse:collapse;width:100%}\n"
    "th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}\n"
    "th{background:#f2f2f2}\n"
    ".state{font-weight:600;white-space:nowrap}\n"
    ".ok{background:#d8f0d8;color:#0a4d0a}.bad{background:#f7d4d4;color:#7a0c0c}\n"
    ".warn{background:#fbeec8;color:#6b4a00}.unknown{background:#eee;color:#555}\n"
    ".ok-text{color:#0a4d0a}\n"
    ".id,.name{font-family:ui-monospace,monospace;word-break:break-all}\n"
    ".reason{white-space:pre-wrap;word-break:break-word}\n"
    ".rel,.note,.meta{color:#666}.more{font-style:italic}\n"
    ".banner{border:2px solid #a00;background:#fde8e8;color:#700;padding:.6em .8em;"
    "margin:1em 0;font-size:1.1em}\n"
    "</style>\n</head>\n<body>\n";

int
coord_statuspage_html(
    const coord_config *cfg, const coord_statuspage_input *in, char **html, size_t *len)
{
	*html = NULL;
	*len = 0;
	coffer_strbuf b = COFFER_STRBUF_INIT(PAGE_MAX);
	svc_row *rows = calloc(cfg->n_services > 0 ? cfg->n_services : 1, sizeof(*rows));
	if (rows == NULL) {
		return (COFFER_ENOMEM);
	}
	coffer_strbuf_put(&b, page_head);
	coffer_strbuf_put(&b, "<header>\n<h1>Coffer status</h1>\n<p class=\"meta\">Rendered ");
	put_time(&b, in->now_ms);
	coffer_strbuf_put(&b,
	    " by coffer-coordinator. Read only; this page does not refresh itself.</p>\n"
	    "</header>\n");
	if (!in->catalog_up) {
		char d[40];
		coffer_strbuf_put(
		    &b, "<div class=\"banner\" role=\"alert\"><strong>Catalog unreachable");
		if (in->down_since_ms > 0) {
			coffer_strbuf_put(&b, " since ");
			put_when(&b, in->down_since_ms, in->now_ms);
		}
		coffer_strbuf_put(&b, "</strong>. ");
		if (in->snap != NULL) {
			coffer_strbuf_printf(&b,
			    "The figures below were read %s ago and may be out of date; the "
			    "configuration (services, RPO, RTO, schedules) is current.",
			    human(d, sizeof(d), in->now_ms - in->snap_at_ms));
		} else {
			coffer_strbuf_put(&b,
			    "Nothing has been read from it since the coordinator started: only what "
			    "the configuration says is shown.");
		}
		coffer_strbuf_put(&b, "</div>\n");
	}
	section_services(&b, cfg, in, rows);
	section_alerts(&b, in);
	section_drills(&b, cfg, in, rows);
	section_dr(&b, cfg, in, rows);
	section_holds(&b, in);
	coffer_strbuf_put(&b, "</body>\n</html>\n");
	free(rows);
	if (b.failed) {
		coffer_strbuf_free(&b);
		return (COFFER_ENOMEM);
	}
	*len = b.len;
	*html = coffer_strbuf_take(&b);
	return (*html != NULL ? 0 : COFFER_ENOMEM);
}

/* ---- state across renderings ---- */

struct coord_statuspage {
	const coord_config *cfg;
	cJSON *snap; /* the last snapshot read, or NULL */
	int64_t snap_at_ms;
	int64_t down_since_ms; /* a failed read's time, until a read succeeds */
	int64_t *rpo_ms;
	bool *rpo_derived;
	int64_t rpo_at_ms; /* 0: never walked */
};

coord_statuspage *
coord_statuspage_new(const coord_config *cfg)
{
	coord_statuspage *sp = calloc(1, sizeof(*sp));
	size_t n = cfg->n_services > 0 ? cfg->n_services : 1;
	if (sp != NULL) {
		sp->cfg = cfg;
		sp->rpo_ms = calloc(n, sizeof(*sp->rpo_ms));
		sp->rpo_derived = calloc(n, sizeof(*sp->rpo_derived));
	}
	if (sp != NULL && (sp->rpo_ms == NULL || sp->rpo_derived == NULL)) {
		coord_statuspage_free(sp);
		sp = NULL;
	}
	return (sp);
}

void
coord_statuspage_free(coord_statuspage *sp)
{
	if (sp == NULL) {
		return;
	}
	cJSON_Delete(sp->snap);
	free(sp->rpo_ms);
	free(sp->rpo_derived);
	free(sp);
}

static void
refresh_rpo(coord_statuspage *sp, int64_t now_ms)
{
	if (sp->rpo_at_ms != 0 && now_ms - sp->rpo_at_ms < RPO_TTL_MS) {
		return;
	}
	sp->rpo_at_ms = now_ms;
	for (size_t i = 0; i < sp->cfg->n_services; i++) {
		coffer_err err;
		coffer_err_clear(&err);
		if (coord_config_rpo(sp->cfg, &sp->cfg->services[i], now_ms, &sp->rpo_ms[i],
		        &sp->rpo_derived[i], &err) != 0) {
			sp->rpo_ms[i] = 0;
		}
	}
}

int
coord_statuspage_render(coord_statuspage *sp, coord_catalog *cat, bool catalog_up,
    int64_t down_since_ms, int64_t now_ms, char **html, size_t *len, int *http_status)
{
	refresh_rpo(sp, now_ms);
	bool read = false;
	if (cat != NULL && catalog_up) {
		coffer_err err;
		coffer_err_clear(&err);
		cJSON *snap = NULL;
		if (coord_statuspage_collect(cat, sp->cfg, now_ms, &snap, &err) == 0) {
			cJSON_Delete(sp->snap);
			sp->snap = snap;
			sp->snap_at_ms = now_ms;
			sp->down_since_ms = 0;
			read = true;
		} else {
			coffer_log_warn(
			    "status page not read from the catalog", "error=%s", err.msg);
		}
	}
	int64_t since = down_since_ms;
	if (!read && catalog_up) {
		/* The lanes still reach it, this connection does not. */
		if (sp->down_since_ms == 0) {
			sp->down_since_ms = now_ms;
		}
		since = sp->down_since_ms;
	}
	coord_statuspage_input in = {
		.now_ms = now_ms,
		.snap = sp->snap,
		.snap_at_ms = sp->snap_at_ms,
		.catalog_up = read,
		.down_since_ms = since,
		.rpo_ms = sp->rpo_ms,
		.rpo_derived = sp->rpo_derived,
	};
	*http_status = read ? 200 : 503;
	return (coord_statuspage_html(sp->cfg, &in, html, len));
}
