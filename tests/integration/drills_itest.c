/*
 * Driver for tests/integration/drills.sh: the coordinator's side of restore
 * drills and integrity sweeps (coordinator/drill/drills.c) against a real
 * PostgreSQL catalog, a real posix repository and a real HTTP receiver
 * standing in for PagerDuty, with an injected clock. The drill runner and
 * the service agent are played with signed envelopes through the real
 * intake (coord_intake_handle), so ownership refusals go through the same
 * code as on the wire.
 *
 *   drills_itest run CONF
 *	CONF has [repository.primary] (posix), [alerts] pagerduty_url =
 *	http://127.0.0.1:PORT/v2/enqueue (this driver forks the receiver on
 *	PORT), [repository.dr] (posix), [integrity] sweep_interval = 1h,
 *	[service.billing] with retention.grace = 1h, drill.runner = runner-1,
 *	drill.repository = alternate (dr.copy = daily), drill.rto = 5m,
 *	drill.overdue_after = 10m, a daily drill.schedule about 12 hours from
 *	now (UTC), the freshness query and two assertions the driver expects
 *	in RunDrill;
 *	[service.ledger] with drill.runner = runner-2, drill.backup = random,
 *	drill.window = 1h; [service.shop] without drills; [service.orders]
 *	with drill.runner = runner-1 (not enrolled for it); [service.crm] with
 *	drill.runner = billing-1 (a service agent). Prints "ok ..." lines;
 *	exits 1 on the first mismatch.
 *   drills_itest sweep CONF
 *	one integrity sweep now against CONF's catalog and repositories;
 *	prints objects, failures and seconds (for measuring the sweep).
 *   drills_itest receiver LOG PORTFILE
 *	only the receiver (tests/harness/receiver.c), for the end-to-end
 *	scripts: writes its port to PORTFILE and one line per POST to LOG
 *	(stamp, status, path and body) until killed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/crypto/sign.h"
#include "common/repo/repo.h"
#include "common/stream/digest.h"
#include "common/stream/filter.h"
#include "common/wire/wire.h"
#include "coordinator/catalog/agents.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/drill/drills.h"
#include "coordinator/intake/intake.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/policy/prune.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/watch/alerts.h"
#include "coordinator/watch/notify.h"
#include "tests/harness/receiver.h"

#define MINS  (60 * 1000LL)
#define HOURS (60 * MINS)
#define DAYS  (24 * HOURS)

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static pid_t receiver_pid;

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "FAIL drills_itest: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	if (receiver_pid > 0) {
		kill(receiver_pid, SIGTERM);
	}
	/* The failure is the news: not the driver's own allocations. */
	_exit(1);
}

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
ok(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("ok   drills: ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

/* ---- the receiver (tests/harness/receiver.c) ---- */

static int
cmd_receiver(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: drills_itest receiver LOG PORTFILE\n");
		return (2);
	}
	int port = 0;
	pid_t pid = harness_receiver_start(0, argv[2], &port);
	if (pid < 0) {
		die("the receiver did not start");
	}
	FILE *f = fopen(argv[3], "w");
	if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
		kill(pid, SIGTERM);
		die("cannot write %s", argv[3]);
	}
	/* Stay in the foreground so the script's kill reaches the child too. */
	signal(SIGTERM, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sig = 0;
	sigwait(&set, &sig);
	harness_receiver_stop(pid);
	return (0);
}

/* ---- the world ---- */

static coord_config *cfg;
static coord_audit_key akey;
static coord_catalog *cat;
static coord_intake *intake;
static coord_drills *drills;
static coffer_repo *repo;
static PGconn *pg;
static char rx_log[512];
static char repo_root[512];

typedef struct agent {
	const char *name;
	coffer_sign_key *key;
	coffer_sign_pubkey *pub;
	uint64_t env_seq, ev_seq;
} agent;

static agent billing_1 = { .name = "billing-1" };
static agent runner_1 = { .name = "runner-1" };
static agent runner_2 = { .name = "runner-2" };
static agent ledger_1 = { .name = "ledger-1" };

/* The first cell of sql on the check connection, malloc'd ("" for NULL). */
static char *qv(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
qv(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		die("query failed: %s: %s", sql, PQerrorMessage(pg));
	}
	char *v = strdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return (v);
}

static long qn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static long
qn(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	char *v = qv("%s", sql);
	long n = strtol(v, NULL, 10);
	free(v);
	return (n);
}

static void
agent_init(agent *a)
{
	coffer_err err;
	if (coffer_sign_key_generate(&a->key, &err) != 0 ||
	    coffer_sign_key_public(a->key, &a->pub, &err) != 0) {
		die("key for %s: %s", a->name, err.msg);
	}
}

/* One signed envelope with n events through the intake; the reply is
 * returned unpacked (free with coffer__v1__reply__free_unpacked). */
static Coffer__V1__Reply *
send_events(agent *a, Coffer__V1__Event **evs, size_t n, coord_intake_result *res)
{
	Coffer__V1__EventBatch eb = COFFER__V1__EVENT_BATCH__INIT;
	Coffer__V1__Request rq = COFFER__V1__REQUEST__INIT;
	eb.n_events = n;
	eb.events = evs;
	rq.kind_case = COFFER__V1__REQUEST__KIND_EVENTS;
	rq.events = &eb;
	coffer_err err;
	uint8_t *body = NULL, *env_bytes = NULL, *reply = NULL;
	size_t body_len = 0, env_len = 0, reply_len = 0;
	if (coffer_wire_encode(&rq.base, COFFER_WIRE_MAX_MSG, &body, &body_len, &err) != 0) {
		die("encode: %s", err.msg);
	}
	Coffer__V1__Envelope env = COFFER__V1__ENVELOPE__INIT;
	env.version = 1;
	env.agent_id = (char *)a->name;
	env.seq = ++a->env_seq;
	env.sent_at_ms = coffer_clock_now(NULL);
	env.body.data = body;
	env.body.len = body_len;
	uint8_t sig[COFFER_SIGN_BYTES];
	size_t tbs_len;
	uint8_t *tbs = coffer_wire_envelope_tbs(
	    env.agent_id, env.seq, env.sent_at_ms, body, body_len, &tbs_len);
	if (tbs == NULL || coffer_sign(a->key, tbs, tbs_len, sig, &err) != 0) {
		die("sign");
	}
	free(tbs);
	env.signature.data = sig;
	env.signature.len = sizeof(sig);
	if (coffer_wire_encode(&env.base, COFFER_WIRE_MAX_MSG, &env_bytes, &env_len, &err) != 0) {
		die("encode envelope: %s", err.msg);
	}
	free(body);
	if (coord_intake_handle(
	        intake, env_bytes, env_len, "127.0.0.1:1", &reply, &reply_len, res, &err) != 0) {
		die("intake: %s", err.msg);
	}
	free(env_bytes);
	Coffer__V1__Reply *r = coffer__v1__reply__unpack(NULL, reply_len, reply);
	free(reply);
	if (r == NULL) {
		die("the reply does not decode");
	}
	return (r);
}

/* Everything the events are built from, freed at the end: the events use
 * protobuf-c's struct layout, so its free of unpacked messages cannot
 * free them. */
static void *kept[4096];
static size_t n_kept;

static void *
keep(void *p)
{
	if (p == NULL || n_kept == sizeof(kept) / sizeof(kept[0])) {
		die("out of memory building test events");
	}
	kept[n_kept++] = p;
	return (p);
}

static void *
tcalloc(size_t n, size_t size)
{
	return (keep(calloc(n, size)));
}

static void *
tmalloc(size_t size)
{
	return (keep(malloc(size)));
}

static char *
tstrdup(const char *s)
{
	return (keep(strdup(s)));
}

static void
free_kept(void)
{
	while (n_kept > 0) {
		free(kept[--n_kept]);
	}
}

static Coffer__V1__Event *
ev_new(agent *a, const char *service, bool durable)
{
	Coffer__V1__Event *e = tcalloc(1, sizeof(*e));
	coffer__v1__event__init(e);
	e->seq = durable ? ++a->ev_seq : 0;
	e->service = tstrdup(service);
	e->occurred_at_ms = coffer_clock_now(NULL);
	return (e);
}

static Coffer__V1__Event *
ev_hello(agent *a, const char *service, const char *sysid)
{
	Coffer__V1__Event *e = ev_new(a, service, false);
	Coffer__V1__AgentHello *h = tcalloc(1, sizeof(*h));
	coffer__v1__agent_hello__init(h);
	h->version = tstrdup("test");
	h->pg_version = tstrdup("150004");
	h->system_identifier = tstrdup(sysid);
	h->hostname = tstrdup("db-1");
	h->key_id = tstrdup("k1");
	e->kind_case = COFFER__V1__EVENT__KIND_HELLO;
	e->hello = h;
	return (e);
}

static Coffer__V1__Event *
ev_started(agent *a, const char *service, const char *id)
{
	Coffer__V1__Event *e = ev_new(a, service, true);
	Coffer__V1__BackupStarted *b = tcalloc(1, sizeof(*b));
	coffer__v1__backup_started__init(b);
	b->backup_id = tstrdup(id);
	b->kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	e->kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
	e->backup_started = b;
	return (e);
}

static Coffer__V1__Event *
ev_completed(agent *a, const char *service, const char *id, const uint8_t stored[32],
    uint64_t stored_bytes, const uint8_t manifest[32], int64_t finished_ms)
{
	Coffer__V1__Event *e = ev_new(a, service, true);
	Coffer__V1__BackupCompleted *c = tcalloc(1, sizeof(*c));
	coffer__v1__backup_completed__init(c);
	c->backup_id = tstrdup(id);
	c->kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	c->started_at_ms = finished_ms - 1000;
	c->finished_at_ms = finished_ms;
	c->plain_bytes = stored_bytes * 2;
	c->stored_bytes = stored_bytes;
	c->stored_sha256.data = tmalloc(32);
	memcpy(c->stored_sha256.data, stored, 32);
	c->stored_sha256.len = 32;
	c->manifest_sha256.data = tmalloc(32);
	memcpy(c->manifest_sha256.data, manifest, 32);
	c->manifest_sha256.len = 32;
	c->key_id = tstrdup("k1");
	c->repository = tstrdup("primary");
	c->pg_version = tstrdup("150004");
	c->system_identifier = tstrdup("7301234567890123456");
	e->kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
	e->backup_completed = c;
	return (e);
}

/* checks: "name=1,name=0:detail,..." */
static Coffer__V1__Event *
ev_result(agent *a, const char *service, uint64_t drill_id, const char *backup_id, bool okv,
    const char *checks, int64_t restore_ms, const char *failure)
{
	Coffer__V1__Event *e = ev_new(a, service, true);
	Coffer__V1__DrillResult *r = tcalloc(1, sizeof(*r));
	coffer__v1__drill_result__init(r);
	r->drill_id = drill_id;
	r->backup_id = tstrdup(backup_id);
	r->repository = tstrdup("primary");
	r->ok = okv;
	r->restore_ms = restore_ms;
	r->total_ms = restore_ms + 1500;
	char sandbox[128];
	snprintf(sandbox, sizeof(sandbox), "coffer_drill_%s_%" PRIu64, service, drill_id);
	r->sandbox = tstrdup(sandbox);
	r->service = tstrdup(service);
	r->failure = tstrdup(failure != NULL ? failure : "");
	r->backup_finished_at_ms = coffer_clock_now(NULL) - 60000;
	char *copy = tstrdup(checks), *save = NULL; /* kept: the names point into it */
	r->checks = tcalloc(16, sizeof(*r->checks));
	for (char *t = strtok_r(copy, ",", &save); t != NULL && r->n_checks < 16;
	     t = strtok_r(NULL, ",", &save)) {
		Coffer__V1__CheckResult *c = tcalloc(1, sizeof(*c));
		coffer__v1__check_result__init(c);
		char *eq = strchr(t, '=');
		*eq = '\0';
		char *detail = strchr(eq + 1, ':');
		c->name = tstrdup(t);
		c->ok = eq[1] == '1';
		c->detail = tstrdup(detail != NULL ? detail + 1 : "fine");
		r->checks[r->n_checks++] = c;
	}

	e->kind_case = COFFER__V1__EVENT__KIND_DRILL_RESULT;
	e->drill_result = r;
	return (e);
}

static Coffer__V1__Event *
ev_done(agent *a, const char *service, uint64_t command_id, bool okv, const char *detail)
{
	Coffer__V1__Event *e = ev_new(a, service, true);
	Coffer__V1__CommandDone *d = tcalloc(1, sizeof(*d));
	coffer__v1__command_done__init(d);
	d->command_id = command_id;
	d->ok = okv;
	d->detail = tstrdup(detail);
	d->backup_id = tstrdup("");
	e->kind_case = COFFER__V1__EVENT__KIND_COMMAND_DONE;
	e->command_done = d;
	return (e);
}

static void
expect_status(agent *a, Coffer__V1__Event **evs, size_t n, int want, const char *what,
    Coffer__V1__Reply **keep)
{
	coord_intake_result res;
	Coffer__V1__Reply *r = send_events(a, evs, n, &res);
	if ((int)r->status != want) {
		die("%s: status %s (%s), want %s", what, coord_intake_reason((int)r->status),
		    r->error, coord_intake_reason(want));
	}
	if (keep != NULL) {
		*keep = r;
	} else {
		coffer__v1__reply__free_unpacked(r, NULL);
	}
}

/* Writes an object into the repository; digest and size out. */
static void
put_object(const char *service, const char *id, const char *name, const char *text, uint8_t sha[32],
    uint64_t *bytes)
{
	coffer_err err;
	char key[COFFER_REPO_KEY_MAX];
	coffer_filter *sink = NULL;
	if (coffer_repo_backup_key(key, sizeof(key), service, id, name, &err) != 0 ||
	    coffer_repo_write_begin(repo, key, &sink, &err) != 0) {
		die("repo write %s: %s", key, err.msg);
	}
	coffer_filter *c = coffer_count_filter_new(sink, &err);
	coffer_filter *d = coffer_sha256_filter_new(c, &err);
	if (d == NULL) {
		die("filters: %s", err.msg);
	}
	coffer_filter *chain = d;
	/* Enough bytes to need several reads of the sweep's stream. */
	for (int i = 0; i < 4096; i++) {
		if (coffer_filter_write(chain, text, strlen(text), &err) != 0) {
			die("repo write: %s", err.msg);
		}
	}
	if (coffer_filter_finish(chain, &err) != 0 || coffer_repo_write_commit(sink, &err) != 0) {
		die("repo commit: %s", err.msg);
	}
	coffer_sha256_filter_digest(d, sha);
	*bytes = coffer_count_filter_bytes(c);
	coffer_filter_free_chain(chain);
}

/* Copies a backup's objects into [repository.dr] as a DR copy would. */
static void
copy_to_dr(const char *id)
{
	coffer_err err;
	coffer_repo_config rc = { .type = "posix",
		.path = coffer_config_str(cfg->ini, "repository.dr", "path") };
	coffer_repo *dr = NULL;
	if (coffer_repo_open(&rc, COFFER_REPO_WRITE, &dr, &err) != 0) {
		die("dr repo: %s", err.msg);
	}
	const char *names[] = { "data", "manifest.json" };
	for (int i = 0; i < 2; i++) {
		char key[COFFER_REPO_KEY_MAX];
		coffer_filter *sink = NULL;
		if (coffer_repo_backup_key(key, sizeof(key), "billing", id, names[i], &err) != 0 ||
		    coffer_repo_write_begin(dr, key, &sink, &err) != 0 ||
		    coffer_repo_read(repo, key, sink, &err) != 0 ||
		    coffer_repo_write_commit(sink, &err) != 0) {
			die("copying %s to dr: %s", key, err.msg);
		}
		coffer_filter_free(sink);
	}
	coffer_repo_close(dr);
}

/* A completed backup of service by agent a, with real objects in the
 * repository. */
static void
make_backup_of(agent *a, const char *service, const char *id, int64_t finished_ms)
{
	uint8_t data_sha[32], man_sha[32];
	uint64_t data_bytes, man_bytes;
	put_object(service, id, "data", "sealed bytes of a dump ", data_sha, &data_bytes);
	put_object(service, id, "manifest.json", "{\"manifest\":1}", man_sha, &man_bytes);
	Coffer__V1__Event *evs[] = { ev_started(a, service, id),
		ev_completed(a, service, id, data_sha, data_bytes, man_sha, finished_ms) };
	expect_status(a, evs, 2, COFFER__V1__STATUS__STATUS_OK, "a backup", NULL);
	/* The objects are stand-ins, not a signed manifest: the coordinator's
	 * verification (verify.sh tests it) is taken as done, since drills
	 * choose only verified backups. */
	free(qv("UPDATE backups SET verify_state = 'verified', verified_at = now() WHERE id = '%s' "
	        "RETURNING id",
	    id));
}

static void
make_backup(const char *id, int64_t finished_ms)
{
	make_backup_of(&billing_1, "billing", id, finished_ms);
}

/* The maintenance tick of d (its configuration) at now_ms. */
static coord_drills_stats
tick_of(coord_drills *d, int64_t now_ms)
{
	coord_drills_stats st;
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_drills_tick(d, cat, &akey, now_ms, &st, &err) != 0) {
		die("tick: %s", err.msg);
	}
	return (st);
}

static coord_drills_stats
tick(int64_t now_ms)
{
	return (tick_of(drills, now_ms));
}

static const char *
alert_state(const char *dedup)
{
	static char out[32];
	char *v =
	    qv("SELECT COALESCE((SELECT state FROM alerts WHERE dedup_key = '%s'), 'none')", dedup);
	snprintf(out, sizeof(out), "%s", v);
	free(v);
	return (out);
}

static void
expect_alert(const char *dedup, const char *want, const char *when)
{
	if (strcmp(alert_state(dedup), want) != 0) {
		die("%s is %s %s, want %s", dedup, alert_state(dedup), when, want);
	}
}

static void
expect_backup(const char *id, const char *want)
{
	char *got = qv("SELECT status FROM backups WHERE id = '%s'", id);
	if (strcmp(got, want) != 0) {
		die("backup %s is %s, want %s", id, got, want);
	}
	free(got);
}

/* The real retention pass (coordinator/policy/prune.c) at now_ms. */
static void
retention(coffer_repo *r, int64_t now_ms)
{
	coord_prune_stats ps;
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_retention_pass(cat, &akey, cfg, r, now_ms, &ps, &err) != 0 ||
	    ps.service_errors != 0 || ps.failed != 0) {
		die("retention: %s (%zu service errors, %zu failed deletions)", err.msg,
		    ps.service_errors, ps.failed);
	}
}

/* cfg's text with from replaced by to (once), as another configuration. */
static coord_config *
config_variant(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	if (at == NULL) {
		die("\"%s\" is not in the configuration", from);
	}
	size_t head = (size_t)(at - text);
	char *v = calloc(1, strlen(text) + strlen(to) + 1);
	if (v == NULL) {
		die("out of memory");
	}
	memcpy(v, text, head);
	strcat(v, to);
	strcat(v, at + strlen(from));
	coord_config *out = NULL;
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_config_load_string(v, "variant.conf", &out, &err) != 0) {
		die("a configuration variant: %s", err.msg);
	}
	free(v);
	return (out);
}

static void
deliver(int64_t now_ms)
{
	coffer_err err;
	coord_notify *n = coord_notify_new(cfg, &akey, &err);
	if (n == NULL) {
		die("notify: %s", err.msg);
	}
	coord_notify_stats st;
	if (coord_notify_deliver_due(n, cat, now_ms, &st, &err) != 0) {
		die("deliver: %s", err.msg);
	}
	coord_notify_free(n);
}

/* The drill handed to the runner by its next poll; fails unless exactly
 * one RunDrill for drill_id arrives. */
static Coffer__V1__Command *
poll_drill(agent *a, const char *service, uint64_t drill_id, Coffer__V1__Reply **rep)
{
	Coffer__V1__Event *hb = ev_new(a, service, false);
	Coffer__V1__Heartbeat *h = tcalloc(1, sizeof(*h));
	coffer__v1__heartbeat__init(h);
	h->last_backup_id = tstrdup("");
	h->last_archived_wal = tstrdup("");
	h->last_failed_wal = tstrdup("");
	h->current_wal = tstrdup("");
	h->system_identifier = tstrdup("");
	hb->kind_case = COFFER__V1__EVENT__KIND_HEARTBEAT;
	hb->heartbeat = h;
	Coffer__V1__Event *evs[] = { hb };
	expect_status(a, evs, 1, COFFER__V1__STATUS__STATUS_OK, "a runner's poll", rep);
	Coffer__V1__Command *found = NULL;
	for (size_t i = 0; i < (*rep)->n_commands; i++) {
		Coffer__V1__Command *c = (*rep)->commands[i];
		if (c->kind_case == COFFER__V1__COMMAND__KIND_RUN_DRILL &&
		    c->run_drill->drill_id == drill_id) {
			found = c;
		}
	}
	return (found);
}

static int64_t
start(const char *by, int64_t now_ms, cJSON *info)
{
	int64_t id = 0;
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_drills_start(cat, &akey, cfg, "billing", by, now_ms, &id, info, &err) != 0) {
		die("drill start: %s (hint: %s)", err.msg, err.hint);
	}
	return (id);
}

static void
corrupt(const char *id)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/services/billing/backups/%s/data", repo_root, id);
	FILE *f = fopen(path, "r+b");
	if (f == NULL || fseek(f, 1000, SEEK_SET) != 0) {
		die("cannot open %s to corrupt it", path);
	}
	int c = fgetc(f);
	fseek(f, 1000, SEEK_SET);
	fputc(c ^ 0x5a, f);
	if (fclose(f) != 0) {
		die("cannot corrupt %s", path);
	}
}

static int
cmd_run(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: drills_itest run CONF\n");
		return (2);
	}
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_config_load(argv[2], &cfg, &err) != 0) {
		die("config: %s", err.msg);
	}
	const char *url = coffer_config_str(cfg->ini, "alerts", "pagerduty_url");
	const char *colon = strrchr(url, ':');
	int port = colon != NULL ? atoi(colon + 1) : 0;
	snprintf(rx_log, sizeof(rx_log), "%s.rx", argv[2]);
	int bound = 0;
	receiver_pid = harness_receiver_start(port, rx_log, &bound);
	if (receiver_pid < 0) {
		die("the receiver did not start");
	}
	snprintf(repo_root, sizeof(repo_root), "%s",
	    coffer_config_str(cfg->ini, "repository.primary", "path"));
	coffer_repo_config rc = { .type = "posix", .path = repo_root };
	if (coord_audit_key_load(cfg->audit_key, &akey, &err) != 0 ||
	    (cat = coord_catalog_open(cfg->catalog, &err)) == NULL ||
	    coord_catalog_check(cat, &err) != 0 ||
	    coord_intake_new(cat, &akey, 0, &intake, &err) != 0 ||
	    coord_drills_new(cfg, &drills, &err) != 0 ||
	    coffer_repo_open(&rc, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		die("setup: %s", err.msg);
	}
	pg = PQconnectdb(cfg->catalog);
	if (PQstatus(pg) != CONNECTION_OK) {
		die("check connection: %s", PQerrorMessage(pg));
	}
	if (coord_policy_sync(cat, &akey, "test", cfg, &err) != 0) {
		die("policy sync: %s", err.msg);
	}
	int64_t t0 = coffer_clock_now(NULL);

	/* ---- enrollment ---- */
	agent_init(&billing_1);
	agent_init(&runner_1);
	agent_init(&runner_2);
	bool already = false;
	const char *billing[] = { "billing" }, *ledger[] = { "ledger" };
	const char *owners[] = { "team-payments" }, *lowners[] = { "team-ledger" };
	if (coord_agents_enroll(cat, &akey, "test", "billing", "team-payments", "billing-1",
	        billing_1.pub, &already, &err) != 0 ||
	    coord_agents_enroll_runner(cat, &akey, "test", billing, owners, 1, "runner-1",
	        runner_1.pub, &already, &err) != 0 ||
	    coord_agents_enroll_runner(cat, &akey, "test", ledger, lowners, 1, "runner-2",
	        runner_2.pub, &already, &err) != 0) {
		die("enroll: %s", err.msg);
	}
	/* A runner is no service's agent, and a service agent no runner. */
	if (coord_agents_enroll_runner(cat, &akey, "test", billing, owners, 1, "billing-1",
	        billing_1.pub, &already, &err) != COFFER_EEXIST ||
	    strstr(err.msg, "service agent cannot be a drill runner") == NULL) {
		die("a service agent was enrolled as a drill runner: %s", err.msg);
	}
	if (coord_agents_enroll(cat, &akey, "test", "billing", "team-payments", "runner-1",
	        runner_1.pub, &already, &err) != COFFER_EEXIST) {
		die("a drill runner was enrolled as a service agent");
	}
	/* Enrolling again with the same key adds services. */
	const char *both[] = { "billing", "ledger" };
	const char *bowners[] = { "team-payments", "team-ledger" };
	if (coord_agents_enroll_runner(cat, &akey, "test", both, bowners, 2, "runner-2",
	        runner_2.pub, &already, &err) != 0 ||
	    already) {
		die("adding a service to a runner: %s", err.msg);
	}
	const char *ledger_only[] = { "ledger" };
	coord_agents_enroll_runner(
	    cat, &akey, "test", ledger_only, lowners, 1, "runner-2", runner_2.pub, &already, &err);
	if (!already) {
		die("re-enrolling a runner for a service it has was not a no-op");
	}
	if (qn("SELECT count(*) FROM agents WHERE name = 'runner-1' AND role = 'drill_runner' "
	       "AND service IS NULL") != 1 ||
	    qn("SELECT count(*) FROM drill_runner_services WHERE agent = 'runner-2'") != 2) {
		die("runner enrollment rows are wrong");
	}
	cJSON *agents = NULL;
	if (coord_agents_list(cat, &agents, &err) != 0) {
		die("agents list: %s", err.msg);
	}
	char *atext = cJSON_PrintUnformatted(agents);
	if (strstr(atext, "\"name\":\"runner-1\",\"service\":null") == NULL ||
	    strstr(atext, "\"role\":\"drill_runner\",\"drills\":[\"billing\"]") == NULL) {
		die("agents list does not show the runner: %s", atext);
	}
	free(atext);
	cJSON_Delete(agents);
	ok("drill runners enrolled (role drill_runner, no service, services they drill); a "
	   "service agent cannot be a runner nor a runner a service agent");

	/* ---- nothing to drill yet ---- */
	int64_t id = 0;
	if (coord_drills_start(cat, &akey, cfg, "billing", "operator:alice", t0, &id, NULL, &err) !=
	        COFFER_ENOENT ||
	    strstr(err.msg, "no completed logical backup") == NULL || err.hint[0] == '\0') {
		die("a drill without backups: %s", err.msg);
	}
	if (coord_drills_start(cat, &akey, cfg, "ledger", "operator:alice", t0, &id, NULL, &err) !=
	        COFFER_ENOENT ||
	    strstr(err.msg, "within drill.window = 1h") == NULL) {
		die("a random drill without backups in its window: %s", err.msg);
	}
	if (coord_drills_start(cat, &akey, cfg, "shop", "operator:alice", t0, &id, NULL, &err) !=
	        COFFER_EINVAL ||
	    strstr(err.msg, "no drill.runner") == NULL) {
		die("a drill of a service without a runner: %s", err.msg);
	}
	if (coord_drills_start(cat, &akey, cfg, "orders", "operator:alice", t0, &id, NULL, &err) !=
	        COFFER_ENOENT ||
	    strstr(err.msg, "runner-1 is not enrolled to drill service orders") == NULL ||
	    strstr(err.hint, "--drill-runner --service orders") == NULL) {
		die("a runner not enrolled for the service: %s (%s)", err.msg, err.hint);
	}
	if (coord_drills_start(cat, &akey, cfg, "crm", "operator:alice", t0, &id, NULL, &err) !=
	        COFFER_ENOENT ||
	    strstr(err.msg, "billing-1 is a service agent") == NULL) {
		die("a service agent as drill.runner: %s", err.msg);
	}
	ok("refused: no backup to drill (latest; random within drill.window); no drill.runner; a "
	   "runner not enrolled for the service; a service agent as runner");

	/* ---- a service agent's hello and two backups ---- */
	Coffer__V1__Event *hello[] = { ev_hello(&billing_1, "billing", "7301234567890123456") };
	expect_status(&billing_1, hello, 1, COFFER__V1__STATUS__STATUS_OK, "hello", NULL);
	make_backup("b-old", t0 - 2 * HOURS);
	make_backup("b-new", t0 - 1 * HOURS);

	/* ---- a commanded drill that passes ---- */
	cJSON *info = cJSON_CreateObject();
	int64_t d1 = start("operator:alice", t0, info);
	char *itext = cJSON_PrintUnformatted(info);
	if (strstr(itext, "\"backup_id\":\"b-new\"") == NULL ||
	    strstr(itext, "\"repository\":\"primary\"") == NULL ||
	    strstr(itext, "\"runner\":\"runner-1\"") == NULL) {
		die("drill start picked the wrong backup: %s", itext);
	}
	free(itext);
	cJSON_Delete(info);
	if (coord_drills_start(cat, &akey, cfg, "billing", "operator:alice", t0, &id, NULL, &err) !=
	        COFFER_EEXIST ||
	    strstr(err.msg, "still running") == NULL) {
		die("a second drill while one runs: %s", err.msg);
	}
	/* The service's own agent never gets a drill command. */
	Coffer__V1__Reply *rep = NULL;
	Coffer__V1__Event *bhb[] = { ev_new(&billing_1, "billing", false) };
	bhb[0]->kind_case = COFFER__V1__EVENT__KIND_HELLO;
	bhb[0]->hello = hello[0]->hello;
	expect_status(&billing_1, bhb, 1, COFFER__V1__STATUS__STATUS_OK, "service poll", &rep);
	if (rep->n_commands != 0) {
		die("the service agent was handed %zu commands", rep->n_commands);
	}
	coffer__v1__reply__free_unpacked(rep, NULL);
	Coffer__V1__Command *cmd = poll_drill(&runner_1, "billing", (uint64_t)d1, &rep);
	if (cmd == NULL) {
		die("runner-1 was not handed drill %" PRId64, d1);
	}
	Coffer__V1__RunDrill *rd = cmd->run_drill;
	if (strcmp(rd->service, "billing") != 0 || strcmp(rd->backup_id, "b-new") != 0 ||
	    strcmp(rd->repository, "primary") != 0 || rd->rto_minutes != 5 ||
	    strcmp(rd->freshness_query, "SELECT max(at) FROM invoices") != 0 ||
	    rd->freshness_max_lag_s != 7200 || rd->n_assertions != 2 ||
	    strcmp(rd->assertions[1], "SELECT count(*) > 0 FROM invoices") != 0 ||
	    !rd->drop_sandbox_on_failure || rd->n_production_system_ids != 1 ||
	    strcmp(rd->production_system_ids[0], "7301234567890123456") != 0) {
		die("RunDrill does not carry the policy: backup %s repo %s rto %u asserts %zu prod %zu",
		    rd->backup_id, rd->repository, rd->rto_minutes, rd->n_assertions,
		    rd->n_production_system_ids);
	}
	uint64_t c1 = cmd->id;
	coffer__v1__reply__free_unpacked(rep, NULL);
	/* runner-2 drills ledger only: it is not handed billing's drill. */
	if (poll_drill(&runner_2, "ledger", (uint64_t)d1, &rep) != NULL) {
		die("runner-2 was handed billing's drill");
	}
	coffer__v1__reply__free_unpacked(rep, NULL);
	ok("drill %" PRId64 " of the latest backup handed to runner-1 only, with the policy's "
	   "checks, RTO and the production system identifiers; the next alternates to DR",
	    d1);

	Coffer__V1__Event *res1[] = {
		ev_result(&runner_1, "billing", (uint64_t)d1, "b-new", true,
		    "verify=1,restore=1,row_counts=1,schema_version=1,freshness=1,assertion:1=1,"
		    "assertion:2=1,rto=1",
		    4200, NULL),
		ev_done(&runner_1, "billing", c1, true, "drill passed"),
	};
	expect_status(&runner_1, res1, 2, COFFER__V1__STATUS__STATUS_OK, "a passed drill", NULL);
	if (qn("SELECT count(*) FROM drills WHERE id = %" PRId64 " AND status = 'passed' AND "
	       "restore_ms = 4200 AND total_ms = 5700 AND jsonb_array_length(checks) = 8 AND "
	       "sandbox = 'coffer_drill_billing_%" PRId64 "'",
	        d1, d1) != 1 ||
	    qn("SELECT count(*) FROM agent_commands WHERE id = %" PRIu64 " AND done_at IS NOT NULL",
	        c1) != 1) {
		die("the passed drill was not recorded");
	}
	if (qn("SELECT count(*) FROM audit WHERE action = 'backup.drill_completed' AND actor = "
	       "'runner-1' AND subject = 'b-new' AND details->>'result' = 'passed' AND "
	       "(details->>'restore_ms')::int = 4200 AND details->>'within_rto' = 'true' AND "
	       "jsonb_array_length(details->'checks') = 8") != 1) {
		die("no backup.drill_completed audit row with the checks and times");
	}
	coord_drills_stats st = tick(t0 + 1000);
	deliver(t0 + 1000);
	if (st.changes < 1 ||
	    !harness_receiver_seen(
	        rx_log, "/v2/change/enqueue", "passed; restore took 4200ms (RTO 5m)")) {
		die("no change event for the passed drill (changes=%d)", st.changes);
	}
	cJSON *list = NULL;
	if (coord_drills_list(cat, "billing", 10, &list, &err) != 0) {
		die("drill list: %s", err.msg);
	}
	char *ltext = cJSON_PrintUnformatted(list);
	if (strstr(ltext, "\"status\":\"passed\"") == NULL ||
	    strstr(ltext, "\"restore_ms\":4200") == NULL ||
	    strstr(ltext, "\"within_rto\":true") == NULL) {
		die("drill list: %s", ltext);
	}
	free(ltext);
	cJSON_Delete(list);
	char *metrics = NULL;
	size_t mlen = 0;
	if (coord_metrics_render(cat, t0, &metrics, &mlen, &err) != 0) {
		die("metrics: %s", err.msg);
	}
	if (strstr(metrics, "coffer_drills_total{service=\"billing\",result=\"passed\"} 1") ==
	        NULL ||
	    strstr(metrics, "coffer_drill_restore_seconds{service=\"billing\"} 4.200") == NULL ||
	    strstr(metrics, "coffer_drill_last_success_timestamp_seconds{service=\"billing\"}") ==
	        NULL ||
	    strstr(metrics, "service=\"_drill_runner\",agent=\"runner-1\"") == NULL) {
		die("metrics lack the drill families:\n%s", metrics);
	}
	free(metrics);
	ok("passed drill: row, audit backup.drill_completed (8 checks, restore 4200 ms within "
	   "RTO), change event delivered, drill list, metrics");

	/* ---- a verified DR copy: alternate drills from DR next ---- */
	copy_to_dr("b-new");
	if (qn("INSERT INTO backup_copies (backup_id, repo, status, stored_sha256, finished_at) "
	       "SELECT id, 'dr', 'verified', stored_sha256, now() FROM backups WHERE id = 'b-new' "
	       "RETURNING 1") != 1) {
		die("cannot record the DR copy");
	}

	/* ---- ownership refusals ---- */
	long refused0 =
	    qn("SELECT COALESCE(sum(count), 0) FROM refusals WHERE reason = 'not_owner'");
	int64_t d2 = start("operator:alice", t0 + 2000, NULL);
	Coffer__V1__Event *own1[] = { ev_result(
	    &billing_1, "billing", (uint64_t)d2, "b-new", true, "verify=1", 10, NULL) };
	expect_status(&billing_1, own1, 1, COFFER__V1__STATUS__STATUS_NOT_OWNER,
	    "a service agent's drill result", NULL);
	billing_1.ev_seq--; /* refused: nothing was applied */
	Coffer__V1__Event *own2[] = { ev_started(&runner_1, "billing", "b-fake") };
	expect_status(&runner_1, own2, 1, COFFER__V1__STATUS__STATUS_NOT_OWNER,
	    "a runner's backup event", NULL);
	runner_1.ev_seq--;
	Coffer__V1__Event *own3[] = { ev_result(
	    &runner_2, "billing", (uint64_t)d2, "b-new", true, "verify=1", 10, NULL) };
	/* runner-2 is enrolled for billing now too, but the drill was not
	 * handed to it. */
	expect_status(&runner_2, own3, 1, COFFER__V1__STATUS__STATUS_NOT_OWNER,
	    "another runner's drill", NULL);
	runner_2.ev_seq--;
	if (qn("SELECT COALESCE(sum(count), 0) FROM refusals WHERE reason = 'not_owner'") !=
	        refused0 + 3 ||
	    qn("SELECT count(*) FROM audit WHERE action = 'request.refused' AND details->>'error' "
	       "LIKE '%%service agent, and only a drill runner%%'") != 1 ||
	    qn("SELECT count(*) FROM drills WHERE id = %" PRId64 " AND status = 'running'", d2) !=
	        1) {
		die("ownership refusals were not counted and audited, or changed the drill");
	}
	ok("refused (not_owner, counted, audited): a service agent's drill result, a runner's "
	   "backup event, a result for a drill handed to another runner");

	/* ---- a drill whose verification fails pages ---- */
	Coffer__V1__Reply *rep2 = NULL;
	Coffer__V1__Command *cmd2 = poll_drill(&runner_1, "billing", (uint64_t)d2, &rep2);
	if (cmd2 == NULL) {
		die("drill %" PRId64 " not handed out", d2);
	}
	uint64_t c2 = cmd2->id;
	if (strcmp(cmd2->run_drill->repository, "dr") != 0 ||
	    strcmp(cmd2->run_drill->backup_id, "b-new") != 0) {
		die("drill.repository = alternate: drill 2 is from %s, want dr",
		    cmd2->run_drill->repository);
	}
	coffer__v1__reply__free_unpacked(rep2, NULL);
	Coffer__V1__Event *res2[] = {
		ev_result(&runner_1, "billing", (uint64_t)d2, "b-new", false,
		    "verify=0:stored digest mismatch: sha256 of data is 5f1e...; the manifest says "
		    "9ac0...",
		    0, "verify: stored digest mismatch"),
		ev_done(&runner_1, "billing", c2, false, "drill failed"),
	};
	expect_status(&runner_1, res2, 2, COFFER__V1__STATUS__STATUS_OK, "a failed drill", NULL);
	st = tick(t0 + 3000);
	deliver(t0 + 3000);
	if (qn("SELECT count(*) FROM drills WHERE id = %" PRId64 " AND status = 'failed' AND "
	       "failure_reason LIKE 'verify%%'",
	        d2) != 1 ||
	    qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/drill_failed' AND "
	       "state = 'triggered'") != 1 ||
	    !harness_receiver_seen(
	        rx_log, "\"event_action\":\"trigger\"", "coffer/billing/drill_failed")) {
		die("a failed verification did not page");
	}
	ok("drill failing at verify: drill failed, coffer/billing/drill_failed triggered and "
	   "delivered");

	/* ---- a false assertion fails the drill even when ok is claimed ---- */
	int64_t d3 = start("operator:alice", t0 + 4000, NULL);
	Coffer__V1__Command *cmd3 = poll_drill(&runner_1, "billing", (uint64_t)d3, &rep2);
	uint64_t c3 = cmd3 != NULL ? cmd3->id : 0;
	coffer__v1__reply__free_unpacked(rep2, NULL);
	Coffer__V1__Event *res3[] = {
		ev_result(&runner_1, "billing", (uint64_t)d3, "b-new", true,
		    "verify=1,restore=1,row_counts=1,assertion:1=1,assertion:2=0:returned false",
		    900, NULL),
		ev_done(&runner_1, "billing", c3, true, ""),
	};
	expect_status(&runner_1, res3, 2, COFFER__V1__STATUS__STATUS_OK, "an assertion", NULL);
	if (qn("SELECT count(*) FROM drills WHERE id = %" PRId64 " AND status = 'failed' AND "
	       "failure_reason = 'assertion:2: returned false'",
	        d3) != 1) {
		die("a false assertion did not fail the drill: %s",
		    qv("SELECT status || ' ' || COALESCE(failure_reason, '') FROM drills WHERE id = "
		       "%" PRId64,
		        d3));
	}
	ok("a false assertion fails the drill (failure: assertion:2: returned false)");

	/* ---- the runner refuses: the sandbox is a production cluster ---- */
	int64_t d4 = start("operator:alice", t0 + 5000, NULL);
	Coffer__V1__Command *cmd4 = poll_drill(&runner_1, "billing", (uint64_t)d4, &rep2);
	uint64_t c4 = cmd4 != NULL ? cmd4->id : 0;
	coffer__v1__reply__free_unpacked(rep2, NULL);
	Coffer__V1__Event *res4[] = { ev_done(&runner_1, "billing", c4, false,
	    "refused: the sandbox cluster 7301234567890123456 is a production cluster") };
	expect_status(&runner_1, res4, 1, COFFER__V1__STATUS__STATUS_OK, "a refusal", NULL);
	if (qn("SELECT count(*) FROM drills WHERE id = %" PRId64 " AND status = 'failed' AND "
	       "failure_reason LIKE 'refused: the sandbox%%'",
	        d4) != 1 ||
	    qn("SELECT count(*) FROM audit WHERE action = 'backup.drill_completed' AND "
	       "(details->>'drill_id')::bigint = %" PRId64 " AND details->>'result' = 'failed'",
	        d4) != 1) {
		die("a runner's refusal did not fail the drill");
	}
	ok("a runner refusing the drill (sandbox is production) fails it, audited");

	/* ---- a passing drill resolves drill_failed ---- */
	int64_t d5 = start("operator:alice", t0 + 6000, NULL);
	Coffer__V1__Command *cmd5 = poll_drill(&runner_1, "billing", (uint64_t)d5, &rep2);
	uint64_t c5 = cmd5 != NULL ? cmd5->id : 0;
	coffer__v1__reply__free_unpacked(rep2, NULL);
	Coffer__V1__Event *res5[] = {
		ev_result(&runner_1, "billing", (uint64_t)d5, "b-new", true, "verify=1,restore=1",
		    800, NULL),
		ev_done(&runner_1, "billing", c5, true, ""),
	};
	expect_status(&runner_1, res5, 2, COFFER__V1__STATUS__STATUS_OK, "a passing drill", NULL);
	st = tick(t0 + 7000);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/drill_failed' AND "
	       "state = 'resolved'") != 1) {
		die("drill_failed did not resolve after a passing drill");
	}
	ok("a passing drill resolves drill_failed");

	/* ---- runner offline: a running drill past RTO + grace pages ---- */
	int64_t d6 = start("operator:alice", t0 + 8000, NULL);
	st = tick(t0 + 8000 + 5 * MINS); /* within rto + overdue_after */
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/drill_overdue' "
	       "AND state = 'triggered'") != 0) {
		die("drill_overdue triggered before rto + overdue_after");
	}
	st = tick(t0 + 8000 + 16 * MINS);
	deliver(t0 + 8000 + 16 * MINS);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/drill_overdue' "
	       "AND state = 'triggered' AND summary LIKE '%%runner-1%%'") != 1 ||
	    !harness_receiver_seen(
	        rx_log, "\"event_action\":\"trigger\"", "coffer/billing/drill_overdue")) {
		die("a drill without a result past its RTO did not page");
	}
	/* The runner comes back: the drill is still owed to it. */
	Coffer__V1__Command *cmd6 = poll_drill(&runner_1, "billing", (uint64_t)d6, &rep2);
	uint64_t c6 = cmd6 != NULL ? cmd6->id : 0;
	coffer__v1__reply__free_unpacked(rep2, NULL);
	Coffer__V1__Event *res6[] = {
		ev_result(&runner_1, "billing", (uint64_t)d6, "b-new", true, "verify=1,restore=1",
		    700, NULL),
		ev_done(&runner_1, "billing", c6, true, ""),
	};
	expect_status(&runner_1, res6, 2, COFFER__V1__STATUS__STATUS_OK, "a late drill", NULL);
	st = tick(t0 + 8000 + 17 * MINS);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/drill_overdue' "
	       "AND state = 'resolved'") != 1) {
		die("drill_overdue did not resolve once the result came");
	}
	ok("runner offline: drill_overdue paged after drill.rto + drill.overdue_after, resolved "
	   "by the late result");

	/* ---- the schedule ---- */
	/* The schedule was recorded at the first tick: the first due slot is
	 * the next one after the later of that tick and the last drill's start
	 * (drill 6). The script puts the slot about 12 hours from now, so none
	 * fell inside the minutes simulated above. */
	int64_t slot = 0;
	if (coord_drills_next_due(coord_config_service(cfg, "billing")->drill.schedule, "UTC",
	        t0 + 8000, &slot, &err) != 0 ||
	    slot < t0 + 2 * HOURS) {
		die("the schedule's next slot is too close to now for this test");
	}
	st = tick(slot - 1000);
	if (st.started != 0) {
		die("a scheduled drill started before its slot");
	}
	st = tick(slot + 1000);
	if (st.started != 1 ||
	    qn("SELECT count(*) FROM drills WHERE requested_by = 'schedule' AND status = "
	       "'running'") != 1) {
		die("the scheduled drill did not start at its slot (started=%d)", st.started);
	}
	st = tick(slot + 2000);
	if (st.started != 0) {
		die("the scheduled drill started twice");
	}
	/* Not reported: overdue once rto + overdue_after pass. */
	st = tick(slot + 1000 + 16 * MINS);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/drill_overdue' "
	       "AND state = 'triggered'") != 1) {
		die("the unreported scheduled drill is not overdue");
	}
	ok("scheduled drill started once at its cron slot; unreported, it is overdue");

	/* ---- the integrity sweep ---- */
	coffer_err_clear(&err);
	st = (coord_drills_stats) { 0 };
	if (coord_drills_sweep(drills, cat, &akey, slot + 20 * MINS, &st, &err) != 0) {
		die("sweep: %s", err.msg);
	}
	if (st.objects != 6 || st.corrupt != 0 ||
	    qn("SELECT count(*) FROM integrity_checks WHERE repo = 'dr' AND ok AND sweep_id = "
	       "(SELECT max(id) FROM integrity_sweeps)") != 2 ||
	    qn("SELECT count(*) FROM audit WHERE action = 'backup.integrity_check_passed'") < 6) {
		die("clean sweep: objects=%d corrupt=%d", st.objects, st.corrupt);
	}
	st = tick(slot + 21 * MINS);
	deliver(slot + 21 * MINS);
	if (!harness_receiver_seen(
	        rx_log, "/v2/change/enqueue", "stored objects match the catalog's digests")) {
		die("no change event for the clean sweep");
	}
	corrupt("b-old");
	st = (coord_drills_stats) { 0 };
	if (coord_drills_sweep(drills, cat, &akey, slot + 22 * MINS, &st, &err) != 0) {
		die("sweep: %s", err.msg);
	}
	if (st.corrupt != 1 ||
	    qn("SELECT count(*) FROM audit WHERE action = 'backup.integrity_check_failed' AND "
	       "subject = 'b-old' AND details->>'repository' = 'primary' AND details->>'object' "
	       "= 'services/billing/backups/b-old/data'") != 1) {
		die("the corrupted object was not found (corrupt=%d)", st.corrupt);
	}
	st = tick(slot + 23 * MINS);
	deliver(slot + 23 * MINS);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/integrity_failed' "
	       "AND state = 'triggered' AND summary LIKE '%%b-old data in primary%%'") != 1 ||
	    !harness_receiver_seen(
	        rx_log, "\"event_action\":\"trigger\"", "coffer/billing/integrity_failed")) {
		die("a corrupted object did not page");
	}
	/* Sampling keeps a failed object in the sample (sample = 1 here
	 * would still pick it): it stays failed, the alert stays open. */
	if (coord_drills_sweep(drills, cat, &akey, slot + 24 * MINS, &st, &err) != 0) {
		die("sweep: %s", err.msg);
	}
	st = tick(slot + 25 * MINS);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/integrity_failed' "
	       "AND state = 'triggered'") != 1) {
		die("integrity_failed resolved while the object is still corrupt");
	}
	ok("integrity sweep: 6 objects verified (4 primary, 2 in DR for the copied backup), "
	   "change event; a corrupted data object found (audited with object and repository), "
	   "paged, and kept failing");

	/* ---- old checks pruned ---- */
	long objects = qn("SELECT count(DISTINCT (backup_id, repo, object)) FROM integrity_checks");
	long rows = qn("SELECT count(*) FROM integrity_checks");
	if (qn("SELECT sum(count) FROM integrity_totals") != rows) {
		die("integrity_totals does not count every check");
	}
	long counted = rows;
	/* The three sweeps above, made older than [integrity] keep_checks, and
	 * two old checks of an object no sweep samples (a DR copy of a backup
	 * with none): the newer of the two must stay. */
	if (qn("WITH u AS (UPDATE integrity_checks SET checked_at = checked_at - interval "
	       "'100 days' RETURNING 1) SELECT count(*) FROM u") != rows ||
	    qn("WITH b AS (SELECT backup_id, service, sweep_id FROM integrity_checks c WHERE "
	       "NOT EXISTS (SELECT 1 FROM integrity_checks d WHERE d.backup_id = c.backup_id AND "
	       "d.repo = 'dr') LIMIT 1), i AS (INSERT INTO integrity_checks (sweep_id, backup_id, "
	       "service, repo, object, ok, checked_at) SELECT sweep_id, backup_id, service, 'dr', "
	       "'data', true, now() - d * interval '1 day' FROM b, (VALUES (200), (150)) v(d) "
	       "RETURNING 1) SELECT count(*) FROM i") != 2) {
		die("aging the checks");
	}
	rows += 2;
	objects++;
	st = (coord_drills_stats) { 0 };
	if (coord_drills_sweep(drills, cat, &akey, slot + 24 * MINS + 30000, &st, &err) != 0) {
		die("sweep: %s", err.msg);
	}
	long now_rows = qn("SELECT count(*) FROM integrity_checks");
	if (st.checks_pruned <= 0 || now_rows != rows + st.objects - st.checks_pruned ||
	    qn("SELECT count(*) FROM integrity_checks c WHERE checked_at < now() - interval "
	       "'90 days' AND EXISTS (SELECT 1 FROM integrity_checks n WHERE n.backup_id = "
	       "c.backup_id AND n.repo = c.repo AND n.object = c.object AND n.checked_at > "
	       "c.checked_at)") != 0 ||
	    qn("SELECT count(DISTINCT (backup_id, repo, object)) FROM integrity_checks") <
	        objects ||
	    qn("SELECT count(*) FROM integrity_checks WHERE repo = 'dr' AND checked_at BETWEEN "
	       "now() - interval '151 days' AND now() - interval '149 days'") != 1 ||
	    qn("SELECT count(*) FROM integrity_checks WHERE checked_at < now() - interval "
	       "'199 days'") != 0 ||
	    qn("SELECT sum(count) FROM integrity_totals") != counted + st.objects ||
	    qn("SELECT (details->>'deleted')::int FROM audit WHERE action = "
	       "'integrity.checks_pruned' ORDER BY chain_seq DESC LIMIT 1") != st.checks_pruned) {
		die("pruning: pruned=%d objects=%d rows %ld -> %ld", st.checks_pruned, st.objects,
		    rows, now_rows);
	}
	int pruned = st.checks_pruned;
	st = tick(slot + 24 * MINS + 40000);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/integrity_failed' "
	       "AND state = 'triggered'") != 1) {
		die("integrity_failed resolved after pruning");
	}
	ok("integrity checks older than keep_checks pruned (%d of %ld) once a newer check of the "
	   "object exists; every object keeps its newest, the totals and the page stay, one "
	   "audit row",
	    pruned, rows);

	/* ---- retention is no recovery for a corrupt backup ---- */
	/* b-old is not the day's newest: retention marks it pending_delete.
	 * Its object is still stored, corrupt: the page stays. */
	coffer_repo *repo_del = NULL;
	coffer_repo_config rdc = { .type = "posix", .path = repo_root };
	if (coffer_repo_open(&rdc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE,
	        &repo_del, &err) != 0) {
		die("repository with delete rights: %s", err.msg);
	}
	retention(repo_del, slot + 24 * MINS + 50000);
	expect_backup("b-old", "pending_delete");
	st = tick(slot + 24 * MINS + 55000); /* no sweep due: evaluation only */
	expect_alert("coffer/billing/integrity_failed", "triggered",
	    "with the corrupt backup pending deletion");
	ok("a corrupt backup marked pending_delete by retention keeps integrity_failed open");

	/* ---- the sweep overdue ---- */
	int64_t interval = coffer_config_duration_ms(cfg->ini, "integrity", "sweep_interval");
	/* A tick would sweep (due); run the evaluation at a time when the last
	 * sweep is 3 intervals old by dropping the repository: the tick cannot
	 * sweep without it, so the page is about lateness alone. */
	coord_drills_free(drills);
	coord_config *broken = NULL;
	char *ctext = NULL;
	{
		FILE *f = fopen(argv[2], "r");
		fseek(f, 0, SEEK_END);
		long n = ftell(f);
		fseek(f, 0, SEEK_SET);
		ctext = calloc(1, (size_t)n + 1);
		if (fread(ctext, 1, (size_t)n, f) != (size_t)n) {
			die("reading %s", argv[2]);
		}
		fclose(f);
	}
	char *p = strstr(ctext, repo_root);
	if (p == NULL) {
		die("repository path not in the config");
	}
	/* Point the primary at a directory that does not exist. */
	size_t off = (size_t)(p - ctext) + strlen(repo_root);
	char *moved = calloc(1, strlen(ctext) + 16);
	memcpy(moved, ctext, off);
	strcat(moved, "-gone");
	strcat(moved, ctext + off);
	if (coord_config_load_string(moved, "moved.conf", &broken, &err) != 0 ||
	    coord_drills_new(broken, &drills, &err) != 0) {
		die("moved config: %s", err.msg);
	}
	st = tick(slot + 25 * MINS + 3 * interval);
	if (qn("SELECT count(*) FROM alerts WHERE dedup_key = "
	       "'coffer/_coordinator/integrity_overdue' AND state = 'triggered'") != 1) {
		die("a sweep that cannot run did not become overdue");
	}
	ok("a sweep that cannot run (repository gone) pages integrity_overdue after 2 intervals");

	/* Retention deletes b-old (grace is 1h): the corrupt object is gone,
	 * but nothing has shown the repository sound since. With no sweep
	 * possible, the page stays open; once a sweep has checked a newer
	 * backup (b-new) clean there, it resolves. */
	int64_t tr = slot + 25 * MINS + 3 * interval;
	retention(repo_del, tr + 1000);
	expect_backup("b-old", "deleted");
	st = tick(tr + 2000);
	expect_alert("coffer/billing/integrity_failed", "triggered",
	    "with the corrupt backup deleted and no check since");
	coord_drills *sound = NULL;
	if (coord_drills_new(cfg, &sound, &err) != 0) {
		die("drills: %s", err.msg);
	}
	st = (coord_drills_stats) { 0 };
	if (coord_drills_sweep(sound, cat, &akey, tr + 3000, &st, &err) != 0 || st.corrupt != 0) {
		die("sweep after the deletion: %s (corrupt=%d)", err.msg, st.corrupt);
	}
	st = tick_of(sound, tr + 4000);
	expect_alert(
	    "coffer/billing/integrity_failed", "resolved", "once a newer backup was checked clean");
	ok("retention deleting the corrupt backup does not resolve integrity_failed; a newer "
	   "backup checked clean in that repository does");

	/* ---- a policy change is no recovery for drill_overdue ---- */
	/* ledger drills on a schedule; it has no backup, so the due drill
	 * cannot start and drill_overdue pages. Rescheduling (due_of counts a
	 * new schedule from the change) must not clear the page: a drill
	 * starting does. */
	coord_config *sched_a = config_variant(ctext, "drill.backup = random\ndrill.window = 1h\n",
	    "drill.schedule = */5 * * * *\ndrill.overdue_after = 10m\n");
	coord_config *sched_b = config_variant(ctext, "drill.backup = random\ndrill.window = 1h\n",
	    "drill.schedule = */7 * * * *\ndrill.overdue_after = 10m\n");
	coord_drills *da = NULL, *db = NULL;
	if (coord_drills_new(sched_a, &da, &err) != 0 ||
	    coord_drills_new(sched_b, &db, &err) != 0) {
		die("drills: %s", err.msg);
	}
	int64_t tl = tr + 10 * MINS;
	tick_of(da, tl);
	st = tick_of(da, tl + 16 * MINS);
	if (st.not_started < 1) {
		die("ledger's due drill started without a backup");
	}
	expect_alert("coffer/ledger/drill_overdue", "triggered", "with the due drill not started");
	tick_of(db, tl + 17 * MINS);
	expect_alert("coffer/ledger/drill_overdue", "triggered", "after ledger was rescheduled");
	/* The recovery: a backup to drill, and the next slot starts a drill. */
	agent_init(&ledger_1);
	bool enrolled = false;
	if (coord_agents_enroll(cat, &akey, "test", "ledger", "team-ledger", "ledger-1",
	        ledger_1.pub, &enrolled, &err) != 0) {
		die("enroll ledger-1: %s", err.msg);
	}
	Coffer__V1__Event *lhello[] = { ev_hello(&ledger_1, "ledger", "7301234567890123457") };
	expect_status(&ledger_1, lhello, 1, COFFER__V1__STATUS__STATUS_OK, "hello", NULL);
	make_backup_of(&ledger_1, "ledger", "l-1", coffer_clock_now(NULL) - 1000);
	int64_t next = 0;
	if (coord_drills_next_due("*/7 * * * *", "UTC", tl + 17 * MINS, &next, &err) != 0) {
		die("next slot: %s", err.msg);
	}
	st = tick_of(db, next + 1000);
	if (st.started != 1) {
		die("ledger's drill did not start at its slot (started=%d)", st.started);
	}
	expect_alert("coffer/ledger/drill_overdue", "resolved", "once a drill started");
	ok("drill_overdue: rescheduling does not resolve it; the next drill starting does");
	coord_drills_free(da);
	coord_drills_free(db);
	coord_drills_free(sound);
	coord_config_free(sched_a);
	coord_config_free(sched_b);
	coffer_repo_close(repo_del);

	cJSON *o = cJSON_CreateObject();
	if (coord_drills_status(cat, "billing", o, &err) != 0) {
		die("status: %s", err.msg);
	}
	char *stext = cJSON_PrintUnformatted(o);
	if (strstr(stext, "\"last_drill\":{") == NULL ||
	    strstr(stext, "\"requested_by\":\"schedule\"") == NULL) {
		die("status last_drill: %s", stext);
	}
	free(stext);
	cJSON_Delete(o);
	ok("status shows the last drill");

	coord_audit_result ar;
	memset(&ar, 0, sizeof(ar));
	if (coord_audit_verify(cat, &akey, &ar, &err) != 0 || !ar.intact) {
		die("audit chain: %s", ar.problem);
	}
	ok("audit chain intact (%lld rows)", (long long)ar.rows);

	coord_drills_free(drills);
	coord_config_free(broken);
	free(moved);
	free(ctext);
	coord_intake_free(intake);
	coffer_repo_close(repo);
	coord_catalog_close(cat);
	PQfinish(pg);
	coord_config_free(cfg);
	free_kept();
	harness_receiver_stop(receiver_pid);
	return (0);
}

static int
cmd_sweep(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: drills_itest sweep CONF\n");
		return (2);
	}
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_config_load(argv[2], &cfg, &err) != 0 ||
	    coord_audit_key_load(cfg->audit_key, &akey, &err) != 0 ||
	    (cat = coord_catalog_open(cfg->catalog, &err)) == NULL ||
	    coord_drills_new(cfg, &drills, &err) != 0) {
		die("setup: %s", err.msg);
	}
	coord_drills_stats st = { 0 };
	int64_t t = coffer_clock_monotonic_ms();
	if (coord_drills_sweep(drills, cat, &akey, coffer_clock_now(NULL), &st, &err) != 0) {
		die("sweep: %s", err.msg);
	}
	printf("objects=%d failed=%d seconds=%.3f\n", st.objects, st.corrupt,
	    (double)(coffer_clock_monotonic_ms() - t) / 1000.0);
	coord_drills_free(drills);
	coord_catalog_close(cat);
	coord_config_free(cfg);
	return (0);
}

int
main(int argc, char **argv)
{
	coffer_log_init("drills_itest", COFFER_LOG_WARN);
	if (argc >= 2 && strcmp(argv[1], "run") == 0) {
		return (cmd_run(argc, argv));
	}
	if (argc >= 2 && strcmp(argv[1], "sweep") == 0) {
		return (cmd_sweep(argc, argv));
	}
	if (argc >= 2 && strcmp(argv[1], "receiver") == 0) {
		return (cmd_receiver(argc, argv));
	}
	fprintf(stderr, "usage: drills_itest run CONF | sweep CONF | receiver LOG PORTFILE\n");
	return (2);
}
