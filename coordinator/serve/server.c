/*
 * Server: libuv loop + wire server + catalog lanes; see
 * coordinator/serve/server.h.
 *
 * Design notes.
 * A lane is a thread with its own catalog connection (libpq: one thread
 * per connection) and its own reconnect-with-backoff. Lane 0 serves
 * operators' requests and the maintenance tick, in order; lanes 1..N
 * (`intake_workers`) apply agents' envelopes from a shared queue. Why
 * dedicated threads and not uv_queue_work: libuv's pool is shared with
 * other blocking work and a lane keeps its connection for life. Why
 * several intake lanes although every envelope appends to the audit chain,
 * whose appenders serialise on audit_head's row lock: intake appends an
 * envelope's audit rows in one batch just before it commits, so the lock
 * is held for two statements and a commit while the rest of the work
 * (decoding, signature checks, inserts, updates) runs in parallel, and a
 * single connection spends most of its time waiting for round trips. One
 * agent's envelopes are never applied out of order: the agent sends the
 * next only after the reply, and intake locks the agent's row first.
 *
 * Hand-off. The handler (loop thread) appends a job to a locked queue and
 * signals the thread; the thread appends the finished job to a done queue
 * and wakes the loop with uv_async_send, called under the same lock that
 * stop takes before closing the async handle, so the thread never pokes a
 * handle that is closing (the same rule as common/wire/net.c). The request
 * bytes are not copied: the wire server keeps them valid until the reply is
 * finished, which only happens on the loop thread after the thread is done
 * with the job.
 *
 * Outage. Every lane follows coordinator/catalog/reconnect.h after every
 * job, whatever its kind: a lost connection is reconnected once at once,
 * and if that fails the lane is down. (Lane 0 used to look at its
 * connection only after operators' requests, never after its tick, so an
 * idle coordinator failed every tick on a dead connection after an outage
 * until an operator's command happened to fail.) While down, a lane
 * answers agents STATUS_UNAVAILABLE without touching libpq and retries
 * when its backoff expires (also when idle, via a timed wait) or as soon
 * as another lane found the catalog back; each reconnect re-runs
 * coord_catalog_check: a catalog restored from an older backup must not be
 * written to by a newer schema's code. The lanes report their transitions
 * to coordinator/watch/outage.h, which knows whether the catalog is down
 * (for /healthz and /metrics) and pages when it stays down. When the
 * catalog comes back lane 0 runs a maintenance pass at once, and for a
 * while after (CATCHUP_MS) every envelope that applied events asks for
 * another, so what agents held during the outage (a failed backup) pages
 * within seconds, not at the next natural tick.
 */
#include "coordinator/serve/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/daemon/sdnotify.h"
#include "common/repo/repo.h"
#include "common/wire/net.h"
#include "common/wire/wire.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/catalog/history.h"
#include "coordinator/catalog/reconnect.h"
#include "coordinator/dr/drcopy.h"
#include "coordinator/drill/drills.h"
#include "coordinator/intake/gate.h"
#include "coordinator/intake/intake.h"
#include "coordinator/policy/prune.h"
#include "coordinator/serve/admin.h"
#include "coordinator/serve/http.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/serve/statuspage.h"
#include "coordinator/wal/walprune.h"
#include "coordinator/wal/walwatch.h"
#include "coordinator/watch/alerts.h"
#include "coordinator/watch/notify.h"
#include "coordinator/watch/outage.h"

/* After the catalog comes back: how long applied envelopes ask lane 0 for
 * a prompt maintenance pass. Agents resend what they held within their
 * retry_max (seconds to a minute), so this covers their catch-up. */
#define CATCHUP_MS 120000

/* What a lane does with a job: JOB_AGENT on the intake lanes, the others
 * on lane 0. */
typedef enum job_kind {
	JOB_AGENT, /* an agent's envelope: intake */
	JOB_ADMIN, /* an operator's envelope: admin commands */
	JOB_TICK,  /* periodic: policy sync, retention */
	JOB_FLUSH, /* periodic: the gate's refusal aggregates into the audit log */
} job_kind;

/* Requests one connection may have waiting for an intake lane; more are
 * answered "slow down" at once. An agent has one envelope in flight. */
#define FLOW_MAX_QUEUED 8
#define FLOW_HEADS      256

typedef struct job {
	struct job *next;
	job_kind kind;
	uint32_t pipe; /* JOB_AGENT: the connection, its flow */
	coffer_net_reply *reply;
	const uint8_t *req;
	size_t len;
	char peer[COFFER_NET_PEER_ADDR_MAX];
	uint8_t *out;
	size_t out_len;
} job;

typedef struct server server;

/* One connection's requests waiting for an intake lane. Lanes take one
 * request per flow in turn (round robin over the active flows), so a
 * connection with a burst waits behind itself, not in front of everyone
 * (docs/ARCHITECTURE.md, "Flood-proof intake"). */
typedef struct flow {
	struct flow *hnext;       /* in flows[pipe % FLOW_HEADS] */
	struct flow *next_active; /* in the round robin */
	uint32_t pipe;
	job *head, *tail;
	unsigned n;
} flow;

typedef struct lane {
	server *s;
	int index; /* 0: admin and ticks; 1..: intake */
	pthread_t thread;
	bool started;
	coord_catalog *cat;
	coord_intake *intake; /* intake lanes */
	coord_reconnect rc;   /* the lane's thread only */
} lane;

struct server {
	uv_loop_t loop;
	uv_async_t done_async;
	uv_signal_t sigterm, sigint;
	coffer_sd_loop sd; /* READY=1, then WATCHDOG=1, from this loop */
	coffer_net_server *net;
	coffer_net_server *admin_net; /* NULL without admin_listen */
	uv_timer_t tick_timer;
	bool tick_queued;  /* mu: at most one tick waits or runs */
	bool tick_running; /* mu */
	bool tick_again;   /* mu: one more pass after the running one */
	bool stopping;     /* loop thread */
	bool flush_queued; /* mu */
	bool crl_polling;  /* loop thread */
	const coord_config *cfg;
	const coord_audit_key *key;

	pthread_mutex_t mu;
	pthread_cond_t cv;               /* lane 0's queue */
	pthread_cond_t intake_cv;        /* the intake lanes' queue */
	job *todo_head, *todo_tail;      /* mu: lane 0 */
	flow *flows[FLOW_HEADS];         /* mu: flows with requests waiting */
	flow *active_head, *active_tail; /* mu: their round robin */
	coord_gate *gate;                /* directory, budgets, refusal aggregates */
	uv_timer_t flush_timer;
	uv_fs_poll_t crl_poll; /* [tls] crl: a new list re-makes the listeners */
	uv_signal_t sighup;    /* the same, on demand */
	coffer_net_server_config ncfg;
	job *done_head, *done_tail; /* mu */
	bool stop;                  /* mu */

	/* /metrics: rendered on libuv's thread pool with its own connection,
	 * so a scrape never waits behind the request queue. The connection is
	 * opened at start, when the catalog has just been reached: a first
	 * scrape must not pay for (or fail on) a connect. The last catalog
	 * part that rendered is kept and served, with its age, while the
	 * catalog cannot be read. */
	coord_http *http;
	pthread_mutex_t metrics_mu;
	coord_catalog *metrics_cat;  /* metrics_mu */
	char *metrics_last;          /* metrics_mu; NULL before the first read */
	size_t metrics_last_len;     /* metrics_mu */
	int64_t metrics_last_ms;     /* metrics_mu: when it was read (Unix ms) */
	int64_t started_ms;          /* Unix ms */
	coord_metrics_bound *bounds; /* per service, from the configuration; NULL: none */
	/* What /metrics says without the catalog: per result, and outages. */
	atomic_ullong intake[COORD_METRICS_INTAKE_N];
	atomic_ullong catalog_outages;
	/* /status: its last snapshot and RPOs; rendered one at a time on the
	 * pool (http.c), on metrics_cat under metrics_mu. */
	coord_statuspage *statuspage;

	lane *lanes; /* n_lanes: [0] admin and ticks, then intake */
	int n_lanes;
	/* Whether the catalog is down, from the lanes' transitions; pages
	 * when it stays down. Started before the lanes, stopped after. */
	coord_outage *outage;
	/* When a lane last found the catalog back (monotonic ms): a lane still
	 * waiting out its backoff retries at once rather than answer
	 * "unavailable" while its neighbours ack. */
	atomic_llong recovered_ms;
	/* Until when (monotonic ms) applied envelopes ask for a prompt pass. */
	atomic_llong catchup_until_ms;

	/* Lane 0 only (after start). */
	coord_notify *notify;
	coord_drills *drills;
	coord_drcopy *drcopy; /* NULL without [repository.primary] */
	unsigned ticks;
	coord_alerts_input audit_state;
	char audit_problem[256];
	coffer_repo *repo;  /* primary, with delete rights, for retention; NULL if none */
	coord_catalog *cat; /* lanes[0].cat */
	bool audit_walked;  /* a full coord_audit_verify finished since start */
	bool repo_warned;
	bool policy_synced;
};

static void
push(job **head, job **tail, job *j)
{
	j->next = NULL;
	if (*tail != NULL) {
		(*tail)->next = j;
	} else {
		*head = j;
	}
	*tail = j;
}

/* ---- catalog thread ---- */

/* Queues a maintenance pass on lane 0 unless one waits already; with
 * again, a pass requested while one runs is run once more after it (it
 * may have read the catalog before what prompted this). mu held. */
static void
request_tick_locked(server *s, bool again)
{
	if (s->stop) {
		return;
	}
	if (s->tick_queued) {
		if (again && s->tick_running) {
			s->tick_again = true;
		}
		return;
	}
	job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		return;
	}
	j->kind = JOB_TICK;
	s->tick_queued = true;
	push(&s->todo_head, &s->todo_tail, j);
	pthread_cond_signal(&s->cv);
}

/* A lane found the catalog unreachable: the reconnect rule's immediate
 * retry failed too. The outage is logged once, by the first lane. */
static void
lane_down(lane *l, const char *why)
{
	if (coord_outage_down(l->s->outage, why)) {
		atomic_fetch_add(&l->s->catalog_outages, 1);
		coffer_log_error(
		    "catalog unreachable; not acking", "lane=%d error=%s", l->index, why);
		coffer_sd_status("catalog unreachable; not acking: %s", why);
	}
}

/* A lane reached the catalog again: the others retry now, and lane 0
 * evaluates everything at once. */
static void
lane_back(lane *l)
{
	server *s = l->s;
	coffer_log_info("catalog reachable again; acking", "lane=%d", l->index);
	int64_t now = coffer_clock_monotonic_ms();
	atomic_store(&s->recovered_ms, (long long)now);
	bool ended = coord_outage_up(s->outage);
	if (ended) {
		coffer_sd_status("serving; catalog reachable again");
	}
	pthread_mutex_lock(&s->mu);
	pthread_cond_broadcast(&s->cv);
	pthread_cond_broadcast(&s->intake_cv);
	if (ended || l->index == 0) {
		atomic_store(&s->catchup_until_ms, (long long)(now + CATCHUP_MS));
		request_tick_locked(s, true);
	}
	pthread_mutex_unlock(&s->mu);
}

/* A down lane's turn to try again: its backoff is over, or another lane
 * found the catalog back since this one last failed. */
static bool
retry_due(lane *l)
{
	return (coord_reconnect_due(
	    &l->rc, coffer_clock_monotonic_ms(), (int64_t)atomic_load(&l->s->recovered_ms)));
}

static void
try_reconnect(lane *l)
{
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_reconnect_try(&l->rc, l->cat, &err) == COORD_RECONNECT_BACK) {
		lane_back(l);
		return;
	}
	/* Once the backoff is at its cap, say why every time (every
	 * COORD_RECONNECT_MAX_MS): a catalog that is up but has the wrong
	 * schema needs an operator, not patience. */
	coffer_log(l->rc.backoff_ms >= COORD_RECONNECT_MAX_MS ? COFFER_LOG_WARN : COFFER_LOG_DEBUG,
	    "catalog still unreachable", "lane=%d error=%s retry_ms=%lld", l->index, err.msg,
	    (long long)l->rc.backoff_ms);
}

/* The reconnect rule, after every job whatever its kind. */
static coord_reconnect_state
lane_after(lane *l)
{
	char cause[400];
	snprintf(cause, sizeof(cause), "%s", coord_catalog_lost_why(l->cat));
	coffer_err err;
	coffer_err_clear(&err);
	coord_reconnect_state st = coord_reconnect_after(&l->rc, l->cat, &err);
	if (st == COORD_RECONNECT_WENT_DOWN) {
		lane_down(l, err.msg);
	} else if (st == COORD_RECONNECT_REVIVED) {
		coffer_log_info(
		    "catalog connection was lost and is back", "lane=%d cause=%s", l->index, cause);
		/* Another lane may have declared the outage while this one was
		 * idle: this lane reaching the catalog ends it now, not when
		 * the down lane's backoff next lets it try. */
		if (!coord_outage_catalog_up(l->s->outage, NULL)) {
			lane_back(l);
		}
	}
	return (st);
}

/* Conditions are re-evaluated every tick and the alert outbox drained; the
 * audit chain is walked every tenth tick (it grows with history), and a
 * broken chain is itself an alert. */
static void
run_alerts(server *s)
{
	coffer_err err;
	coffer_err_clear(&err);
	int64_t now = coffer_clock_now(NULL);
	if (s->ticks++ % 10 == 0) {
		coord_audit_result ar;
		memset(&ar, 0, sizeof(ar));
		int rc = coord_audit_verify(s->cat, s->key, &ar, &err);
		if (rc == 0 || rc == COFFER_ECORRUPT) {
			s->audit_walked = true;
			s->audit_state.audit_chain_broken = !ar.intact;
			snprintf(s->audit_problem, sizeof(s->audit_problem), "%s", ar.problem);
			s->audit_state.audit_problem = s->audit_problem;
			if (!ar.intact) {
				coffer_log_error("audit chain broken",
				    "chain_seq=%lld problem=\"%s\"", (long long)ar.bad_seq,
				    ar.problem);
			}
		}
		coffer_err_clear(&err);
	}
	/* Rows cut from the chain's end verify as a shorter chain: the DR
	 * copier's check of the heads it exported is what catches them. */
	char dr_problem[256];
	if (s->drcopy != NULL &&
	    coord_drcopy_audit_problem(s->drcopy, dr_problem, sizeof(dr_problem))) {
		s->audit_state.audit_chain_broken = true;
		snprintf(s->audit_problem, sizeof(s->audit_problem), "%s", dr_problem);
		s->audit_state.audit_problem = s->audit_problem;
	}
	/* A restart forgets what was found: "intact" resolves a page only once
	 * this process has walked the chain and the copier has checked the
	 * head it exported (a chain cut short walks clean). */
	s->audit_state.verified =
	    s->audit_walked && (s->drcopy == NULL || coord_drcopy_audit_checked(s->drcopy));
	coord_alerts_stats ast;
	memset(&ast, 0, sizeof(ast));
	if (coord_alerts_evaluate(s->cat, s->key, s->cfg, &s->audit_state, now, &ast, &err) != 0) {
		coffer_log_error("alert evaluation failed", "error=%s", err.msg);
		coffer_err_clear(&err);
	} else if (ast.triggered || ast.resolved) {
		coffer_log_info("alerts", "triggered=%d resolved=%d open=%d", ast.triggered,
		    ast.resolved, ast.open);
	}
	if (s->notify != NULL) {
		coord_notify_stats nst;
		memset(&nst, 0, sizeof(nst));
		if (coord_notify_deliver_due(s->notify, s->cat, now, &nst, &err) != 0) {
			coffer_log_error("alert delivery failed", "error=%s", err.msg);
		}
	}
}

/* Before the alerts: a drill failure or a clean sweep found here is
 * delivered by the same tick's notify pass. */
static void
run_drills(server *s)
{
	coffer_err err;
	coffer_err_clear(&err);
	coord_drills_stats st;
	if (coord_drills_tick(s->drills, s->cat, s->key, coffer_clock_now(NULL), &st, &err) != 0) {
		return; /* logged by the drills module, per service */
	}
	if (st.started || st.objects || st.triggered || st.resolved) {
		coffer_log_info("drills",
		    "started=%d not_started=%d objects_checked=%d corrupt=%d "
		    "triggered=%d resolved=%d changes=%d",
		    st.started, st.not_started, st.objects, st.corrupt, st.triggered, st.resolved,
		    st.changes);
	}
}

/* Before the alerts, like the drills: a WAL alert raised here is
 * delivered by the same tick's notify pass. */
static void
run_walwatch(server *s)
{
	coffer_err err;
	coffer_err_clear(&err);
	coord_walwatch_stats st;
	if (coord_walwatch_tick(s->cat, s->key, s->cfg, coffer_clock_now(NULL), &st, &err) != 0) {
		return; /* logged per service */
	}
	if (st.changed) {
		coffer_log_info("wal watch", "services=%d gaps=%d failing=%d lagging=%d changes=%d",
		    st.services, st.gaps, st.failing, st.lagging, st.changed);
	}
}

/* Before the alerts: a copy failure found here pages in the same tick. */
static void
run_drcopy(server *s)
{
	if (s->drcopy == NULL) {
		return;
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_drcopy_stats st;
	if (coord_drcopy_tick(s->drcopy, s->cat, coffer_clock_now(NULL), &st, &err) != 0) {
		return; /* logged per service */
	}
	if (st.planned || st.triggered || st.resolved) {
		coffer_log_info("dr copy", "planned=%d triggered=%d resolved=%d", st.planned,
		    st.triggered, st.resolved);
	}
}

/* events and refusals older than their keep go, in bounded batches. */
static void
run_history(server *s)
{
	coffer_err err;
	coffer_err_clear(&err);
	coord_history_stats st;
	if (coord_history_prune(s->cat, s->key, s->cfg->events_keep_ms, s->cfg->refusals_keep_ms,
	        coffer_clock_now(NULL), &st, &err) != 0) {
		coffer_log_error("history pruning failed", "error=%s", err.msg);
		return;
	}
	if (st.events > 0 || st.refusals > 0) {
		coffer_log_info("history pruned", "events=%llu refusals=%llu more=%s",
		    (unsigned long long)st.events, (unsigned long long)st.refusals,
		    st.more ? "true" : "false");
	}
}

static void
serve_tick(server *s)
{
	coffer_err err;
	coffer_err_clear(&err);
	/* Every policy load is audited before anything is decided under it. */
	if (coord_policy_sync(s->cat, s->key, "coordinator", s->cfg, &err) != 0) {
		coffer_log_error("policy sync failed", "error=%s", err.msg);
		return;
	}
	if (!s->policy_synced) {
		coffer_log_info("policy loaded", "services=%zu", s->cfg->n_services);
		s->policy_synced = true;
	}
	/* Outages the catalog could not hear about while they lasted. */
	if (coord_outage_audit(s->outage, s->cat, NULL, &err) != 0) {
		coffer_log_error("catalog outage not audited yet", "error=%s", err.msg);
		coffer_err_clear(&err);
	}
	run_history(s);
	if (!coord_catalog_ok(s->cat)) {
		return;
	}
	/* Every pass below fails at once on a lost connection: stop at the
	 * first one that finds it, and let the reconnect rule take over. */
	run_drills(s);
	if (!coord_catalog_ok(s->cat)) {
		return;
	}
	run_walwatch(s);
	if (!coord_catalog_ok(s->cat)) {
		return;
	}
	run_drcopy(s);
	if (!coord_catalog_ok(s->cat)) {
		return;
	}
	if (s->repo == NULL) {
		run_alerts(s);
		if (!s->repo_warned) {
			coffer_log_warn("retention not running: no [repository.primary]", NULL);
			s->repo_warned = true;
		}
		return;
	}
	run_alerts(s);
	if (!coord_catalog_ok(s->cat)) {
		return;
	}
	coord_prune_stats st;
	memset(&st, 0, sizeof(st));
	if (coord_retention_pass(
	        s->cat, s->key, s->cfg, s->repo, coffer_clock_now(NULL), &st, &err) != 0) {
		coffer_log_error("retention pass failed", "error=%s", err.msg);
		return;
	}
	if (st.marked || st.cancelled || st.deleted || st.gone || st.failed || st.orphans) {
		coffer_log_info("retention pass",
		    "marked=%llu cancelled=%llu deleted=%llu gone=%llu "
		    "failed=%llu orphans=%llu orphan_objects=%llu orphan_bytes=%llu",
		    (unsigned long long)st.marked, (unsigned long long)st.cancelled,
		    (unsigned long long)st.deleted, (unsigned long long)st.gone,
		    (unsigned long long)st.failed, (unsigned long long)st.orphans,
		    (unsigned long long)st.orphan_objects, (unsigned long long)st.orphan_bytes);
	}
	/* After the backups' pass: a backup it deleted no longer holds WAL. */
	coord_walprune_stats wst;
	if (coord_walprune_pass(
	        s->cat, s->key, s->cfg, s->repo, coffer_clock_now(NULL), &wst, &err) != 0) {
		return; /* logged per service */
	}
}

/* Lane 0 (or the loop thread once the lanes stopped): the gate's ended
 * periods into the audit log, one row per peer and reason. */
static void
flush_refusals(server *s, bool all)
{
	if (s->gate == NULL || s->cat == NULL || !coord_catalog_ok(s->cat)) {
		return;
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_gate_flush_stats st;
	if (coord_gate_flush(s->gate, s->cat, s->key, all, &st, &err) != 0) {
		coffer_log_warn(
		    "refusals not audited yet; kept for the next pass", "error=%s", err.msg);
	} else if (st.audit_rows > 0) {
		coffer_log_info("refusals audited", "rows=%u refusals=%llu", st.audit_rows,
		    (unsigned long long)st.refusals);
	}
}

static void
count_intake(server *s, coord_metrics_intake result)
{
	atomic_fetch_add(&s->intake[result], 1);
}

static void
serve_job(lane *l, job *j)
{
	server *s = l->s;
	coffer_err err;
	coffer_err_clear(&err);
	if (retry_due(l)) {
		try_reconnect(l);
	}
	if (j->kind == JOB_TICK) {
		/* A pass that found its connection dead (the catalog restarted
		 * since the last one) stopped early: it runs again at once on
		 * the new connection rather than at the next tick. */
		for (int attempt = 0; attempt < 2 && !l->rc.down; attempt++) {
			serve_tick(s);
			if (lane_after(l) != COORD_RECONNECT_REVIVED) {
				break;
			}
		}
		return;
	}
	if (j->kind == JOB_FLUSH) {
		if (!l->rc.down) {
			flush_refusals(s, false);
			(void)lane_after(l);
		}
		return;
	}
	if (j->kind == JOB_ADMIN) {
		/* While the catalog is down the admin handler's own queries fail
		 * and it answers with that error: operators see why. */
		if (coord_admin_handle(
		        l->cat, s->cfg, s->key, j->req, j->len, &j->out, &j->out_len) != 0) {
			j->out = NULL;
		}
		/* It may have enrolled or revoked an agent. */
		coord_gate_invalidate(s->gate);
		(void)lane_after(l);
		return;
	}
	if (l->rc.down) {
		count_intake(s, COORD_METRICS_INTAKE_UNAVAILABLE);
		if (coord_intake_reply_status(l->intake, j->req, j->len,
		        COFFER__V1__STATUS__STATUS_UNAVAILABLE,
		        "the catalog is unreachable; keep the events and retry later", &j->out,
		        &j->out_len, &err) != 0) {
			j->out = NULL;
		}
		return;
	}
	coord_intake_result res;
	memset(&res, 0, sizeof(res));
	for (int attempt = 0; attempt < 2; attempt++) {
		if (coord_intake_handle(l->intake, j->req, j->len, j->peer, &j->out, &j->out_len,
		        &res, &err) != 0) {
			coffer_log_error("cannot build a reply", "error=%s", err.msg);
			j->out = NULL;
		}
		/* A catalog restarted while we were idle: only the first
		 * statement finds the old connection dead. Nothing of the
		 * request was applied (its transaction died with the
		 * connection), so the rule's immediate reconnect and a second
		 * try spare the agent a retry. */
		if (lane_after(l) != COORD_RECONNECT_REVIVED || attempt == 1) {
			break;
		}
		free(j->out);
		j->out = NULL;
	}
	/* No reply built: the agent hears nothing, as from a muted peer. */
	count_intake(s,
	    j->out == NULL                                    ? COORD_METRICS_INTAKE_DROPPED
	        : res.status == COFFER__V1__STATUS__STATUS_OK ? COORD_METRICS_INTAKE_OK
	        : res.status == COFFER__V1__STATUS__STATUS_UNAVAILABLE
	        ? COORD_METRICS_INTAKE_UNAVAILABLE
	        : COORD_METRICS_INTAKE_REFUSED);
	if (res.status == COFFER__V1__STATUS__STATUS_OK && res.applied > 0 &&
	    coffer_clock_monotonic_ms() < (int64_t)atomic_load(&s->catchup_until_ms)) {
		pthread_mutex_lock(&s->mu);
		request_tick_locked(s, true);
		pthread_mutex_unlock(&s->mu);
	}
	if (res.status == COFFER__V1__STATUS__STATUS_OK && res.completed > 0) {
		/* The version of record of a new backup's objects is the one
		 * there now: recorded before anyone else can write over it. */
		coord_drills_record_soon(s->drills, coffer_clock_now(NULL));
	}
	const char *agent = res.agent[0] != '\0' ? res.agent : "-";
	if (res.status == COFFER__V1__STATUS__STATUS_OK) {
		coffer_log_debug("request applied",
		    "agent=%s seq=%llu applied=%u resent=%u rejected=%u acked=%llu", agent,
		    (unsigned long long)res.envelope_seq, res.applied, res.resent, res.rejected,
		    (unsigned long long)res.acked_event_seq);
	} else if (res.status != COFFER__V1__STATUS__STATUS_UNAVAILABLE) {
		/* A flood must not become a flood of log lines: refusals the
		 * gate aggregates are logged once per period with its audit
		 * rows. */
		coffer_log(res.aggregated ? COFFER_LOG_DEBUG : COFFER_LOG_WARN, "request refused",
		    "agent=%s seq=%llu reason=%s peer=%s error=%s", agent,
		    (unsigned long long)res.envelope_seq, coord_intake_reason(res.status),
		    j->peer[0] != '\0' ? j->peer : "-", res.error);
	}
}

static flow **
flow_slot(server *s, uint32_t pipe)
{
	flow **p = &s->flows[pipe % FLOW_HEADS];
	while (*p != NULL && (*p)->pipe != pipe) {
		p = &(*p)->hnext;
	}
	return (p);
}

/* The next intake job in round robin over the flows; mu held. */
static job *
take_intake_job(server *s)
{
	flow *f = s->active_head;
	if (f == NULL) {
		return (NULL);
	}
	s->active_head = f->next_active;
	if (s->active_head == NULL) {
		s->active_tail = NULL;
	}
	job *j = f->head;
	f->head = j->next;
	f->n--;
	if (f->head != NULL) {
		f->next_active = NULL;
		if (s->active_tail != NULL) {
			s->active_tail->next_active = f;
		} else {
			s->active_head = f;
		}
		s->active_tail = f;
	} else {
		flow **slot = flow_slot(s, f->pipe);
		*slot = f->hnext;
		free(f);
	}
	j->next = NULL;
	return (j);
}

/* Queues j on its connection's flow; false when that flow is full (the
 * caller answers it). mu held. */
static bool
put_intake_job(server *s, job *j)
{
	flow **slot = flow_slot(s, j->pipe);
	flow *f = *slot;
	if (f == NULL) {
		if ((f = calloc(1, sizeof(*f))) == NULL) {
			return (false);
		}
		f->pipe = j->pipe;
		*slot = f;
	} else if (f->n >= FLOW_MAX_QUEUED) {
		return (false);
	}
	bool was_idle = f->head == NULL;
	push(&f->head, &f->tail, j);
	f->n++;
	if (was_idle) {
		f->next_active = NULL;
		if (s->active_tail != NULL) {
			s->active_tail->next_active = f;
		} else {
			s->active_head = f;
		}
		s->active_tail = f;
	}
	return (true);
}

/* Takes the next job of lane l's queue, or NULL. Called with s->mu held. */
static job *
take_job(server *s, lane *l)
{
	if (l->index != 0) {
		return (take_intake_job(s));
	}
	job **head = &s->todo_head;
	job **tail = &s->todo_tail;
	job *j = *head;
	if (j != NULL) {
		*head = j->next;
		if (*head == NULL) {
			*tail = NULL;
		}
	}
	return (j);
}

static void *
lane_thread(void *arg)
{
	lane *l = arg;
	server *s = l->s;
	pthread_cond_t *cv = l->index == 0 ? &s->cv : &s->intake_cv;
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		if (l->index != 0 && !l->rc.down &&
		    coord_gate_refresh_claim(s->gate, coffer_clock_monotonic_ms())) {
			pthread_mutex_unlock(&s->mu);
			coffer_err rerr;
			coffer_err_clear(&rerr);
			if (coord_gate_refresh(s->gate, l->cat, &rerr) != 0) {
				coffer_log_debug("agent directory not refreshed",
				    "lane=%d error=%s", l->index, rerr.msg);
			}
			(void)lane_after(l);
			pthread_mutex_lock(&s->mu);
			continue;
		}
		job *j = take_job(s, l);
		if (j == NULL) {
			if (l->rc.down) {
				int64_t wait =
				    coord_reconnect_wait_ms(&l->rc, coffer_clock_monotonic_ms());
				if (wait <= 0 || retry_due(l)) {
					pthread_mutex_unlock(&s->mu);
					try_reconnect(l);
					pthread_mutex_lock(&s->mu);
					continue;
				}
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_sec += wait / 1000;
				ts.tv_nsec += (long)(wait % 1000) * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(cv, &s->mu, &ts);
			} else {
				pthread_cond_wait(cv, &s->mu);
			}
			continue;
		}
		if (j->kind == JOB_TICK) {
			s->tick_running = true;
		}
		pthread_mutex_unlock(&s->mu);
		serve_job(l, j);
		pthread_mutex_lock(&s->mu);
		if (j->kind == JOB_FLUSH) {
			s->flush_queued = false;
		}
		if (j->kind == JOB_TICK) {
			s->tick_queued = false;
			s->tick_running = false;
			if (s->tick_again) {
				s->tick_again = false;
				request_tick_locked(s, false);
			}
		}
		push(&s->done_head, &s->done_tail, j);
		if (!s->stop) {
			uv_async_send(&s->done_async);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return (NULL);
}

/* ---- loop thread ---- */

static void
on_done(uv_async_t *h)
{
	server *s = h->data;
	pthread_mutex_lock(&s->mu);
	job *j = s->done_head;
	s->done_head = s->done_tail = NULL;
	pthread_mutex_unlock(&s->mu);
	while (j != NULL) {
		job *next = j->next;
		if (j->kind == JOB_TICK || j->kind == JOB_FLUSH) {
			free(j);
			j = next;
			continue;
		}
		if (j->out != NULL) {
			coffer_err err;
			if (coffer_net_reply_send(j->reply, j->out, j->out_len, &err) != 0 &&
			    err.code != COFFER_ECANCELED) {
				coffer_log_warn("reply not sent", "error=%s", err.msg);
			}
		} else {
			coffer_net_reply_drop(j->reply);
		}
		free(j->out);
		free(j);
		j = next;
	}
}

/* Answers a request on the loop thread without a lane: "slow down". */
static void
answer_now(server *s, coffer_net_reply *reply, const char *peer, const char *line)
{
	coord_gate_refused(s->gate, peer, COORD_GATE_RATE_LIMITED, "", line);
	count_intake(s, COORD_METRICS_INTAKE_UNAVAILABLE);
	uint8_t *out = NULL;
	size_t out_len = 0;
	coffer_err err;
	if (coord_gate_reply(COFFER__V1__STATUS__STATUS_UNAVAILABLE, line, &out, &out_len, &err) !=
	    0) {
		coffer_net_reply_drop(reply);
		return;
	}
	(void)coffer_net_reply_send(reply, out, out_len, &err);
	free(out);
}

static void
enqueue(server *s, job_kind kind, coffer_net_reply *reply, const uint8_t *req, size_t len,
    const coffer_net_peer *peer)
{
	job *j = s->stopping ? NULL : calloc(1, sizeof(*j));
	if (j == NULL) {
		coffer_net_reply_drop(reply);
		return;
	}
	j->kind = kind;
	j->reply = reply;
	j->req = req;
	j->len = len;
	snprintf(j->peer, sizeof(j->peer), "%s", peer->addr);
	j->pipe = peer->pipe_id;
	pthread_mutex_lock(&s->mu);
	if (kind == JOB_AGENT) {
		if (!put_intake_job(s, j)) {
			pthread_mutex_unlock(&s->mu);
			answer_now(s, reply, peer->addr,
			    "too many requests waiting on this connection; keep the events and retry "
			    "later");
			free(j);
			return;
		}
		pthread_cond_signal(&s->intake_cv);
	} else {
		push(&s->todo_head, &s->todo_tail, j);
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

static void
on_request(
    void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len, const coffer_net_peer *peer)
{
	server *s = arg;
	/* A peer that spent its refusal budget costs one lookup from here on:
	 * nothing is decoded, queued or answered. Silence, not "slow down":
	 * a request-reply client cannot send again on a context until its
	 * request times out, so a flooder is slowed to its own timeouts
	 * instead of being served as fast as it asks. Still counted. */
	if (!s->stopping &&
	    coord_gate_peer_muted(s->gate, peer->addr, coffer_clock_monotonic_ms())) {
		char ip[COFFER_NET_PEER_ADDR_MAX], line[200];
		coord_gate_peer_ip(peer->addr, ip, sizeof(ip));
		snprintf(line, sizeof(line),
		    "too many refused requests from %s; not answered until its budget refills", ip);
		coord_gate_refused(s->gate, peer->addr, COORD_GATE_RATE_LIMITED, "", line);
		count_intake(s, COORD_METRICS_INTAKE_DROPPED);
		coffer_net_reply_drop(reply);
		return;
	}
	enqueue(s, JOB_AGENT, reply, req, len, peer);
}

/* A new CRL (or SIGHUP): both listeners get a TLS config built from the
 * files as they are now. NNG 1.5.2 cannot change a running listener's
 * config, so each listener is replaced and its connections closed: every
 * peer handshakes again, and one whose certificate the CRL lists is
 * refused there. A CRL that does not load keeps the old listeners. */
static void
reload_tls(server *s, const char *why)
{
	if (s->stopping) {
		return;
	}
	coffer_err err;
	coffer_err_clear(&err);
	int rv = coffer_net_server_reload_tls(s->net, &s->ncfg.tls, &err);
	if (rv == 0 && s->admin_net != NULL) {
		rv = coffer_net_server_reload_tls(s->admin_net, &s->ncfg.tls, &err);
	}
	if (rv != 0) {
		coffer_log_error("tls config not reloaded; the listeners keep the previous one",
		    "why=%s error=%s", why, err.msg);
		return;
	}
	coffer_log_info("tls config reloaded; connections re-handshake", "why=%s crl=%s", why,
	    s->ncfg.tls.crl != NULL ? s->ncfg.tls.crl : "-");
}

static void
on_crl_change(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr)
{
	(void)prev;
	(void)curr;
	if (status == 0) {
		reload_tls(h->data, "crl changed");
	}
}

static void
on_sighup(uv_signal_t *h, int signum)
{
	(void)signum;
	reload_tls(h->data, "sighup");
}

static void
on_flush_timer(uv_timer_t *t)
{
	server *s = t->data;
	if (s->stopping) {
		return;
	}
	pthread_mutex_lock(&s->mu);
	if (!s->flush_queued && !s->stop) {
		job *j = calloc(1, sizeof(*j));
		if (j != NULL) {
			j->kind = JOB_FLUSH;
			s->flush_queued = true;
			push(&s->todo_head, &s->todo_tail, j);
			pthread_cond_signal(&s->cv);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

static void
on_admin_request(
    void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len, const coffer_net_peer *peer)
{
	enqueue(arg, JOB_ADMIN, reply, req, len, peer);
}

static void
on_tick(uv_timer_t *t)
{
	server *s = t->data;
	if (s->stopping) {
		return;
	}
	pthread_mutex_lock(&s->mu);
	/* A slow pass is not stacked up behind itself. */
	request_tick_locked(s, false);
	pthread_mutex_unlock(&s->mu);
}

static void
drop_all(job *j)
{
	while (j != NULL) {
		job *next = j->next;
		if (j->reply != NULL) {
			coffer_net_reply_drop(j->reply);
		}
		free(j->out);
		free(j);
		j = next;
	}
}

static void
shutdown_server(server *s, const char *why)
{
	if (s->stopping) {
		return;
	}
	s->stopping = true;
	coffer_log_info("coordinator stopping", "why=%s", why);
	coffer_sd_stopping("stopping");
	coffer_sd_loop_stop(&s->sd);
	uv_timer_stop(&s->tick_timer);
	uv_close((uv_handle_t *)&s->tick_timer, NULL);
	uv_timer_stop(&s->flush_timer);
	uv_close((uv_handle_t *)&s->flush_timer, NULL);
	if (s->crl_polling) {
		uv_fs_poll_stop(&s->crl_poll);
		uv_close((uv_handle_t *)&s->crl_poll, NULL);
		s->crl_polling = false;
	}
	uv_signal_stop(&s->sighup);
	uv_close((uv_handle_t *)&s->sighup, NULL);
	coffer_net_server_stop(s->net);
	if (s->admin_net != NULL) {
		coffer_net_server_stop(s->admin_net);
	}
	if (s->http != NULL) {
		coord_http_stop(s->http, NULL, NULL);
		s->http = NULL;
	}
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_cond_broadcast(&s->intake_cv);
	pthread_mutex_unlock(&s->mu);
	/* Waits for at most the request in hand on each lane (bounded by
	 * libpq's own timeouts); the loop has nothing else left to serve. */
	for (int i = 0; i < s->n_lanes; i++) {
		if (s->lanes[i].started) {
			pthread_join(s->lanes[i].thread, NULL);
			s->lanes[i].started = false;
		}
	}
	drop_all(s->todo_head);
	job *j;
	while ((j = take_intake_job(s)) != NULL) {
		drop_all(j);
	}
	drop_all(s->done_head);
	s->todo_head = s->todo_tail = s->done_head = s->done_tail = NULL;
	/* What the last period refused is written now, not lost. */
	flush_refusals(s, true);
	uv_close((uv_handle_t *)&s->done_async, NULL);
	/* The signal handles stay installed, only unref'd, until the loop has
	 * drained: timeout(1) may deliver SIGTERM twice, and a second one must
	 * not meet the default action. */
	uv_unref((uv_handle_t *)&s->sigterm);
	uv_unref((uv_handle_t *)&s->sigint);
}

static void
on_signal(uv_signal_t *h, int signum)
{
	shutdown_server(h->data, signum == SIGTERM ? "sigterm" : "sigint");
}

/* The catalog part of a scrape, on the metrics connection: 0, or the
 * error (logged). metrics_mu held. */
static int
render_catalog_part(server *s, int64_t now_ms, char **text, size_t *len)
{
	coffer_err err;
	coffer_err_clear(&err);
	if (s->metrics_cat == NULL) {
		s->metrics_cat = coord_catalog_open(s->cfg->catalog, &err);
	} else if (!coord_catalog_ok(s->metrics_cat)) {
		(void)coord_catalog_reconnect(s->metrics_cat, &err);
	}
	int rc = s->metrics_cat != NULL
	    ? coord_metrics_render(s->metrics_cat, now_ms, text, len, &err)
	    : err.code;
	/* The reconnect rule, as on the lanes: a connection that died while
	 * nobody scraped is found by this render; one retry at once. */
	coord_reconnect rcn = { 0 };
	if (rc != 0 && s->metrics_cat != NULL &&
	    coord_reconnect_after(&rcn, s->metrics_cat, &err) == COORD_RECONNECT_REVIVED) {
		coffer_err_clear(&err);
		rc = coord_metrics_render(s->metrics_cat, now_ms, text, len, &err);
	}
	if (rc != 0) {
		coffer_log_warn("metrics not read from the catalog; serving the last values read",
		    "error=%s", err.msg);
	}
	return (rc);
}

/* The scrape always answers 200: what the coordinator knows in memory
 * (coffer_catalog_up from the lanes' view, build, intake and outage
 * counters) leads the page, then the catalog's families as read now or,
 * when they cannot be read, as last read, with their age. While the lanes
 * know the catalog is down the renderer does not try it (a scrape must not
 * sit in connect timeouts); they are the ones that find it back. */
static int
render_metrics(void *arg, char **text, size_t *len)
{
	server *s = arg;
	*text = NULL;
	*len = 0;
	coord_metrics_live live;
	memset(&live, 0, sizeof(live));
	live.started_ms = s->started_ms;
	live.services_configured = s->cfg->n_services;
	live.bounds = s->bounds;
	coord_metrics_alert_bounds(s->cfg, live.alert_bounds);
	live.catalog_outages = atomic_load(&s->catalog_outages);
	for (int r = 0; r < COORD_METRICS_INTAKE_N; r++) {
		live.intake[r] = atomic_load(&s->intake[r]);
	}
	int64_t since = 0;
	bool up = coord_outage_catalog_up(s->outage, &since);
	live.outage_since_ms = up ? 0 : since;
	pthread_mutex_lock(&s->metrics_mu);
	live.now_ms = coffer_clock_now(NULL);
	int rc = COFFER_EUNAVAIL;
	if (up) {
		char *fresh = NULL;
		size_t fresh_len = 0;
		rc = render_catalog_part(s, live.now_ms, &fresh, &fresh_len);
		if (rc == 0) {
			free(s->metrics_last);
			s->metrics_last = fresh;
			s->metrics_last_len = fresh_len;
			s->metrics_last_ms = live.now_ms;
		}
	}
	live.catalog_up = up && rc != COFFER_EUNAVAIL;
	live.catalog_read_ms = s->metrics_last != NULL ? s->metrics_last_ms : 0;
	int rv = coord_metrics_compose(&live, s->metrics_last, s->metrics_last_len, text, len);
	pthread_mutex_unlock(&s->metrics_mu);
	return (rv);
}

/* /status: the same connection as /metrics, and the same rule while the
 * lanes know the catalog is down (no connect timeouts; the page says so
 * from what it knows). */
static int
render_status(void *arg, char **html, size_t *len, int *status)
{
	server *s = arg;
	int64_t since = 0;
	bool up = coord_outage_catalog_up(s->outage, &since);
	pthread_mutex_lock(&s->metrics_mu);
	if (up) {
		coffer_err err;
		coffer_err_clear(&err);
		if (s->metrics_cat == NULL) {
			s->metrics_cat = coord_catalog_open(s->cfg->catalog, &err);
		} else if (!coord_catalog_ok(s->metrics_cat)) {
			(void)coord_catalog_reconnect(s->metrics_cat, &err);
		}
	}
	int rv = coord_statuspage_render(s->statuspage, s->metrics_cat, up, up ? 0 : since,
	    coffer_clock_now(NULL), html, len, status);
	pthread_mutex_unlock(&s->metrics_mu);
	return (rv);
}

/* /healthz, on the loop thread: never blocks. */
static int
health(void *arg, char *body, size_t size)
{
	server *s = arg;
	int64_t since = 0;
	if (coord_outage_catalog_up(s->outage, &since)) {
		snprintf(body, size, "ok\n");
		return (200);
	}
	char t[40];
	int64_t now = coffer_clock_now(NULL);
	snprintf(body, size, "catalog unreachable since %s (%llds): not acking agents\n",
	    coffer_time_format(t, sizeof(t), since), (long long)((now - since) / 1000));
	return (503);
}

/*
 * The primary bucket must keep versions (docs/S3.md, "No silent
 * replacement"): without them a principal that may write there can replace
 * a backup's objects and nothing can tell the original from the
 * replacement. Refused at start unless the operator says otherwise.
 */
static int
check_versioned(const coord_config *cfg, coffer_repo *repo, const char *bucket, coffer_err *err)
{
	coffer_repo_versioning v = COFFER_REPO_VERSIONING_NONE;
	coffer_err e;
	coffer_err_clear(&e);
	int rv = coffer_repo_versioning_get(repo, &v, &e);
	if (rv == 0 && (v == COFFER_REPO_VERSIONING_NONE || v == COFFER_REPO_VERSIONING_ENABLED)) {
		return (0); /* posix keeps none and isolates by file modes */
	}
	bool ok = coffer_config_bool(cfg->ini, "repository.primary", "unversioned_ok");
	const char *state = rv != 0                 ? "unknown"
	    : v == COFFER_REPO_VERSIONING_SUSPENDED ? "suspended"
	                                            : "never enabled";
	if (ok) {
		coffer_log_warn(
		    "the primary bucket keeps no object versions (unversioned_ok = true): "
		    "a replaced backup object cannot be told from the original",
		    "bucket=%s versioning=%s error=%s", bucket, state, rv != 0 ? e.msg : "-");
		return (0);
	}
	if (rv != 0) {
		coffer_err_set(err, rv,
		    "cannot read the versioning of primary bucket %s, so the coordinator cannot tell "
		    "a replaced backup object from the original: %.300s",
		    bucket, e.msg);
		return (coffer_err_hint(err,
		    "%s; or set unversioned_ok = true in "
		    "[repository.primary] to start without the check",
		    e.hint[0] != '\0' ? e.hint : "allow s3:GetBucketVersioning"));
	}
	coffer_err_set(err, COFFER_EREFUSED,
	    "primary bucket %s does not keep object versions (versioning %s): a backup's objects "
	    "could be replaced without trace (rule: the primary bucket is versioned or "
	    "object-locked, docs/S3.md)",
	    bucket, state);
	return (coffer_err_hint(err,
	    "enable versioning as the bucket's owner: aws s3api put-bucket-versioning --bucket "
	    "%s --versioning-configuration Status=Enabled (radosgw: the same call with "
	    "--endpoint-url); or set unversioned_ok = true in [repository.primary] to accept "
	    "the risk",
	    bucket));
}

/* The coordinator's handle on the primary repository has the delete
 * capability the agents' handles lack: retention is its job alone. */
static int
open_primary(const coord_config *cfg, coffer_repo **out, coffer_err *err)
{
	coffer_repo_config rc;
	if (coord_config_repo(cfg, "primary", &rc, err) != 0) {
		return (err->code);
	}
	if (coffer_repo_open(
	        &rc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, out, err) != 0) {
		return (coffer_err_wrap(err, "[repository.primary]"));
	}
	return (check_versioned(cfg, *out, rc.bucket, err));
}

/* Lane 0 and cfg->intake_workers intake lanes, each connected and its
 * catalog checked: a coordinator that cannot use every connection it will
 * need does not start. */
static int
open_lanes(server *s, const coord_config *cfg, const coord_audit_key *key, coffer_err *err)
{
	int n = 1 + (cfg->intake_workers > 0 ? cfg->intake_workers : 1);
	s->lanes = calloc((size_t)n, sizeof(*s->lanes));
	if (s->lanes == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the coordinator"));
	}
	for (int i = 0; i < n; i++) {
		lane *l = &s->lanes[i];
		l->s = s;
		l->index = i;
		s->n_lanes = i + 1;
		int rv;
		if ((l->cat = coord_catalog_open(cfg->catalog, err)) == NULL) {
			return (err->code);
		}
		if ((rv = coord_catalog_check(l->cat, err)) != 0) {
			return (rv);
		}
		if (i > 0 &&
		    (rv = coord_intake_new(l->cat, key, COFFER_WIRE_MAX_MSG, &l->intake, err)) !=
		        0) {
			return (rv);
		}
		if (i > 0) {
			coord_intake_set_gate(l->intake, s->gate);
		}
	}
	s->cat = s->lanes[0].cat;
	return (0);
}

static void
close_lanes(server *s)
{
	for (int i = 0; i < s->n_lanes; i++) {
		coord_intake_free(s->lanes[i].intake);
		coord_catalog_close(s->lanes[i].cat);
	}
	free(s->lanes);
	s->lanes = NULL;
	s->n_lanes = 0;
	s->cat = NULL;
}

int
coord_server_run(const coord_config *cfg, const coord_audit_key *key, coffer_err *err)
{
	server *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the coordinator"));
	}
	int rv;
	coord_gate_limits lim = {
		.peer_refusals_per_s = (double)cfg->peer_refusal_rate,
		.peer_refusal_burst = (unsigned)cfg->peer_refusal_burst,
		.agent_envelopes_per_s = (double)cfg->agent_envelope_rate,
		.agent_burst = (unsigned)cfg->agent_envelope_burst,
		.period_ms = cfg->refusal_period_ms,
	};
	if ((rv = coord_gate_new(&lim, &s->gate, err)) != 0) {
		free(s);
		return (rv);
	}
	if ((rv = open_lanes(s, cfg, key, err)) != 0 ||
	    (rv = coord_gate_refresh(s->gate, s->lanes[1].cat, err)) != 0 ||
	    (rv = coord_outage_start(cfg, key, &s->outage, err)) != 0) {
		close_lanes(s);
		coord_gate_free(s->gate);
		free(s);
		return (rv);
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->metrics_mu, NULL);
	s->started_ms = coffer_clock_now(NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_cond_init(&s->intake_cv, &ca);
	pthread_condattr_destroy(&ca);
	uv_loop_init(&s->loop);

	coffer_net_server_config ncfg = {
		.url = cfg->listen,
		.tls = {
		    .ca = coffer_config_str(cfg->ini, "tls", "ca"),
		    .cert = coffer_config_str(cfg->ini, "tls", "cert"),
		    .key = coffer_config_str(cfg->ini, "tls", "key"),
		    .crl = cfg->crl,
		},
		.insecure = cfg->insecure,
		.max_msg = COFFER_WIRE_MAX_MSG,
	};
	s->cfg = cfg;
	s->key = key;
	s->ncfg = ncfg;
	/* Everything that can fail on bad configuration first, the listeners
	 * last, so a failed start has only the listeners to undo. */
	if (coffer_config_has_section(cfg->ini, "repository.primary")) {
		rv = open_primary(cfg, &s->repo, err);
	} else {
		rv = 0;
	}
	if (rv == 0) {
		s->notify = coord_notify_new(cfg, key, err);
		if (s->notify == NULL) {
			rv = err->code;
		}
	}
	if (rv == 0 && (rv = coord_drcopy_new(cfg, key, &s->drcopy, err)) == 0 &&
	    s->drcopy != NULL) {
		rv = coord_drcopy_background(s->drcopy, err);
	}
	if (rv == 0) {
		rv = coord_drills_new(cfg, &s->drills, err);
	}
	if (rv == 0) {
		rv = coord_drills_background(s->drills, key, err);
	}
	if (rv == 0) {
		rv = coffer_net_server_start(&s->loop, &ncfg, on_request, s, &s->net, err);
	}
	if (rv == 0 && cfg->admin_listen != NULL) {
		coffer_net_server_config acfg = ncfg;
		acfg.url = cfg->admin_listen;
		rv = coffer_net_server_start(
		    &s->loop, &acfg, on_admin_request, s, &s->admin_net, err);
		if (rv != 0) {
			coffer_err_wrap(err, "admin_listen");
		}
	}
	if (rv == 0 && cfg->metrics_listen != NULL) {
		/* Not fatal: a scrape opens it if this fails. */
		coffer_err merr;
		coffer_err_clear(&merr);
		if (coord_metrics_bounds(cfg, s->started_ms, &s->bounds, &merr) != 0) {
			coffer_log_warn("services' freshness bounds not computed; not exported",
			    "error=%s", merr.msg);
			coffer_err_clear(&merr);
		}
		s->metrics_cat = coord_catalog_open(cfg->catalog, &merr);
		if (s->metrics_cat == NULL) {
			coffer_log_warn(
			    "metrics catalog connection not opened; the first scrape retries",
			    "error=%s", merr.msg);
		}
		s->http = coord_http_start(&s->loop, cfg->metrics_listen, render_metrics, s, err);
		if (s->http == NULL) {
			rv = err->code;
			coffer_err_wrap(err, "metrics_listen");
		} else {
			coord_http_set_health(s->http, health, s);
			coord_http_set_cache(s->http, cfg->metrics_cache_ms);
			s->statuspage = coord_statuspage_new(cfg);
			if (s->statuspage != NULL) {
				coord_http_set_page(s->http, render_status, s);
			}
			char *token = NULL;
			if (cfg->metrics_token_file != NULL &&
			    ((rv = coord_http_token_load(cfg->metrics_token_file, &token, err)) !=
			            0 ||
			        (rv = coord_http_set_token(s->http, token, err)) != 0)) {
				coffer_err_wrap(err, "metrics_token_file");
			}
			if (token != NULL) {
				OPENSSL_cleanse(token, strlen(token));
				free(token);
			}
			if (rv == 0) {
				coffer_log_info("metrics listening",
				    "addr=%s port=%d cache_ms=%lld token=%s", cfg->metrics_listen,
				    coord_http_port(s->http), (long long)cfg->metrics_cache_ms,
				    cfg->metrics_token_file != NULL ? "required" : "none");
			}
		}
	}
	if (rv != 0) {
		if (s->http != NULL) {
			/* Started, then its token refused: it must close, or the
			 * loop below would wait on it for ever. */
			coord_http_stop(s->http, NULL, NULL);
			s->http = NULL;
		}
		if (s->admin_net != NULL) {
			coffer_net_server_stop(s->admin_net);
		}
		if (s->net != NULL) {
			coffer_net_server_stop(s->net);
		}
	}
	if (rv == 0) {
		uv_timer_init(&s->loop, &s->tick_timer);
		s->tick_timer.data = s;
		/* The first pass runs at once: policy changes are audited at start. */
		uv_timer_start(&s->tick_timer, on_tick, 0, (uint64_t)cfg->maintenance_interval_ms);
		/* A period's refusals are audited within a few seconds of its end. */
		uv_timer_init(&s->loop, &s->flush_timer);
		s->flush_timer.data = s;
		uint64_t every = (uint64_t)(cfg->refusal_period_ms / 10);
		every = every < 1000 ? 1000 : every > 5000 ? 5000 : every;
		uv_timer_start(&s->flush_timer, on_flush_timer, every, every);
		/* stat(2) every two seconds: a CRL is replaced by its publisher
		 * (a rename or a copy) with no notice to us. */
		if (cfg->crl != NULL && s->net != NULL) {
			uv_fs_poll_init(&s->loop, &s->crl_poll);
			s->crl_poll.data = s;
			s->crl_polling =
			    uv_fs_poll_start(&s->crl_poll, on_crl_change, cfg->crl, 2000) == 0;
		}
		uv_signal_init(&s->loop, &s->sighup);
		s->sighup.data = s;
		uv_signal_start(&s->sighup, on_sighup, SIGHUP);
		uv_async_init(&s->loop, &s->done_async, on_done);
		s->done_async.data = s;
		uv_signal_init(&s->loop, &s->sigterm);
		uv_signal_init(&s->loop, &s->sigint);
		s->sigterm.data = s->sigint.data = s;
		uv_signal_start(&s->sigterm, on_signal, SIGTERM);
		uv_signal_start(&s->sigint, on_signal, SIGINT);
		int prv = 0;
		for (int i = 0; i < s->n_lanes && prv == 0; i++) {
			prv = pthread_create(&s->lanes[i].thread, NULL, lane_thread, &s->lanes[i]);
			s->lanes[i].started = prv == 0;
		}
		if (prv != 0) {
			rv = coffer_err_set(
			    err, COFFER_ENOMEM, "cannot start a catalog thread: %s", strerror(prv));
			shutdown_server(s, "startup failed");
		} else {
			coffer_log_info("coordinator listening", "url=%s port=%d intake_workers=%d",
			    cfg->listen, coffer_net_server_port(s->net), s->n_lanes - 1);
			if (s->admin_net != NULL) {
				coffer_log_info("admin endpoint listening", "url=%s port=%d",
				    cfg->admin_listen, coffer_net_server_port(s->admin_net));
			}
			/* The catalog's schema was checked (open_lanes), every
			 * listener is bound and the catalog threads run: READY=1
			 * goes out from the loop's first pass. */
			coffer_sd_loop_start(&s->sd, &s->loop, "serving");
		}
	}
	/* Runs until shutdown_server; on a failed start it only lets the wire
	 * server's close callbacks finish. */
	uv_run(&s->loop, UV_RUN_DEFAULT);
	if (rv == 0 || s->stopping) {
		uv_close((uv_handle_t *)&s->sigterm, NULL);
		uv_close((uv_handle_t *)&s->sigint, NULL);
		uv_run(&s->loop, UV_RUN_DEFAULT);
	}
	if (uv_loop_close(&s->loop) != 0) {
		coffer_log_warn("loop closed with handles still open", NULL);
	}
	coord_notify_free(s->notify);
	coord_drills_free(s->drills);
	if (rv == 0 && s->drcopy != NULL) {
		coffer_err xerr;
		coffer_err_clear(&xerr);
		if (coord_drcopy_export_final(s->drcopy, cfg->catalog, &xerr) == 0) {
			coffer_log_info("audit head exported at shutdown", NULL);
		} else {
			coffer_log_warn(
			    "audit head not exported at shutdown", "error=%s", xerr.msg);
		}
	}
	coord_drcopy_free(s->drcopy);
	coord_catalog_close(s->metrics_cat);
	coord_statuspage_free(s->statuspage);
	free(s->metrics_last);
	free(s->bounds);
	pthread_mutex_destroy(&s->metrics_mu);
	coffer_repo_close(s->repo);
	close_lanes(s);
	coord_gate_free(s->gate);
	coord_outage_stop(s->outage);
	pthread_cond_destroy(&s->cv);
	pthread_cond_destroy(&s->intake_cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
	if (rv == 0) {
		coffer_log_info("coordinator stopped", NULL);
	}
	return (rv);
}
