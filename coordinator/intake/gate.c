/*
 * Gate: the directory of enrolled agents, refusal budgets per peer,
 * envelope budgets per agent, and refusals aggregated per period; see
 * coordinator/intake/gate.h.
 *
 * Design notes.
 * Why an in-memory directory and not a cache filled on misses: junk with
 * invented names misses every time, so a cache would cost a catalog round
 * trip per junk request, which is what this module exists to prevent. The
 * whole table is small (a name and 32 bytes per agent) and changes only by
 * enrolment and revocation, both of which stamp a time column; reading
 * what changed since the last read less a minute (a transaction that began
 * before our read and committed after it carries an older stamp) catches
 * both, and a full read every ten minutes is the backstop. A name the
 * directory does not know still gets one single-row lookup
 * (coord_gate_lookup) so that an agent enrolled a moment ago is not refused;
 * that lookup is paid for by the peer's refusal budget when it fails, so a
 * peer inventing names gets a handful of lookups and is then muted.
 *
 * Token buckets refill continuously on the monotonic clock; a bucket that
 * is full again is indistinguishable from a new one, so when the peer
 * table is full such entries are dropped to make room; if none is, a new
 * peer shares the bucket of peer "*" (it can only be muted sooner).
 *
 * Aggregation keys include the period, so counts of a period whose flush
 * failed are merged back unchanged and written by a later flush with the
 * right period. The refusals table's counters are kept per (reason, claimed
 * name) as before (migration 1), capped per flush: names past the cap
 * count under "" so a peer inventing names cannot grow that table faster
 * than GATE_MAX_REFS rows a period.
 */
#include "coordinator/intake/gate.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/base/utf8.h"
#include "common/wire/wire.h"

#define GATE_KEY_MAX        160
#define GATE_MAX_PEERS      4096 /* addresses with a budget tracked */
#define GATE_MAX_AGGS       512  /* (peer, reason, period) keys held */
#define GATE_MAX_REFS       32   /* (reason, name) counters held a period */
#define GATE_AGENTS_NAMED   8    /* claimed names listed in one audit row */
#define GATE_REFRESH_MS     1000
#define GATE_FULL_MS        (10 * 60 * 1000)
#define GATE_REFRESH_MARGIN 60000

typedef struct gnode {
	struct gnode *next;
	uint32_t hash;
	char key[GATE_KEY_MAX];
} gnode;

typedef struct gtable {
	gnode **heads;
	size_t n_heads;
	size_t count;
} gtable;

typedef struct bucket {
	double tokens;
	int64_t at_ms;
} bucket;

typedef struct dir_entry {
	gnode node; /* key: the agent's name */
	uint8_t pubkey[COFFER_SIGN_PUBKEY_BYTES];
	bool revoked;
	bucket budget;
} dir_entry;

typedef struct peer_entry {
	gnode node; /* key: the address */
	bucket budget;
} peer_entry;

typedef struct agg_entry {
	gnode node; /* key: peer \x1f reason \x1f period */
	char peer[64];
	char reason[40];
	int64_t period; /* wall ms / period_ms */
	uint64_t count;
	char agents[GATE_AGENTS_NAMED][72];
	int n_agents;
	char error[256];
} agg_entry;

typedef struct ref_entry {
	gnode node; /* key: reason \x1f name */
	char reason[40];
	char agent[72];
	uint64_t count;
	char detail[256];
} ref_entry;

struct coord_gate {
	coord_gate_limits lim;
	pthread_mutex_t mu;
	gtable dir, peers, aggs, refs;
	int64_t last_refresh_ms; /* monotonic; 0: never */
	int64_t last_full_ms;    /* monotonic */
	int64_t since_db_ms;     /* the catalog's now() at the last read */
	bool refresh_claimed;    /* a lane is reading */
	bool invalidated;
};

/* ---- table ---- */

static uint32_t
gt_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s != '\0'; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	return (h);
}

static int
gt_init(gtable *t, size_t n_heads)
{
	t->heads = calloc(n_heads, sizeof(*t->heads));
	t->n_heads = n_heads;
	t->count = 0;
	return (t->heads != NULL ? 0 : -1);
}

static gnode *
gt_find(const gtable *t, const char *key)
{
	uint32_t h = gt_hash(key);
	for (gnode *n = t->heads[h % t->n_heads]; n != NULL; n = n->next) {
		if (n->hash == h && strcmp(n->key, key) == 0) {
			return (n);
		}
	}
	return (NULL);
}

/* n's key is set; n is not in the table. */
static void
gt_insert(gtable *t, gnode *n)
{
	n->hash = gt_hash(n->key);
	gnode **head = &t->heads[n->hash % t->n_heads];
	n->next = *head;
	*head = n;
	t->count++;
}

/* Unlinks every node for which drop says so and hands it to out (a list),
 * or frees it when out is NULL. */
static void
gt_take(gtable *t, bool (*drop)(gnode *, void *), void *arg, gnode **out)
{
	for (size_t i = 0; i < t->n_heads; i++) {
		gnode **p = &t->heads[i];
		while (*p != NULL) {
			gnode *n = *p;
			if (!drop(n, arg)) {
				p = &n->next;
				continue;
			}
			*p = n->next;
			t->count--;
			if (out != NULL) {
				n->next = *out;
				*out = n;
			} else {
				free(n);
			}
		}
	}
}

static bool
drop_all(gnode *n, void *arg)
{
	(void)n;
	(void)arg;
	return (true);
}

static void
gt_fini(gtable *t)
{
	if (t->heads == NULL) {
		return;
	}
	gt_take(t, drop_all, NULL, NULL);
	free(t->heads);
	t->heads = NULL;
}

/* ---- buckets ---- */

static void
bucket_refill(bucket *b, double rate, double burst, int64_t now_ms)
{
	if (b->at_ms == 0) {
		b->tokens = burst;
	} else if (now_ms > b->at_ms) {
		b->tokens += rate * (double)(now_ms - b->at_ms) / 1000.0;
		if (b->tokens > burst) {
			b->tokens = burst;
		}
	}
	b->at_ms = now_ms;
}

/* ---- lifecycle ---- */

int
coord_gate_new(const coord_gate_limits *lim, coord_gate **out, coffer_err *err)
{
	*out = NULL;
	coord_gate *g = calloc(1, sizeof(*g));
	if (g == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the intake gate"));
	}
	if (lim != NULL) {
		g->lim = *lim;
	}
	pthread_mutex_init(&g->mu, NULL);
	if (g->lim.peer_refusals_per_s <= 0) {
		g->lim.peer_refusals_per_s = 10;
	}
	if (g->lim.peer_refusal_burst == 0) {
		g->lim.peer_refusal_burst = 50;
	}
	if (g->lim.agent_envelopes_per_s <= 0) {
		g->lim.agent_envelopes_per_s = 100;
	}
	if (g->lim.agent_burst == 0) {
		g->lim.agent_burst = 200;
	}
	if (g->lim.period_ms <= 0) {
		g->lim.period_ms = 60000;
	}
	if (gt_init(&g->dir, 1u << 14) != 0 || gt_init(&g->peers, 1024) != 0 ||
	    gt_init(&g->aggs, 256) != 0 || gt_init(&g->refs, 256) != 0) {
		coord_gate_free(g);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the intake gate"));
	}
	*out = g;
	return (0);
}

void
coord_gate_free(coord_gate *g)
{
	if (g == NULL) {
		return;
	}
	gt_fini(&g->dir);
	gt_fini(&g->peers);
	gt_fini(&g->aggs);
	gt_fini(&g->refs);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

/* ---- directory ---- */

coord_gate_agent_state
coord_gate_agent(coord_gate *g, const char *name, uint8_t pubkey[COFFER_SIGN_PUBKEY_BYTES])
{
	if (strlen(name) >= GATE_KEY_MAX) {
		return (COORD_GATE_UNKNOWN);
	}
	pthread_mutex_lock(&g->mu);
	const dir_entry *e = (const dir_entry *)gt_find(&g->dir, name);
	coord_gate_agent_state st = COORD_GATE_UNKNOWN;
	if (e != NULL) {
		st = e->revoked ? COORD_GATE_REVOKED : COORD_GATE_ENROLLED;
		if (pubkey != NULL) {
			memcpy(pubkey, e->pubkey, COFFER_SIGN_PUBKEY_BYTES);
		}
	}
	pthread_mutex_unlock(&g->mu);
	return (st);
}

/* Adds or updates one agent; mu held. A revocation is never undone here:
 * the catalog cannot undo one either. */
static void
dir_put(coord_gate *g, const char *name, const uint8_t *pubkey, bool revoked)
{
	if (strlen(name) >= GATE_KEY_MAX) {
		return;
	}
	dir_entry *e = (dir_entry *)gt_find(&g->dir, name);
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			return; /* the intake's own row lock still decides */
		}
		snprintf(e->node.key, sizeof(e->node.key), "%s", name);
		gt_insert(&g->dir, &e->node);
	}
	memcpy(e->pubkey, pubkey, COFFER_SIGN_PUBKEY_BYTES);
	e->revoked = e->revoked || revoked;
}

bool
coord_gate_refresh_claim(coord_gate *g, int64_t now_ms)
{
	pthread_mutex_lock(&g->mu);
	bool due = !g->refresh_claimed &&
	    (g->invalidated || g->last_refresh_ms == 0 ||
	        now_ms - g->last_refresh_ms >= GATE_REFRESH_MS);
	if (due) {
		g->refresh_claimed = true;
		g->invalidated = false;
	}
	pthread_mutex_unlock(&g->mu);
	return (due);
}

void
coord_gate_invalidate(coord_gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->invalidated = true;
	pthread_mutex_unlock(&g->mu);
}

/* Rows of (name, hex key, revoked, ...) into the directory. */
static void
dir_put_rows(coord_gate *g, PGresult *res)
{
	int n = PQntuples(res);
	pthread_mutex_lock(&g->mu);
	for (int i = 0; i < n; i++) {
		const char *hex = PQgetvalue(res, i, 1);
		uint8_t key[COFFER_SIGN_PUBKEY_BYTES];
		if (strlen(hex) != 2 * COFFER_SIGN_PUBKEY_BYTES ||
		    !coffer_hex_to_bytes(hex, strlen(hex), key, sizeof(key))) {
			continue; /* the intake reports a corrupt key when it meets it */
		}
		dir_put(g, PQgetvalue(res, i, 0), key, PQgetvalue(res, i, 2)[0] == 't');
	}
	pthread_mutex_unlock(&g->mu);
}

int
coord_gate_refresh(coord_gate *g, coord_catalog *cat, coffer_err *err)
{
	int64_t now = coffer_clock_monotonic_ms();
	pthread_mutex_lock(&g->mu);
	bool full = g->last_full_ms == 0 || now - g->last_full_ms >= GATE_FULL_MS;
	char since[24];
	snprintf(since, sizeof(since), "%" PRId64, g->since_db_ms - GATE_REFRESH_MARGIN);
	pthread_mutex_unlock(&g->mu);
	int rv = 0;
	PGresult *res;
	const char *vals[] = { since };
	if (full) {
		res = coord_catalog_query(cat,
		    "SELECT name, encode(pubkey, 'hex'), revoked_at IS NOT NULL, "
		    "(extract(epoch FROM now()) * 1000)::bigint FROM agents",
		    0, NULL, "reading the enrolled agents", &rv, err);
	} else {
		res = coord_catalog_query(cat,
		    "SELECT name, encode(pubkey, 'hex'), revoked_at IS NOT NULL, "
		    "(extract(epoch FROM now()) * 1000)::bigint FROM agents "
		    "WHERE enrolled_at >= to_timestamp($1::bigint / 1000.0) "
		    "OR revoked_at >= to_timestamp($1::bigint / 1000.0) "
		    "UNION ALL SELECT '', '', false, (extract(epoch FROM now()) * 1000)::bigint",
		    1, vals, "reading changed enrolments", &rv, err);
	}
	if (res != NULL) {
		dir_put_rows(g, res);
	}
	pthread_mutex_lock(&g->mu);
	g->refresh_claimed = false;
	g->last_refresh_ms = now;
	if (res != NULL) {
		int n = PQntuples(res);
		if (n > 0) {
			g->since_db_ms = strtoll(PQgetvalue(res, n - 1, 3), NULL, 10);
		}
		if (full) {
			g->last_full_ms = now;
		}
	}
	pthread_mutex_unlock(&g->mu);
	PQclear(res);
	return (rv);
}

int
coord_gate_lookup(coord_gate *g, coord_catalog *cat, const char *name,
    coord_gate_agent_state *state, coffer_err *err)
{
	int rv = 0;
	const char *vals[] = { name };
	PGresult *res = coord_catalog_query(cat,
	    "SELECT name, encode(pubkey, 'hex'), revoked_at IS NOT NULL FROM agents "
	    "WHERE name = $1",
	    1, vals, "looking up an agent", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	dir_put_rows(g, res);
	PQclear(res);
	*state = coord_gate_agent(g, name, NULL);
	return (0);
}

/* ---- peers ---- */

void
coord_gate_peer_ip(const char *peer, char *ip, size_t size)
{
	if (size == 0) {
		return;
	}
	ip[0] = '\0';
	if (peer == NULL) {
		return;
	}
	const char *start = peer, *end;
	if (*peer == '[') {
		start = peer + 1;
		end = strchr(start, ']');
	} else {
		end = strrchr(peer, ':');
	}
	size_t n = end != NULL ? (size_t)(end - start) : strlen(start);
	if (n >= size) {
		n = size - 1;
	}
	memcpy(ip, start, n);
	ip[n] = '\0';
}

static bool
peer_idle(gnode *n, void *arg)
{
	const coord_gate *g = arg;
	const peer_entry *p = (const peer_entry *)n;
	int64_t now = coffer_clock_monotonic_ms();
	double refilled = p->budget.tokens +
	    g->lim.peer_refusals_per_s * (double)(now - p->budget.at_ms) / 1000.0;
	return (refilled >= (double)g->lim.peer_refusal_burst);
}

/* The peer's entry, made if need be; mu held. */
static peer_entry *
peer_get(coord_gate *g, const char *peer)
{
	char ip[64];
	coord_gate_peer_ip(peer, ip, sizeof(ip));
	peer_entry *p = (peer_entry *)gt_find(&g->peers, ip);
	if (p != NULL) {
		return (p);
	}
	if (g->peers.count >= GATE_MAX_PEERS) {
		gt_take(&g->peers, peer_idle, g, NULL);
	}
	if (g->peers.count >= GATE_MAX_PEERS) {
		snprintf(ip, sizeof(ip), "*");
		if ((p = (peer_entry *)gt_find(&g->peers, ip)) != NULL) {
			return (p);
		}
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		return (NULL);
	}
	snprintf(p->node.key, sizeof(p->node.key), "%s", ip);
	gt_insert(&g->peers, &p->node);
	return (p);
}

bool
coord_gate_peer_muted(coord_gate *g, const char *peer, int64_t now_ms)
{
	char ip[64];
	coord_gate_peer_ip(peer, ip, sizeof(ip));
	pthread_mutex_lock(&g->mu);
	peer_entry *p = (peer_entry *)gt_find(&g->peers, ip);
	bool muted = false;
	if (p != NULL) {
		bucket_refill(&p->budget, g->lim.peer_refusals_per_s,
		    (double)g->lim.peer_refusal_burst, now_ms);
		muted = p->budget.tokens < 1.0;
	}
	pthread_mutex_unlock(&g->mu);
	return (muted);
}

/* ---- refusals ---- */

/* Counts one refusal under (peer, reason, period); mu held. */
static void
agg_add(coord_gate *g, const char *ip, const char *reason, int64_t period, uint64_t count,
    const char *agent, const char *error)
{
	char key[GATE_KEY_MAX];
	snprintf(key, sizeof(key), "%s\x1f%s\x1f%" PRId64, ip, reason, period);
	agg_entry *a = (agg_entry *)gt_find(&g->aggs, key);
	if (a == NULL && g->aggs.count >= GATE_MAX_AGGS) {
		ip = "*";
		snprintf(key, sizeof(key), "%s\x1f%s\x1f%" PRId64, ip, reason, period);
		a = (agg_entry *)gt_find(&g->aggs, key);
	}
	if (a == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL) {
			return;
		}
		snprintf(a->node.key, sizeof(a->node.key), "%s", key);
		snprintf(a->peer, sizeof(a->peer), "%s", ip);
		snprintf(a->reason, sizeof(a->reason), "%s", reason);
		a->period = period;
		snprintf(a->error, sizeof(a->error), "%s", error);
		gt_insert(&g->aggs, &a->node);
	}
	a->count += count;
	if (agent[0] == '\0') {
		return;
	}
	for (int i = 0; i < a->n_agents; i++) {
		if (strcmp(a->agents[i], agent) == 0) {
			return;
		}
	}
	if (a->n_agents < GATE_AGENTS_NAMED) {
		snprintf(a->agents[a->n_agents++], sizeof(a->agents[0]), "%s", agent);
	}
}

/* Counts under (reason, claimed name) for the refusals table; mu held. */
static void
ref_add(coord_gate *g, const char *reason, const char *agent, uint64_t count, const char *detail)
{
	char key[GATE_KEY_MAX];
	snprintf(key, sizeof(key), "%s\x1f%s", reason, agent);
	ref_entry *r = (ref_entry *)gt_find(&g->refs, key);
	if (r == NULL && g->refs.count >= GATE_MAX_REFS) {
		agent = "";
		snprintf(key, sizeof(key), "%s\x1f", reason);
		r = (ref_entry *)gt_find(&g->refs, key);
	}
	if (r == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL) {
			return;
		}
		snprintf(r->node.key, sizeof(r->node.key), "%s", key);
		snprintf(r->reason, sizeof(r->reason), "%s", reason);
		snprintf(r->agent, sizeof(r->agent), "%s", agent);
		gt_insert(&g->refs, &r->node);
	}
	r->count += count;
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

void
coord_gate_refused(
    coord_gate *g, const char *peer, const char *reason, const char *agent, const char *error)
{
	int64_t now = coffer_clock_monotonic_ms();
	int64_t period = coffer_clock_now(NULL) / g->lim.period_ms;
	char ip[64];
	coord_gate_peer_ip(peer, ip, sizeof(ip));
	pthread_mutex_lock(&g->mu);
	/* A muted peer's answers are counted, but it has nothing left to spend,
	 * and an agent over its own budget is not a stranger. */
	peer_entry *p = strcmp(reason, COORD_GATE_RATE_LIMITED) != 0 ? peer_get(g, peer) : NULL;
	if (p != NULL) {
		bucket_refill(
		    &p->budget, g->lim.peer_refusals_per_s, (double)g->lim.peer_refusal_burst, now);
		if (p->budget.tokens >= 1.0) {
			p->budget.tokens -= 1.0;
		}
	}
	agg_add(g, ip[0] != '\0' ? ip : "-", reason, period, 1, agent, error);
	ref_add(g, reason, agent, 1, error);
	pthread_mutex_unlock(&g->mu);
}

bool
coord_gate_agent_allow(coord_gate *g, const char *agent, int64_t now_ms)
{
	pthread_mutex_lock(&g->mu);
	dir_entry *e = strlen(agent) < GATE_KEY_MAX ? (dir_entry *)gt_find(&g->dir, agent) : NULL;
	bool ok = true;
	if (e != NULL) {
		bucket_refill(
		    &e->budget, g->lim.agent_envelopes_per_s, (double)g->lim.agent_burst, now_ms);
		ok = e->budget.tokens >= 1.0;
		if (ok) {
			e->budget.tokens -= 1.0;
		}
	}
	pthread_mutex_unlock(&g->mu);
	return (ok);
}

/* ---- flush ---- */

typedef struct flush_sel {
	int64_t before; /* periods before this one ended */
} flush_sel;

static bool
agg_ended(gnode *n, void *arg)
{
	const flush_sel *sel = arg;
	return (((const agg_entry *)n)->period < sel->before);
}

/* The audit row's details for one aggregate; NULL when memory runs out. */
static char *
agg_details(const coord_gate *g, const agg_entry *a)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (NULL);
	}
	char start[40];
	char *err_clean = coffer_utf8_clean(a->error, 255);
	cJSON_AddStringToObject(d, "reason", a->reason);
	cJSON_AddStringToObject(d, "peer", a->peer);
	cJSON_AddNumberToObject(d, "count", (double)a->count);
	cJSON_AddStringToObject(d, "period_start",
	    coffer_time_format(start, sizeof(start), a->period * g->lim.period_ms));
	cJSON_AddNumberToObject(d, "period_s", (double)(g->lim.period_ms / 1000));
	cJSON_AddStringToObject(d, "agent", a->n_agents > 0 ? a->agents[0] : "");
	cJSON *names = cJSON_AddArrayToObject(d, "agents");
	for (int i = 0; names != NULL && i < a->n_agents; i++) {
		cJSON_AddItemToArray(names, cJSON_CreateString(a->agents[i]));
	}
	cJSON_AddStringToObject(d, "error", err_clean != NULL ? err_clean : "");
	free(err_clean);
	char *s = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	return (s);
}

static int
write_refs(coord_catalog *cat, gnode *refs, coffer_err *err)
{
	coord_pgarray cols[4] = { 0 };
	int rv = 0;
	bool any = false;
	for (gnode *n = refs; n != NULL; n = n->next) {
		const ref_entry *r = (const ref_entry *)n;
		char c[24];
		snprintf(c, sizeof(c), "%" PRIu64, r->count);
		char *detail = coffer_utf8_clean(r->detail, 1000);
		bool ok = detail != NULL && coord_pgarray_add(&cols[0], r->reason) &&
		    coord_pgarray_add(&cols[1], r->agent) && coord_pgarray_add(&cols[2], c) &&
		    coord_pgarray_add(&cols[3], detail);
		free(detail);
		if (!ok) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "no memory to count refusals");
			goto out;
		}
		any = true;
	}
	if (any) {
		const char *vals[] = { coord_pgarray_text(&cols[0]), coord_pgarray_text(&cols[1]),
			coord_pgarray_text(&cols[2]), coord_pgarray_text(&cols[3]) };
		rv = coord_catalog_query_exec(cat,
		    "INSERT INTO refusals (reason, agent, count, last_detail) "
		    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) "
		    "ON CONFLICT (reason, agent) DO UPDATE SET count = refusals.count + "
		    "EXCLUDED.count, last_at = now(), last_detail = EXCLUDED.last_detail",
		    4, vals, "counting refused requests", err);
	}
out:
	for (int i = 0; i < 4; i++) {
		coord_pgarray_free(&cols[i]);
	}
	return (rv);
}

static int
write_aggs(coord_gate *g, coord_catalog *cat, const coord_audit_key *key, gnode *aggs,
    coord_gate_flush_stats *st, coffer_err *err)
{
	size_t n = 0;
	for (gnode *x = aggs; x != NULL; x = x->next) {
		n++;
	}
	if (n == 0) {
		return (0);
	}
	coord_audit_entry *rows = calloc(n, sizeof(*rows));
	char **details = calloc(n, sizeof(*details));
	int rv = 0;
	if (rows == NULL || details == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory to audit refusals");
		goto out;
	}
	size_t i = 0;
	for (gnode *x = aggs; x != NULL; x = x->next, i++) {
		const agg_entry *a = (const agg_entry *)x;
		if ((details[i] = agg_details(g, a)) == NULL) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "no memory to audit refusals");
			goto out;
		}
		rows[i] =
		    (coord_audit_entry) { "coordinator", "request.refused", a->peer, details[i] };
		st->refusals += a->count;
	}
	rv = coord_audit_append_many(cat, key, rows, n, NULL, err);
	if (rv == 0) {
		st->audit_rows = (unsigned)n;
	}
out:
	for (size_t k = 0; details != NULL && k < n; k++) {
		cJSON_free(details[k]);
	}
	free(details);
	free(rows);
	return (rv);
}

/* Puts back what a failed flush took; mu held. */
static void
merge_back(coord_gate *g, gnode *aggs, gnode *refs)
{
	while (aggs != NULL) {
		agg_entry *a = (agg_entry *)aggs;
		aggs = aggs->next;
		agg_add(g, a->peer, a->reason, a->period, a->count,
		    a->n_agents > 0 ? a->agents[0] : "", a->error);
		free(a);
	}
	while (refs != NULL) {
		ref_entry *r = (ref_entry *)refs;
		refs = refs->next;
		ref_add(g, r->reason, r->agent, r->count, r->detail);
		free(r);
	}
}

int
coord_gate_flush(coord_gate *g, coord_catalog *cat, const coord_audit_key *key, bool all,
    coord_gate_flush_stats *stats, coffer_err *err)
{
	coord_gate_flush_stats local = { 0 };
	coord_gate_flush_stats *st = stats != NULL ? stats : &local;
	memset(st, 0, sizeof(*st));
	flush_sel sel = { all ? INT64_MAX : coffer_clock_now(NULL) / g->lim.period_ms };
	gnode *aggs = NULL, *refs = NULL;
	pthread_mutex_lock(&g->mu);
	gt_take(&g->aggs, agg_ended, &sel, &aggs);
	if (aggs != NULL) {
		gt_take(&g->refs, drop_all, NULL, &refs);
	}
	pthread_mutex_unlock(&g->mu);
	if (aggs == NULL) {
		return (0);
	}
	int rv = coord_catalog_begin(cat, err);
	if (rv == 0) {
		rv = write_refs(cat, refs, err);
	}
	if (rv == 0) {
		rv = write_aggs(g, cat, key, aggs, st, err);
	}
	if (rv == 0) {
		rv = coord_catalog_commit(cat, err);
	} else {
		coord_catalog_rollback(cat);
	}
	if (rv != 0) {
		memset(st, 0, sizeof(*st));
		pthread_mutex_lock(&g->mu);
		merge_back(g, aggs, refs);
		pthread_mutex_unlock(&g->mu);
		return (rv);
	}
	while (aggs != NULL) {
		gnode *next = aggs->next;
		free(aggs);
		aggs = next;
	}
	while (refs != NULL) {
		gnode *next = refs->next;
		free(refs);
		refs = next;
	}
	return (0);
}

int
coord_gate_reply(int status, const char *error, uint8_t **out, size_t *out_len, coffer_err *err)
{
	Coffer__V1__Reply rep = COFFER__V1__REPLY__INIT;
	rep.status = (Coffer__V1__Status)status;
	rep.error = (char *)error;
	rep.server_time_ms = coffer_clock_now(NULL);
	return (coffer_wire_encode(&rep.base, COFFER_WIRE_MAX_MSG, out, out_len, err));
}
