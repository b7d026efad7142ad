/*
 * Admin endpoint: operator requests against the catalog; see
 * coordinator/serve/admin.h.
 *
 * Design notes.
 * The checks run cheapest and least revealing first: shape, then the
 * operator's section, then the signature, then the clock, and only then the
 * nonce table. A nonce is recorded only for a request that verified, so an
 * unauthenticated peer cannot fill admin_nonces; it can still add audit
 * rows (every refusal is audited, by design), each bounded in size.
 *
 * The nonce is recorded in its own statement before the command runs: a
 * command that then fails has still consumed its nonce, which is right,
 * because the CLI never retries with the same nonce and a replay of a
 * failed request must not get a second chance.
 *
 * The operator's public key is read from its file on every request: the
 * handler stays a pure function of catalog and config, and a key replaced
 * on disk (rotation) takes effect without a restart. It is a few hundred
 * bytes, read far less often than the catalog is queried.
 *
 * Changes run in their own transactions with their audit rows:
 * coord_agents_enroll/revoke audit "agent.enroll"/"agent.revoke" with the
 * operator as actor; backup.run inserts its command and its
 * "admin.backup.run" row in one transaction, so a command never exists
 * without the record of who asked for it.
 */
#include "coordinator/serve/admin.h"

#include "coordinator/policy/prune.h"
#include "coordinator/watch/alerts.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/base/name.h"
#include "common/base/objects.h"
#include "common/base/utf8.h"
#include "common/crypto/sign.h"
#include "common/wire/adminmsg.h"
#include "common/wire/wire.h"
#include "coordinator/catalog/agents.h"
#include "coordinator/dr/auditexport.h"
#include "coordinator/dr/drcopy.h"
#include "coordinator/drill/drills.h"
#include "coordinator/policy/s3policy.h"
#include "coordinator/wal/walwatch.h"

#define ACTOR_MAX 80
/* Audit details keep an argument's value only up to this many bytes. */
#define ARG_AUDIT_MAX 256
/* Stop adding rows to a listing beyond this many bytes of JSON, well under
 * COFFER_WIRE_MAX_MSG so the reply always encodes. */
#define LIST_BYTES_MAX (512 * 1024)

typedef struct admin_ctx {
	coord_catalog *cat;
	const coord_config *cfg;
	const coord_audit_key *key;
	int64_t now_ms;
	char actor[ACTOR_MAX];
	char op[64];                         /* verified operator, "" before */
	const Coffer__V1__AdminRequest *req; /* NULL until the body decoded */
	int status;                          /* Coffer__V1__Status */
	coffer_err err;
	cJSON *result;
	bool audited; /* the command wrote its own row */
	char subject[COORD_AUDIT_MAX_NAME];
} admin_ctx;

typedef int (*admin_fn)(admin_ctx *ctx);

/* Which roles may run a command (0: every role; reads). Releasing a legal
 * hold needs a role that placing one does not, so no single operator key
 * can both hide data from retention's deletes and later release it
 * unnoticed: that is the separation of duties the compliance seeds ask for. */
enum {
	MAY_OPERATOR = 1u << 0,
	MAY_COMPLIANCE = 1u << 1,
};

typedef struct admin_command {
	const char *name;
	unsigned roles;   /* MAY_* that may run it; 0 for any role */
	const char *args; /* allowed argument names, space separated, padded */
	admin_fn fn;
} admin_command;

/* --- small helpers ------------------------------------------------------- */

static unsigned
role_bit(const char *role)
{
	if (role == NULL) {
		return (0);
	}
	if (strcmp(role, "operator") == 0) {
		return (MAY_OPERATOR);
	}
	if (strcmp(role, "compliance") == 0) {
		return (MAY_COMPLIANCE);
	}
	return (0);
}

static int refuse(admin_ctx *ctx, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
refuse(admin_ctx *ctx, int status, int code, const char *fmt, ...)
{
	char msg[COFFER_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctx->status = status;
	return (coffer_err_set(&ctx->err, code, "%s", msg));
}

/* A coffer error from the catalog or a module, as a reply status. */
static int
status_of(int code)
{
	switch (code) {
	case COFFER_EUNAVAIL:
		return (COFFER__V1__STATUS__STATUS_UNAVAILABLE);
	case COFFER_EINVAL:
	case COFFER_EEXIST:
	case COFFER_ENOENT:
	case COFFER_EPERM:
	case COFFER_EREFUSED:
		return (COFFER__V1__STATUS__STATUS_REFUSED);
	default:
		return (COFFER__V1__STATUS__STATUS_INTERNAL);
	}
}

static int
fail_with(admin_ctx *ctx, int code)
{
	ctx->status = status_of(code);
	if (ctx->status == COFFER__V1__STATUS__STATUS_UNAVAILABLE && ctx->err.hint[0] == '\0') {
		coffer_err_hint(
		    &ctx->err, "the coordinator's catalog is unreachable; retry shortly");
	}
	return (code);
}

static const char *
arg(const admin_ctx *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->req->n_args; i++) {
		const Coffer__V1__AdminRequest__ArgsEntry *e = ctx->req->args[i];
		if (e->key != NULL && strcmp(e->key, name) == 0) {
			return (e->value != NULL ? e->value : "");
		}
	}
	return (NULL);
}

static int
need_arg(admin_ctx *ctx, const char *name, const char **out)
{
	*out = arg(ctx, name);
	if (*out == NULL || (*out)[0] == '\0') {
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
		    "%s needs the argument %s", ctx->req->command, name);
		return (coffer_err_hint(&ctx->err, "pass --%s", name));
	}
	return (0);
}

static int
limit_arg(admin_ctx *ctx, long *limit)
{
	*limit = COORD_ADMIN_DEFAULT_LIST;
	const char *s = arg(ctx, "limit");
	if (s == NULL) {
		return (0);
	}
	char *end = NULL;
	long v = strtol(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || v < 1 || v > COORD_ADMIN_MAX_LIST) {
		char shown[32];
		coffer_utf8_printable_ascii(shown, sizeof(shown), s);
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
		    "limit \"%s\" is not a number from 1 to %d", shown, COORD_ADMIN_MAX_LIST);
		return (coffer_err_hint(
		    &ctx->err, "pass --limit N with N from 1 to %d", COORD_ADMIN_MAX_LIST));
	}
	*limit = v;
	return (0);
}

static PGresult *
query(admin_ctx *ctx, const char *what, const char *sql, int n, const char *const *vals, int *rv)
{
	PGresult *res =
	    PQexecParams(coord_catalog_conn(ctx->cat), sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		*rv = 0;
		return (res);
	}
	*rv = fail_with(ctx, coord_catalog_pg_error(ctx->cat, res, what, &ctx->err));
	return (NULL);
}

static bool
is_null(const PGresult *res, int row, int col)
{
	return (PQgetisnull(res, row, col) != 0);
}

static int64_t
int_at(const PGresult *res, int row, int col)
{
	return (is_null(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10));
}

/* Adds a time column holding Unix ms as RFC 3339 text, or null. */
static void
add_time(cJSON *o, const char *name, const PGresult *res, int row, int col)
{
	if (is_null(res, row, col)) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	char buf[40];
	cJSON_AddStringToObject(
	    o, name, coffer_time_format(buf, sizeof(buf), int_at(res, row, col)));
}

static void
add_int(cJSON *o, const char *name, const PGresult *res, int row, int col)
{
	if (is_null(res, row, col)) {
		cJSON_AddNullToObject(o, name);
	} else {
		cJSON_AddNumberToObject(o, name, (double)int_at(res, row, col));
	}
}

static void
add_text(cJSON *o, const char *name, const PGresult *res, int row, int col)
{
	if (is_null(res, row, col)) {
		cJSON_AddNullToObject(o, name);
	} else {
		cJSON_AddStringToObject(o, name, PQgetvalue(res, row, col));
	}
}

/* A column as a backup object's text or time: null when SQL NULL. */
static const char *
obj_text(const PGresult *res, int row, int col)
{
	return (is_null(res, row, col) ? COFFER_OBJ_NULL_TEXT : PQgetvalue(res, row, col));
}

static int64_t
obj_int(const PGresult *res, int row, int col)
{
	return (is_null(res, row, col) ? COFFER_OBJ_NULL : int_at(res, row, col));
}

static const char *
service_owner(const admin_ctx *ctx, const char *service)
{
	char section[96];
	if (!coffer_name_valid(service)) {
		return (NULL);
	}
	snprintf(section, sizeof(section), "service.%s", service);
	if (!coffer_config_has_section(ctx->cfg->ini, section)) {
		return (NULL);
	}
	return (coffer_config_str(ctx->cfg->ini, section, "owner"));
}

static int
unknown_service(admin_ctx *ctx, const char *service)
{
	char shown[80];
	coffer_utf8_printable_ascii(shown, sizeof(shown), service);
	refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_ENOENT,
	    "service %s is not defined in the coordinator's configuration", shown);
	return (coffer_err_hint(&ctx->err,
	    "check the name with `coffer status`, or add a [service.%s] section", shown));
}

static int
out_of_memory(admin_ctx *ctx)
{
	return (refuse(ctx, COFFER__V1__STATUS__STATUS_INTERNAL, COFFER_ENOMEM,
	    "the coordinator ran out of memory building the reply"));
}

/* --- status ---------------------------------------------------------------- */

static int
status_one(admin_ctx *ctx, const char *service, cJSON *list)
{
	int rv = 0;
	const char *vals[] = { service };
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !cJSON_AddItemToArray(list, o)) {
		cJSON_Delete(o);
		return (out_of_memory(ctx));
	}
	cJSON_AddStringToObject(o, "service", service);
	const char *owner = service_owner(ctx, service);
	cJSON_AddStringToObject(o, "owner", owner != NULL ? owner : "");

	/* "Last" and "age" by when the coordinator learnt of the backup
	 * (settled_at), not by the agent's finished_at: a backup from an
	 * agent thirty days ahead would otherwise stay "last" for thirty days,
	 * zero seconds old. finished_at is shown as the agent reported it. Only
	 * a backup the coordinator verified (coordinator/drill/verify.c) is
	 * "last": an agent's claim alone is not a restore point. */
	PGresult *res = query(ctx, "reading the last backup",
	    "SELECT id, kind, (extract(epoch FROM finished_at) * 1000)::bigint, stored_bytes, "
	    "plain_bytes, (extract(epoch FROM finished_at - started_at) * 1000)::bigint, agent, "
	    "(extract(epoch FROM COALESCE(settled_at, received_at)) * 1000)::bigint "
	    "FROM backups WHERE service = $1 AND status = 'completed' "
	    "AND verify_state = 'verified' "
	    "ORDER BY COALESCE(settled_at, received_at) DESC, id DESC LIMIT 1",
	    1, vals, &rv);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 1) {
		coffer_obj_backup ob;
		coffer_obj_backup_init(&ob);
		ob.id = obj_text(res, 0, 0);
		ob.kind = obj_text(res, 0, 1);
		ob.agent = obj_text(res, 0, 6);
		ob.finished_at_ms = obj_int(res, 0, 2);
		ob.settled_at_ms = obj_int(res, 0, 7);
		int64_t age = (ctx->now_ms - int_at(res, 0, 7)) / 1000;
		ob.age_seconds = age > 0 ? age : 0;
		ob.duration_ms = obj_int(res, 0, 5);
		ob.plaintext_bytes = obj_int(res, 0, 4);
		ob.stored_bytes = obj_int(res, 0, 3);
		cJSON *b = coffer_obj_backup_json(&ob);
		if (b == NULL || !cJSON_AddItemToObject(o, "last_backup", b)) {
			cJSON_Delete(b);
			PQclear(res);
			return (out_of_memory(ctx));
		}
	} else {
		cJSON_AddNullToObject(o, "last_backup");
	}
	PQclear(res);

	res = query(ctx, "counting backups",
	    "SELECT count(*) FILTER (WHERE status = 'completed' AND verify_state = 'verified'), "
	    "count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'running'), "
	    "count(*) FILTER (WHERE status = 'completed' AND verify_state = 'unverified'), "
	    "count(*) FILTER (WHERE verify_state = 'rejected' AND status <> 'deleted') "
	    "FROM backups WHERE service = $1",
	    1, vals, &rv);
	if (res == NULL) {
		return (rv);
	}
	add_int(o, "completed", res, 0, 0);
	add_int(o, "failed", res, 0, 1);
	add_int(o, "running", res, 0, 2);
	add_int(o, "unverified", res, 0, 3);
	add_int(o, "rejected", res, 0, 4);
	PQclear(res);

	res = query(ctx, "reading the service's agents",
	    "SELECT name, (extract(epoch FROM last_contact_at) * 1000)::bigint, "
	    "revoked_at IS NOT NULL, clock_skew_ms FROM agents WHERE service = $1 "
	    "ORDER BY name LIMIT 100",
	    1, vals, &rv);
	if (res == NULL) {
		return (rv);
	}
	cJSON *agents = cJSON_AddArrayToObject(o, "agents");
	for (int i = 0; agents != NULL && i < PQntuples(res); i++) {
		cJSON *a = cJSON_CreateObject();
		if (a == NULL || !cJSON_AddItemToArray(agents, a)) {
			cJSON_Delete(a);
			agents = NULL;
			break;
		}
		add_text(a, "name", res, i, 0);
		add_time(a, "last_contact_at", res, i, 1);
		cJSON_AddBoolToObject(a, "revoked", PQgetvalue(res, i, 2)[0] == 't');
		add_int(a, "clock_skew_ms", res, i, 3);
	}
	PQclear(res);
	if (agents == NULL) {
		return (out_of_memory(ctx));
	}
	/* Restore tested, not theoretical: the last drill beside the last backup. */
	if ((rv = coord_drills_status(ctx->cat, service, o, &ctx->err)) != 0) {
		return (fail_with(ctx, rv));
	}
	/* Recoverable with production gone: the DR copies. */
	if ((rv = coord_drcopy_status(ctx->cat, ctx->cfg, service, o, &ctx->err)) != 0) {
		return (fail_with(ctx, rv));
	}
	return (0);
}

static int
cmd_status(admin_ctx *ctx)
{
	const char *only = arg(ctx, "service");
	const char *const *names = NULL;
	size_t n = 0;
	if (coffer_config_sections(ctx->cfg->ini, "service", &names, &n) != 0) {
		n = 0;
	}
	if (only != NULL) {
		if (service_owner(ctx, only) == NULL) {
			return (unknown_service(ctx, only));
		}
		snprintf(ctx->subject, sizeof(ctx->subject), "%s", only);
	}
	char buf[40];
	cJSON_AddStringToObject(
	    ctx->result, "generated_at", coffer_time_format(buf, sizeof(buf), ctx->now_ms));
	cJSON *list = cJSON_AddArrayToObject(ctx->result, "services");
	if (list == NULL) {
		return (out_of_memory(ctx));
	}
	for (size_t i = 0; i < n; i++) {
		if (only != NULL && strcmp(only, names[i]) != 0) {
			continue;
		}
		int rv = status_one(ctx, names[i], list);
		if (rv != 0) {
			return (rv);
		}
	}
	/* Where the audit chain is anchored outside the catalog: without DR,
	 * only the local mark in the state directory stands between whoever
	 * holds the catalog and a cut tail. */
	cJSON *anchor = cJSON_AddObjectToObject(ctx->result, "audit_anchor");
	if (anchor == NULL) {
		return (out_of_memory(ctx));
	}
	bool dr = coffer_config_has_section(ctx->cfg->ini, "repository.dr");
	cJSON_AddStringToObject(anchor, "local", "state_dir/audit-mark");
	cJSON_AddStringToObject(anchor, "outside", dr ? "dr" : "none");
	if (!dr) {
		cJSON_AddStringToObject(anchor, "warning",
		    "no outside anchor: the audit chain's head is exported nowhere (configure "
		    "[repository.dr]); a cut tail is caught only by the local mark");
	}
	/* Legal holds belong in the overview: they override retention. */
	cJSON *holds = NULL;
	int rv = coord_holds_list(ctx->cat, only, COORD_ADMIN_DEFAULT_LIST, &holds, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	if (!cJSON_AddItemToObject(ctx->result, "holds", holds)) {
		cJSON_Delete(holds);
		return (out_of_memory(ctx));
	}
	return (0);
}

/* --- backups.list ------------------------------------------------------------ */

static int
cmd_backups_list(admin_ctx *ctx)
{
	const char *service;
	long limit;
	int rv;
	if ((rv = need_arg(ctx, "service", &service)) != 0 || (rv = limit_arg(ctx, &limit)) != 0) {
		return (rv);
	}
	if (service_owner(ctx, service) == NULL) {
		return (unknown_service(ctx, service));
	}
	snprintf(ctx->subject, sizeof(ctx->subject), "%s", service);
	char lim[24];
	snprintf(lim, sizeof(lim), "%ld", limit);
	const char *vals[] = { service, lim };
	PGresult *res = query(ctx, "listing backups",
	    "SELECT id, kind, status, agent, repo, (extract(epoch FROM started_at) * 1000)::bigint, "
	    "(extract(epoch FROM finished_at) * 1000)::bigint, "
	    "(extract(epoch FROM finished_at - started_at) * 1000)::bigint, plain_bytes, "
	    "stored_bytes, key_id, failure_reason, verify_state, "
	    "(extract(epoch FROM settled_at) * 1000)::bigint FROM backups WHERE service = $1 "
	    "ORDER BY received_at DESC, id DESC LIMIT $2::integer",
	    2, vals, &rv);
	if (res == NULL) {
		return (rv);
	}
	cJSON_AddStringToObject(ctx->result, "service", service);
	cJSON *list = cJSON_AddArrayToObject(ctx->result, "backups");
	for (int i = 0; list != NULL && i < PQntuples(res); i++) {
		coffer_obj_backup ob;
		coffer_obj_backup_init(&ob);
		ob.id = obj_text(res, i, 0);
		ob.service = service;
		ob.kind = obj_text(res, i, 1);
		ob.agent = obj_text(res, i, 3);
		ob.status = obj_text(res, i, 2);
		ob.verify_state = obj_text(res, i, 12);
		ob.repository = obj_text(res, i, 4);
		ob.started_at_ms = obj_int(res, i, 5);
		ob.finished_at_ms = obj_int(res, i, 6);
		ob.settled_at_ms = obj_int(res, i, 13);
		ob.duration_ms = obj_int(res, i, 7);
		ob.plaintext_bytes = obj_int(res, i, 8);
		ob.stored_bytes = obj_int(res, i, 9);
		ob.key_id = obj_text(res, i, 10);
		ob.failure_reason = obj_text(res, i, 11);
		cJSON *b = coffer_obj_backup_json(&ob);
		if (b == NULL || !cJSON_AddItemToArray(list, b)) {
			cJSON_Delete(b);
			list = NULL;
			break;
		}
	}
	PQclear(res);
	if (list == NULL) {
		return (out_of_memory(ctx));
	}
	/* Beside the backups: what they and the archived WAL can recover to. */
	cJSON *windows = cJSON_AddArrayToObject(ctx->result, "windows");
	if (windows == NULL) {
		return (out_of_memory(ctx));
	}
	int wrc = coord_walwatch_windows(ctx->cat, service, windows, &ctx->err);
	return (wrc != 0 ? fail_with(ctx, wrc) : 0);
}

/* --- agents ---------------------------------------------------------------- */

/* agents.enroll with drill_runner=true: service is a comma-separated list
 * of the services the runner may drill, each defined here. */
static int
enroll_runner(admin_ctx *ctx, const char *service_list, const char *agent, const char *pubkey)
{
	enum {
		MAX_SERVICES = 64
	};
	char list[MAX_SERVICES * 64 + 1];
	if (strlen(service_list) >= sizeof(list)) {
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
		    "too many services for one drill runner");
		return (coffer_err_hint(
		    &ctx->err, "enroll at most %d services at a time", MAX_SERVICES));
	}
	snprintf(list, sizeof(list), "%s", service_list);
	const char *services[MAX_SERVICES], *owners[MAX_SERVICES];
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (n == MAX_SERVICES) {
			refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
			    "too many services for one drill runner");
			return (coffer_err_hint(
			    &ctx->err, "enroll at most %d services at a time", MAX_SERVICES));
		}
		if ((owners[n] = service_owner(ctx, t)) == NULL) {
			return (unknown_service(ctx, t));
		}
		services[n++] = t;
	}
	coffer_sign_pubkey *pub = NULL;
	int rv;
	if ((rv = coffer_sign_pubkey_parse(pubkey, strlen(pubkey), &pub, &ctx->err)) != 0) {
		coffer_err_wrap(&ctx->err, "the drill runner's public key");
		coffer_err_hint(&ctx->err,
		    "give the public key `coffer-agent init` printed (64 hex "
		    "digits) or a PEM public key file");
		ctx->status = COFFER__V1__STATUS__STATUS_REFUSED;
		return (rv);
	}
	bool already = false;
	rv = coord_agents_enroll_runner(
	    ctx->cat, ctx->key, ctx->actor, services, owners, n, agent, pub, &already, &ctx->err);
	if (rv == 0) {
		char fp[COFFER_SIGN_FINGERPRINT_HEX];
		coffer_sign_fingerprint(pub, fp);
		cJSON_AddStringToObject(ctx->result, "agent", agent);
		cJSON_AddStringToObject(ctx->result, "role", "drill_runner");
		cJSON *arr = cJSON_AddArrayToObject(ctx->result, "drills");
		for (size_t i = 0; arr != NULL && i < n; i++) {
			cJSON_AddItemToArray(arr, cJSON_CreateString(services[i]));
		}
		cJSON_AddStringToObject(ctx->result, "service", service_list);
		cJSON_AddStringToObject(ctx->result, "fingerprint", fp);
		cJSON_AddBoolToObject(ctx->result, "already", already);
	}
	coffer_sign_pubkey_free(pub);
	return (rv == 0 ? 0 : fail_with(ctx, rv));
}

static int
cmd_agents_enroll(admin_ctx *ctx)
{
	const char *service, *agent, *pubkey;
	int rv;
	if ((rv = need_arg(ctx, "service", &service)) != 0 ||
	    (rv = need_arg(ctx, "agent", &agent)) != 0 ||
	    (rv = need_arg(ctx, "pubkey", &pubkey)) != 0) {
		return (rv);
	}
	coffer_utf8_printable_ascii(ctx->subject, sizeof(ctx->subject), agent);
	const char *runner = arg(ctx, "drill_runner");
	if (runner != NULL && strcmp(runner, "true") == 0) {
		return (enroll_runner(ctx, service, agent, pubkey));
	}
	const char *owner = service_owner(ctx, service);
	if (owner == NULL) {
		return (unknown_service(ctx, service));
	}
	coffer_sign_pubkey *pub = NULL;
	if ((rv = coffer_sign_pubkey_parse(pubkey, strlen(pubkey), &pub, &ctx->err)) != 0) {
		coffer_err_wrap(&ctx->err, "the agent's public key");
		coffer_err_hint(&ctx->err,
		    "give the public key `coffer-agent init` printed (64 hex "
		    "digits) or a PEM public key file");
		ctx->status = COFFER__V1__STATUS__STATUS_REFUSED;
		return (rv);
	}
	bool already = false;
	rv = coord_agents_enroll(
	    ctx->cat, ctx->key, ctx->actor, service, owner, agent, pub, &already, &ctx->err);
	if (rv == 0) {
		char fp[COFFER_SIGN_FINGERPRINT_HEX];
		coffer_sign_fingerprint(pub, fp);
		cJSON_AddStringToObject(ctx->result, "agent", agent);
		cJSON_AddStringToObject(ctx->result, "service", service);
		cJSON_AddStringToObject(ctx->result, "fingerprint", fp);
		cJSON_AddBoolToObject(ctx->result, "already", already);
	}
	coffer_sign_pubkey_free(pub);
	return (rv == 0 ? 0 : fail_with(ctx, rv));
}

static int
cmd_agents_revoke(admin_ctx *ctx)
{
	const char *agent;
	int rv;
	if ((rv = need_arg(ctx, "agent", &agent)) != 0) {
		return (rv);
	}
	coffer_utf8_printable_ascii(ctx->subject, sizeof(ctx->subject), agent);
	bool already = false;
	rv = coord_agents_revoke(ctx->cat, ctx->key, ctx->actor, agent, &already, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	cJSON_AddStringToObject(ctx->result, "agent", agent);
	cJSON_AddBoolToObject(ctx->result, "already", already);
	/* The catalog no longer lets the agent report, but its repository
	 * credentials still open the bucket: say which to disable. */
	const char *vals[] = { agent };
	PGresult *res = query(ctx, "reading the revoked agent's service",
	    "SELECT service FROM agents WHERE name = $1 AND service IS NOT NULL", 1, vals, &rv);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 1) {
		const char *service = PQgetvalue(res, 0, 0);
		const coord_service_policy *p = coord_config_service(ctx->cfg, service);
		char note[1024];
		coord_s3policy_revoke_note(ctx->cfg, service, note, sizeof(note));
		cJSON_AddStringToObject(ctx->result, "service", service);
		if (p != NULL && p->s3_principal != NULL) {
			cJSON_AddStringToObject(ctx->result, "principal", p->s3_principal);
		}
		cJSON_AddStringToObject(ctx->result, "credentials", note);
	}
	PQclear(res);
	return (0);
}

static int
cmd_agents_list(admin_ctx *ctx)
{
	cJSON *list = NULL;
	int rv = coord_agents_list(ctx->cat, &list, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	if (!cJSON_AddItemToObject(ctx->result, "agents", list)) {
		cJSON_Delete(list);
		return (out_of_memory(ctx));
	}
	return (0);
}

/* --- audit ------------------------------------------------------------------- */

static int
cmd_audit_list(admin_ctx *ctx)
{
	long limit;
	int rv;
	if ((rv = limit_arg(ctx, &limit)) != 0) {
		return (rv);
	}
	const char *since = arg(ctx, "since");
	int64_t since_ms = 0;
	if (since != NULL && coffer_time_parse(since, &since_ms) != 0) {
		char shown[64];
		coffer_utf8_printable_ascii(shown, sizeof(shown), since);
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
		    "since \"%s\" is not a time", shown);
		return (
		    coffer_err_hint(&ctx->err, "write it as RFC 3339, e.g. 2026-11-23T02:00:00Z"));
	}
	char lim[24], ms[24], cap[24];
	snprintf(lim, sizeof(lim), "%ld", limit);
	snprintf(ms, sizeof(ms), "%" PRId64, since_ms);
	snprintf(cap, sizeof(cap), "%d", LIST_BYTES_MAX);
	const char *vals[] = { lim, ms, cap };
	/*
	 * A running total of each row's size, computed by PostgreSQL, keeps
	 * what libpq holds under LIST_BYTES_MAX whatever the rows contain
	 * (details may be 64 KiB each): rows past the budget come back without
	 * their details and are left out. Without since, the newest rows are
	 * wanted (the budget counts from the newest), still shown oldest first.
	 */
	PGresult *res = query(ctx, "listing the audit log",
	    since != NULL
	        ? "SELECT chain_seq, at_ms, actor, action, subject, "
	          "CASE WHEN run <= $3::bigint THEN details END, run > $3::bigint FROM ("
	          "SELECT chain_seq, (extract(epoch FROM at) * 1000)::bigint AS at_ms, actor, action, "
	          "subject, details::text AS details, sum(octet_length(details::text) + "
	          "octet_length(actor) + octet_length(subject) + 128) OVER (ORDER BY chain_seq) AS run "
	          "FROM audit WHERE at >= to_timestamp($2::bigint / 1000.0) "
	          "ORDER BY chain_seq LIMIT $1::integer) t ORDER BY chain_seq"
	        : "SELECT chain_seq, at_ms, actor, action, subject, "
	          "CASE WHEN run <= $3::bigint THEN details END, run > $3::bigint FROM ("
	          "SELECT chain_seq, (extract(epoch FROM at) * 1000)::bigint AS at_ms, actor, action, "
	          "subject, details::text AS details, sum(octet_length(details::text) + "
	          "octet_length(actor) + octet_length(subject) + 128) OVER (ORDER BY chain_seq DESC) "
	          "AS run FROM audit WHERE $2::bigint = 0 "
	          "ORDER BY chain_seq DESC LIMIT $1::integer) t ORDER BY chain_seq",
	    3, vals, &rv);
	if (res == NULL) {
		return (rv);
	}
	cJSON *list = cJSON_AddArrayToObject(ctx->result, "rows");
	bool truncated = false;
	for (int i = 0; list != NULL && i < PQntuples(res); i++) {
		if (PQgetvalue(res, i, 6)[0] == 't') {
			truncated = true;
			continue;
		}
		cJSON *r = cJSON_CreateObject();
		if (r == NULL || !cJSON_AddItemToArray(list, r)) {
			cJSON_Delete(r);
			list = NULL;
			break;
		}
		add_int(r, "chain_seq", res, i, 0);
		add_time(r, "at", res, i, 1);
		add_text(r, "actor", res, i, 2);
		add_text(r, "action", res, i, 3);
		add_text(r, "subject", res, i, 4);
		cJSON *d = cJSON_Parse(PQgetvalue(res, i, 5));
		if (d != NULL) {
			cJSON_AddItemToObject(r, "details", d);
		} else {
			add_text(r, "details", res, i, 5);
		}
	}
	PQclear(res);
	if (list == NULL) {
		return (out_of_memory(ctx));
	}
	cJSON_AddBoolToObject(ctx->result, "truncated", truncated);
	return (0);
}

static int
cmd_audit_verify(admin_ctx *ctx)
{
	coord_audit_result res;
	memset(&res, 0, sizeof(res));
	coffer_err verr;
	coffer_err_clear(&verr);
	coord_audit_head head;
	bool exported = false;
	int rv =
	    coord_audit_verify_all(ctx->cat, ctx->key, ctx->cfg, &res, &head, &exported, &verr);
	if (rv != 0 && rv != COFFER_ECORRUPT && rv != COFFER_EAUTH) {
		ctx->err = verr;
		return (fail_with(ctx, rv));
	}
	/* A broken chain is the answer, not a failure of the request. */
	char mac[2 * COORD_AUDIT_MAC_LEN + 1];
	coffer_hex_encode(res.head_mac, COORD_AUDIT_MAC_LEN, mac);
	cJSON_AddBoolToObject(ctx->result, "intact", rv == 0 && res.intact);
	cJSON_AddNumberToObject(ctx->result, "rows", (double)res.rows);
	cJSON_AddNumberToObject(ctx->result, "last_good", (double)res.last_good);
	cJSON_AddNumberToObject(ctx->result, "head_seq", (double)res.head_seq);
	cJSON_AddNumberToObject(ctx->result, "mark_seq", (double)res.mark_seq);
	cJSON_AddNumberToObject(ctx->result, "agents", (double)res.agents);
	if (rv == 0 && res.intact) {
		cJSON_AddStringToObject(ctx->result, "head_mac", mac);
	} else {
		cJSON_AddNumberToObject(ctx->result, "bad_seq", (double)res.bad_seq);
		cJSON_AddStringToObject(ctx->result, "problem", res.problem);
	}
	if (exported) {
		cJSON *h = cJSON_AddObjectToObject(ctx->result, "exported_head");
		cJSON_AddNumberToObject(h, "chain_seq", (double)head.chain_seq);
		cJSON_AddStringToObject(h, "key", head.key);
		if (head.resumed_by > 0) {
			cJSON_AddNumberToObject(h, "resumed_by", (double)head.resumed_by);
		}
	}
	return (0);
}

/* An operator who has looked at a head that no longer holds lets the
 * export go on (coord_audit_export_resume audits it with the reason). */
static int
cmd_audit_resume_export(admin_ctx *ctx)
{
	const char *reason;
	int rv;
	if ((rv = need_arg(ctx, "reason", &reason)) != 0) {
		return (rv);
	}
	snprintf(ctx->subject, sizeof(ctx->subject), "dr");
	coord_audit_head head;
	rv = coord_audit_export_resume(
	    ctx->cat, ctx->key, ctx->cfg, ctx->actor, reason, &head, &ctx->err);
	if (rv == 0) {
		/* The same look covers the local high-water mark (docs/CATALOG.md). */
		rv = coord_audit_mark_resume(ctx->cat, &ctx->err);
	}
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	cJSON *h = cJSON_AddObjectToObject(ctx->result, "acknowledged_head");
	cJSON_AddNumberToObject(h, "chain_seq", (double)head.chain_seq);
	cJSON_AddStringToObject(h, "key", head.key);
	cJSON_AddNumberToObject(ctx->result, "audit_row", (double)head.resumed_by);
	return (0);
}

/* --- backup.run -------------------------------------------------------------- */

static int audit_request(admin_ctx *ctx, const char *action);

static int
cmd_backup_run(admin_ctx *ctx)
{
	const char *service;
	int rv;
	if ((rv = need_arg(ctx, "service", &service)) != 0) {
		return (rv);
	}
	if (service_owner(ctx, service) == NULL) {
		return (unknown_service(ctx, service));
	}
	snprintf(ctx->subject, sizeof(ctx->subject), "%s", service);
	const char *kind = arg(ctx, "kind");
	if (kind == NULL) {
		kind = "logical";
	}
	if (strcmp(kind, "logical") != 0 && strcmp(kind, "physical") != 0) {
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
		    "backup kind must be logical or physical");
		return (coffer_err_hint(&ctx->err, "pass --kind logical or --kind physical"));
	}
	if ((rv = coord_catalog_begin(ctx->cat, &ctx->err)) != 0) {
		return (fail_with(ctx, rv));
	}
	const char *svals[] = { service };
	PGresult *res = query(ctx, "finding the service's agent",
	    "SELECT name FROM agents WHERE service = $1 AND revoked_at IS NULL ORDER BY name LIMIT 1",
	    1, svals, &rv);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_ENOENT,
		    "service %s has no enrolled agent to run the backup", service);
		coffer_err_hint(
		    &ctx->err, "enroll one with `coffer agents enroll --service %s`", service);
		rv = COFFER_ENOENT;
		goto fail;
	}
	char agent[80];
	snprintf(agent, sizeof(agent), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	char args[64];
	snprintf(args, sizeof(args), "{\"kind\": \"%s\"}", kind);
	const char *ivals[] = { service, args, ctx->actor };
	res = query(ctx, "queueing the backup command",
	    "INSERT INTO agent_commands (service, kind, args, requested_by) "
	    "VALUES ($1, 'backup', $2::jsonb, $3) RETURNING id",
	    3, ivals, &rv);
	if (res == NULL) {
		goto fail;
	}
	int64_t id = int_at(res, 0, 0);
	PQclear(res);
	cJSON_AddNumberToObject(ctx->result, "command_id", (double)id);
	cJSON_AddStringToObject(ctx->result, "service", service);
	cJSON_AddStringToObject(ctx->result, "agent", agent);
	cJSON_AddStringToObject(ctx->result, "kind", kind);
	ctx->status = COFFER__V1__STATUS__STATUS_OK;
	if ((rv = audit_request(ctx, "admin.backup.run")) != 0) {
		goto fail;
	}
	if ((rv = coord_catalog_commit(ctx->cat, &ctx->err)) != 0) {
		fail_with(ctx, rv);
		goto fail;
	}
	ctx->audited = true;
	return (0);
fail:
	coord_catalog_rollback(ctx->cat);
	if (ctx->status == COFFER__V1__STATUS__STATUS_OK) {
		ctx->status = COFFER__V1__STATUS__STATUS_INTERNAL;
	}
	return (rv != 0 ? rv : COFFER_EINTERNAL);
}

/* --- holds, retention plan, alerts ------------------------------------------ */

static int
cmd_hold_add(admin_ctx *ctx)
{
	const char *backup, *reason;
	int rv;
	if ((rv = need_arg(ctx, "backup", &backup)) != 0 ||
	    (rv = need_arg(ctx, "reason", &reason)) != 0) {
		return (rv);
	}
	coffer_utf8_printable_ascii(ctx->subject, sizeof(ctx->subject), backup);
	/* coord_hold_add writes its own "hold.added" row with the operator. */
	rv = coord_hold_add(ctx->cat, ctx->key, ctx->actor, backup, reason, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	cJSON_AddStringToObject(ctx->result, "backup_id", backup);
	cJSON_AddStringToObject(ctx->result, "hold", "added");
	return (0);
}

static int
cmd_hold_remove(admin_ctx *ctx)
{
	const char *backup;
	int rv;
	if ((rv = need_arg(ctx, "backup", &backup)) != 0) {
		return (rv);
	}
	coffer_utf8_printable_ascii(ctx->subject, sizeof(ctx->subject), backup);
	rv = coord_hold_remove(ctx->cat, ctx->key, ctx->actor, backup, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	cJSON_AddStringToObject(ctx->result, "backup_id", backup);
	cJSON_AddStringToObject(ctx->result, "hold", "removed");
	return (0);
}

static int
cmd_holds_list(admin_ctx *ctx)
{
	cJSON *list = NULL;
	int rv =
	    coord_holds_list(ctx->cat, arg(ctx, "service"), COORD_ADMIN_MAX_LIST, &list, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	if (!cJSON_AddItemToObject(ctx->result, "holds", list)) {
		cJSON_Delete(list);
		return (out_of_memory(ctx));
	}
	return (0);
}

static int
cmd_retention_plan(admin_ctx *ctx)
{
	const char *service;
	int rv;
	if ((rv = need_arg(ctx, "service", &service)) != 0) {
		return (rv);
	}
	if (service_owner(ctx, service) == NULL) {
		return (unknown_service(ctx, service));
	}
	cJSON *plan = NULL;
	rv = coord_retention_plan(ctx->cat, ctx->cfg, service, ctx->now_ms, &plan, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	if (!cJSON_AddItemToObject(ctx->result, "plan", plan)) {
		cJSON_Delete(plan);
		return (out_of_memory(ctx));
	}
	return (0);
}

static int
cmd_alerts_list(admin_ctx *ctx)
{
	long limit;
	int rv;
	if ((rv = limit_arg(ctx, &limit)) != 0) {
		return (rv);
	}
	cJSON *list = NULL;
	rv = coord_alerts_list(ctx->cat, (int)limit, &list, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	if (!cJSON_AddItemToObject(ctx->result, "alerts", list)) {
		cJSON_Delete(list);
		return (out_of_memory(ctx));
	}
	return (0);
}

/* --- drills ------------------------------------------------------------------ */

static int
cmd_drill_run(admin_ctx *ctx)
{
	const char *service;
	int rv;
	if ((rv = need_arg(ctx, "service", &service)) != 0) {
		return (rv);
	}
	if (service_owner(ctx, service) == NULL) {
		return (unknown_service(ctx, service));
	}
	snprintf(ctx->subject, sizeof(ctx->subject), "%s", service);
	int64_t id = 0;
	rv = coord_drills_start(ctx->cat, ctx->key, ctx->cfg, service, ctx->actor, ctx->now_ms, &id,
	    ctx->result, &ctx->err);
	return (rv == 0 ? 0 : fail_with(ctx, rv));
}

static int
cmd_drill_list(admin_ctx *ctx)
{
	long limit;
	int rv;
	if ((rv = limit_arg(ctx, &limit)) != 0) {
		return (rv);
	}
	const char *service = arg(ctx, "service");
	if (service != NULL) {
		if (service_owner(ctx, service) == NULL) {
			return (unknown_service(ctx, service));
		}
		snprintf(ctx->subject, sizeof(ctx->subject), "%s", service);
	}
	cJSON *list = NULL;
	rv = coord_drills_list(ctx->cat, service, (int)limit, &list, &ctx->err);
	if (rv != 0) {
		return (fail_with(ctx, rv));
	}
	if (!cJSON_AddItemToObject(ctx->result, "drills", list)) {
		cJSON_Delete(list);
		return (out_of_memory(ctx));
	}
	return (0);
}

static const admin_command commands[] = {
	{ "status", 0, " service ", cmd_status },
	{ "backups.list", 0, " service limit ", cmd_backups_list },
	{ "agents.list", 0, " ", cmd_agents_list },
	{ "audit.list", 0, " since limit ", cmd_audit_list },
	{ "audit.verify", 0, " ", cmd_audit_verify },
	{ "audit.resume_export", MAY_OPERATOR, " reason ", cmd_audit_resume_export },
	{ "agents.enroll", MAY_OPERATOR, " service agent pubkey drill_runner ", cmd_agents_enroll },
	{ "agents.revoke", MAY_OPERATOR, " agent ", cmd_agents_revoke },
	{ "backup.run", MAY_OPERATOR, " service kind ", cmd_backup_run },
	{ "holds.list", 0, " service ", cmd_holds_list },
	{ "hold.add", MAY_OPERATOR | MAY_COMPLIANCE, " backup reason ", cmd_hold_add },
	{ "hold.remove", MAY_COMPLIANCE, " backup ", cmd_hold_remove },
	{ "retention.plan", 0, " service ", cmd_retention_plan },
	{ "alerts.list", 0, " limit ", cmd_alerts_list },
	{ "drill.run", MAY_OPERATOR, " service ", cmd_drill_run },
	{ "drill.list", 0, " service limit ", cmd_drill_list },
	{ NULL, 0, NULL, NULL },
};

/* --- audit and reply ------------------------------------------------------- */

static cJSON *
audit_details(const admin_ctx *ctx, const char *reason)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (NULL);
	}
	cJSON_AddStringToObject(d, "status", coffer_adminmsg_status_name(ctx->status));
	if (reason != NULL) {
		cJSON_AddStringToObject(d, "reason", reason);
	}
	if (ctx->status != COFFER__V1__STATUS__STATUS_OK) {
		char msg[COFFER_ERR_MSG_MAX];
		coffer_utf8_printable_ascii(msg, sizeof(msg), ctx->err.msg);
		cJSON_AddStringToObject(d, "error", msg);
	}
	if (ctx->req != NULL) {
		char text[ARG_AUDIT_MAX + 1];
		coffer_utf8_printable_ascii(text, sizeof(text), ctx->req->command);
		cJSON_AddStringToObject(d, "command", text);
		cJSON *a = cJSON_AddObjectToObject(d, "args");
		for (size_t i = 0; a != NULL && i < ctx->req->n_args && i < 16; i++) {
			const Coffer__V1__AdminRequest__ArgsEntry *e = ctx->req->args[i];
			char k[65];
			coffer_utf8_printable_ascii(k, sizeof(k), e->key);
			coffer_utf8_printable_ascii(text, sizeof(text), e->value);
			if (e->value != NULL && strlen(e->value) > ARG_AUDIT_MAX) {
				snprintf(text, sizeof(text), "(%zu bytes)", strlen(e->value));
			}
			if (cJSON_GetObjectItemCaseSensitive(a, k) == NULL) {
				cJSON_AddStringToObject(a, k, text);
			}
		}
	}
	return (d);
}

/* Appends the request's audit row; inside the caller's transaction if one
 * is open. */
static int
audit_request(admin_ctx *ctx, const char *action)
{
	cJSON *d = audit_details(ctx, NULL);
	char *text = d != NULL ? cJSON_PrintUnformatted(d) : NULL;
	cJSON_Delete(d);
	if (text == NULL) {
		return (out_of_memory(ctx));
	}
	coffer_err aerr;
	coffer_err_clear(&aerr);
	int rv = coord_audit_append(
	    ctx->cat, ctx->key, ctx->actor, action, ctx->subject, text, NULL, &aerr);
	cJSON_free(text);
	if (rv != 0) {
		ctx->err = aerr;
		coffer_err_wrap(&ctx->err, "recording the request in the audit log");
		fail_with(ctx, rv);
	}
	return (rv);
}

/* The refusal's audit row; a failure is logged, and the refusal stands. */
static void
audit_refusal(admin_ctx *ctx, const char *reason)
{
	cJSON *d = audit_details(ctx, reason);
	char *text = d != NULL ? cJSON_PrintUnformatted(d) : NULL;
	cJSON_Delete(d);
	coffer_err aerr;
	coffer_err_clear(&aerr);
	int rv = text != NULL ? coord_audit_append(ctx->cat, ctx->key, ctx->actor, "admin.refused",
	                            ctx->subject, text, NULL, &aerr)
	                      : coffer_err_set(&aerr, COFFER_ENOMEM, "no memory for the audit row");
	cJSON_free(text);
	if (rv != 0) {
		coffer_log_warn("refused admin request not audited", "actor=%s reason=%s error=%s",
		    ctx->actor, reason, aerr.msg);
	}
	coffer_log_warn("admin request refused", "actor=%s reason=%s", ctx->actor, reason);
}

static int
encode_reply(admin_ctx *ctx, uint8_t **reply, size_t *reply_len)
{
	char *json = NULL;
	if (ctx->status == COFFER__V1__STATUS__STATUS_OK) {
		json = cJSON_PrintUnformatted(ctx->result);
		if (json == NULL) {
			out_of_memory(ctx);
		}
	}
	char line[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 16] = "";
	if (ctx->status != COFFER__V1__STATUS__STATUS_OK) {
		if (ctx->err.hint[0] != '\0') {
			snprintf(line, sizeof(line), "%s (hint: %s)", ctx->err.msg, ctx->err.hint);
		} else {
			snprintf(line, sizeof(line), "%s", ctx->err.msg);
		}
	}
	Coffer__V1__AdminReply r;
	coffer__v1__admin_reply__init(&r);
	r.status = (Coffer__V1__Status)ctx->status;
	r.error = line;
	r.json = json != NULL ? json : "";
	coffer_err eerr;
	coffer_err_clear(&eerr);
	int rv = coffer_wire_encode(&r.base, COFFER_WIRE_MAX_MSG, reply, reply_len, &eerr);
	if (rv == COFFER_ETOOBIG) {
		/* Listings are capped well below the limit; this is the last guard. */
		r.status = COFFER__V1__STATUS__STATUS_INTERNAL;
		r.error = "the result is larger than a reply may be (hint: ask for fewer rows with "
		          "--limit or --since)";
		r.json = "";
		rv = coffer_wire_encode(&r.base, COFFER_WIRE_MAX_MSG, reply, reply_len, &eerr);
	}
	cJSON_free(json);
	return (rv);
}

static const admin_command *
find_command(const char *name)
{
	for (const admin_command *c = commands; c->name != NULL; c++) {
		if (strcmp(c->name, name) == 0) {
			return (c);
		}
	}
	return (NULL);
}

/* Checks the envelope up to and including the nonce. Returns 0 when the
 * request may run; otherwise ctx->status/err say why, and *reason names it
 * for the audit row. */
static int
authenticate(admin_ctx *ctx, const Coffer__V1__AdminEnvelope *env, const char **reason)
{
	if (env->version != 1) {
		*reason = "malformed";
		return (refuse(ctx, COFFER__V1__STATUS__STATUS_MALFORMED, COFFER_EVERSION,
		    "admin envelope version %u is not supported (this coordinator speaks 1)",
		    env->version));
	}
	const char *op = env->operator_ != NULL ? env->operator_ : "";
	char shown[64];
	coffer_utf8_printable_ascii(shown, sizeof(shown), op);
	snprintf(ctx->actor, sizeof(ctx->actor), "operator:%s", shown[0] != '\0' ? shown : "?");
	if (!coffer_name_valid(op) || env->nonce.len < COFFER_ADMINMSG_NONCE_BYTES ||
	    env->nonce.len > 64 || env->signature.len != COFFER_SIGN_BYTES || env->body.len == 0) {
		*reason = "malformed";
		return (refuse(ctx, COFFER__V1__STATUS__STATUS_MALFORMED, COFFER_EPROTO,
		    "admin envelope is malformed: it needs an operator name, a 16-64 byte nonce, "
		    "a body and a 64-byte signature"));
	}
	char section[96];
	snprintf(section, sizeof(section), "operator.%s", op);
	if (!coffer_config_has_section(ctx->cfg->ini, section)) {
		*reason = "unknown_operator";
		refuse(ctx, COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT, COFFER_EAUTH,
		    "operator %s is not known to this coordinator", op);
		return (coffer_err_hint(&ctx->err,
		    "add [operator.%s] with public_key and role to coordinator.conf, or fix "
		    "[coffer] operator in cli.conf",
		    op));
	}
	const char *path = coffer_config_str(ctx->cfg->ini, section, "public_key");
	coffer_sign_pubkey *pub = NULL;
	coffer_err kerr;
	coffer_err_clear(&kerr);
	if (coffer_sign_pubkey_load(path, &pub, &kerr) != 0) {
		*reason = "operator_key_unreadable";
		coffer_log_error("operator public key unreadable", "operator=%s path=%s", op, path);
		refuse(ctx, COFFER__V1__STATUS__STATUS_INTERNAL, COFFER_EINTERNAL,
		    "the coordinator cannot read operator %s's public key", op);
		return (coffer_err_hint(&ctx->err,
		    "the coordinator's administrator must fix [%s] public_key", section));
	}
	size_t tbs_len = 0;
	uint8_t *tbs = coffer_wire_admin_tbs(op, env->nonce.data, env->nonce.len, env->sent_at_ms,
	    env->body.data, env->body.len, &tbs_len);
	int rv = tbs == NULL ? COFFER_ENOMEM
	                     : coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &kerr);
	free(tbs);
	coffer_sign_pubkey_free(pub);
	if (rv == COFFER_ENOMEM) {
		*reason = "internal";
		return (out_of_memory(ctx));
	}
	if (rv != 0) {
		*reason = "bad_signature";
		refuse(ctx, COFFER__V1__STATUS__STATUS_BAD_SIGNATURE, COFFER_EAUTH,
		    "the request's signature does not verify with operator %s's public key", op);
		return (coffer_err_hint(&ctx->err,
		    "check that [coffer] key in cli.conf is the key "
		    "whose public half is in [%s] public_key",
		    section));
	}
	int64_t skew = ctx->now_ms - env->sent_at_ms;
	if (skew > COORD_ADMIN_SKEW_MS || skew < -COORD_ADMIN_SKEW_MS) {
		*reason = "stale";
		refuse(ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EAUTH,
		    "the request was sent %" PRId64 " s %s the coordinator's clock; at most %d s "
		    "are allowed",
		    (skew > 0 ? skew : -skew) / 1000, skew > 0 ? "behind" : "ahead of",
		    COORD_ADMIN_SKEW_MS / 1000);
		return (coffer_err_hint(&ctx->err,
		    "synchronise this machine's clock (NTP) and "
		    "send a new request"));
	}
	snprintf(ctx->op, sizeof(ctx->op), "%s", op);

	char now[24], keep[24];
	snprintf(now, sizeof(now), "%" PRId64, ctx->now_ms);
	snprintf(keep, sizeof(keep), "%d", 2 * COORD_ADMIN_SKEW_MS + 60000);
	const char *pvals[] = { now, keep };
	PGresult *res = query(ctx, "pruning old request nonces",
	    "DELETE FROM admin_nonces WHERE seen_at < "
	    "to_timestamp(($1::bigint - $2::bigint) / 1000.0)",
	    2, pvals, &rv);
	if (res == NULL) {
		*reason = "catalog";
		return (rv);
	}
	PQclear(res);
	char hex[2 * 64 + 1];
	coffer_hex_encode(env->nonce.data, env->nonce.len, hex);
	const char *nvals[] = { hex, op, now };
	res = query(ctx, "recording the request nonce",
	    "INSERT INTO admin_nonces (nonce, operator, seen_at) "
	    "VALUES (decode($1, 'hex'), $2, to_timestamp($3::bigint / 1000.0)) "
	    "ON CONFLICT (nonce) DO NOTHING",
	    3, nvals, &rv);
	if (res == NULL) {
		*reason = "catalog";
		return (rv);
	}
	bool fresh = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	if (!fresh) {
		*reason = "replayed";
		refuse(ctx, COFFER__V1__STATUS__STATUS_REPLAYED, COFFER_EAUTH,
		    "this request (nonce %.16s...) was already served; a request runs once", hex);
		return (coffer_err_hint(&ctx->err,
		    "send a new request; `coffer` draws a new nonce "
		    "for each"));
	}
	return (0);
}

int
coord_admin_handle_at(coord_catalog *cat, const coord_config *cfg, const coord_audit_key *key,
    const coffer_clock *clock, const uint8_t *req, size_t len, uint8_t **reply, size_t *reply_len)
{
	*reply = NULL;
	*reply_len = 0;
	admin_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.cat = cat;
	ctx.cfg = cfg;
	ctx.key = key;
	ctx.now_ms = coffer_clock_now(clock);
	ctx.status = COFFER__V1__STATUS__STATUS_OK;
	coffer_err_clear(&ctx.err);
	snprintf(ctx.actor, sizeof(ctx.actor), "operator:?");
	ctx.result = cJSON_CreateObject();
	if (ctx.result == NULL) {
		out_of_memory(&ctx);
	}

	coffer_wire_arena env_arena = { 0 }, body_arena = { 0 };
	const char *reason = NULL;
	const Coffer__V1__AdminEnvelope *env = NULL;
	if (ctx.result == NULL) {
		reason = "internal";
	} else if (len > COFFER_WIRE_MAX_MSG) {
		reason = "malformed";
		refuse(&ctx, COFFER__V1__STATUS__STATUS_MALFORMED, COFFER_ETOOBIG,
		    "admin request of %zu bytes is over the %u byte limit", len,
		    COFFER_WIRE_MAX_MSG);
	} else if (coffer_wire_arena_init(&env_arena, len, &ctx.err) != 0 ||
	    coffer_wire_arena_init(&body_arena, len, &ctx.err) != 0) {
		reason = "internal";
		ctx.status = COFFER__V1__STATUS__STATUS_INTERNAL;
	} else if ((env = (const Coffer__V1__AdminEnvelope *)coffer_wire_decode(
	                &coffer__v1__admin_envelope__descriptor, &env_arena, req, len,
	                COFFER_WIRE_MAX_MSG, &ctx.err)) == NULL) {
		reason = "malformed";
		ctx.status = COFFER__V1__STATUS__STATUS_MALFORMED;
		coffer_err_wrap(&ctx.err, "admin request");
		coffer_err_hint(&ctx.err, "send an AdminEnvelope (use the `coffer` command line)");
	} else if (authenticate(&ctx, env, &reason) == 0) {
		ctx.req = (const Coffer__V1__AdminRequest *)coffer_wire_decode(
		    &coffer__v1__admin_request__descriptor, &body_arena, env->body.data,
		    env->body.len, COFFER_WIRE_MAX_MSG, &ctx.err);
		if (ctx.req == NULL || ctx.req->command == NULL || ctx.req->command[0] == '\0') {
			reason = "malformed";
			if (ctx.req != NULL) {
				coffer_err_set(
				    &ctx.err, COFFER_EPROTO, "admin request names no command");
			}
			ctx.req = NULL;
			ctx.status = COFFER__V1__STATUS__STATUS_MALFORMED;
			coffer_err_hint(
			    &ctx.err, "send an AdminRequest (use the `coffer` command line)");
		}
	}

	const admin_command *cmd = NULL;
	if (reason == NULL) {
		char section[96];
		snprintf(section, sizeof(section), "operator.%s", ctx.op);
		const char *role = coffer_config_str(cfg->ini, section, "role");
		cmd = find_command(ctx.req->command);
		if (cmd == NULL) {
			char shown[64];
			coffer_utf8_printable_ascii(shown, sizeof(shown), ctx.req->command);
			reason = "unknown_command";
			refuse(&ctx, COFFER__V1__STATUS__STATUS_REFUSED, COFFER_EINVAL,
			    "unknown admin command \"%s\"", shown);
			coffer_err_hint(&ctx.err,
			    "upgrade the coordinator, or see `coffer --help` for "
			    "the commands it serves");
		} else if (cmd->roles != 0 && (role_bit(role) & cmd->roles) == 0) {
			reason = "unauthorized";
			refuse(&ctx, COFFER__V1__STATUS__STATUS_UNAUTHORIZED, COFFER_EPERM,
			    "operator %s has role %s, which may not run %s", ctx.op,
			    role != NULL ? role : "(none)", cmd->name);
			coffer_err_hint(&ctx.err,
			    "ask the coordinator's administrator for role = %s in [%s]%s",
			    (cmd->roles & MAY_OPERATOR) != 0 ? "operator" : "compliance", section,
			    cmd->roles == MAY_COMPLIANCE
			        ? " (releasing a legal hold needs a role that placing one does not)"
			        : "");
		} else {
			for (size_t i = 0; i < ctx.req->n_args && reason == NULL; i++) {
				const char *k = ctx.req->args[i]->key;
				char pat[80];
				snprintf(pat, sizeof(pat), " %.64s ", k != NULL ? k : "");
				if (k == NULL || k[0] == '\0' || strchr(k, ' ') != NULL ||
				    strstr(cmd->args, pat) == NULL) {
					char shown[64];
					coffer_utf8_printable_ascii(shown, sizeof(shown), k);
					reason = "unknown_argument";
					refuse(&ctx, COFFER__V1__STATUS__STATUS_REFUSED,
					    COFFER_EINVAL, "%s takes no argument \"%s\"", cmd->name,
					    shown);
					coffer_err_hint(&ctx.err, "it takes:%s", cmd->args);
				}
			}
		}
	}

	if (reason != NULL) {
		audit_refusal(&ctx, reason);
	} else {
		int rv = cmd->fn(&ctx);
		if (rv != 0 && ctx.status == COFFER__V1__STATUS__STATUS_OK) {
			ctx.status = COFFER__V1__STATUS__STATUS_INTERNAL;
		}
		if (!ctx.audited) {
			char action[80];
			snprintf(action, sizeof(action), "admin.%s", cmd->name);
			int status = ctx.status;
			if (audit_request(&ctx, action) != 0 &&
			    status != COFFER__V1__STATUS__STATUS_OK) {
				/* The command's own failure is the better answer. */
				ctx.status = status;
			}
		}
		coffer_log_info("admin request", "actor=%s command=%s status=%s", ctx.actor,
		    cmd->name, coffer_adminmsg_status_name(ctx.status));
	}
	int rv = encode_reply(&ctx, reply, reply_len);
	cJSON_Delete(ctx.result);
	coffer_wire_arena_fini(&env_arena);
	coffer_wire_arena_fini(&body_arena);
	return (rv);
}

int
coord_admin_handle(coord_catalog *cat, const coord_config *cfg, const coord_audit_key *key,
    const uint8_t *req, size_t len, uint8_t **reply, size_t *reply_len)
{
	return (coord_admin_handle_at(cat, cfg, key, NULL, req, len, reply, reply_len));
}

int
coord_admin_status_read(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, cJSON **out, coffer_err *err)
{
	*out = NULL;
	Coffer__V1__AdminRequest req = COFFER__V1__ADMIN_REQUEST__INIT;
	req.command = (char *)"status";
	admin_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.cat = cat;
	ctx.cfg = cfg;
	ctx.now_ms = now_ms;
	ctx.req = &req;
	coffer_err_clear(&ctx.err);
	ctx.result = cJSON_CreateObject();
	if (ctx.result == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the status overview"));
	}
	int rv = cmd_status(&ctx);
	if (rv != 0) {
		*err = ctx.err;
		cJSON_Delete(ctx.result);
		return (rv);
	}
	*out = ctx.result;
	return (0);
}
