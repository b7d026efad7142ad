/*
 * Coordinator configuration: the coordinator.conf schema. See
 * coordinator/policy/coord_config.h. The typed checks live in common/conf/config.c;
 * what is here is what needs to know what a coordinator is.
 */
#include "coordinator/policy/coord_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "common/base/clock.h"
#include "common/base/name.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"
#include "common/repo/repo_s3.h"
#include "common/stream/digest.h"
#include "common/wire/net.h"

#define SECS  1000LL
#define MINS  (60 * SECS)
#define HOURS (60 * MINS)
#define DAYS  (24 * HOURS)
#define YEARS (366 * DAYS)

static int
check_listen(const char *v, coffer_err *err)
{
	return (coffer_net_url_check(v, "listen address", err));
}

/* The service's backup schedule: a cron that fires. A service that is only
 * backed up by hand is a service that is not backed up, so the words people
 * write for "manual" get their own refusal instead of a cron syntax error. */
static int
check_schedule(const char *v, coffer_err *err)
{
	static const char *const manual[] = { "manual", "none", "never", "off", "disabled", "no",
		NULL };
	for (size_t i = 0; manual[i] != NULL; i++) {
		if (strcasecmp(v, manual[i]) == 0) {
			coffer_err_set(err, COFFER_EINVAL,
			    "a manual-only schedule is refused (rule: every service is backed up on a "
			    "schedule)");
			return (coffer_err_hint(err,
			    "write a cron schedule such as 0 2 * * *; "
			    "`coffer backup run` still runs extra backups by hand"));
		}
	}
	coffer_cron *c = coffer_cron_parse(v, err);
	if (c == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_EINVAL);
	}
	/* A fixed instant keeps the verdict independent of when the check runs;
	 * the cron horizon covers every schedule that fires at all. */
	coffer_tz *utc = coffer_tz_load("UTC", NULL);
	int64_t next = 0;
	int rc = utc != NULL ? coffer_cron_next(c, utc, 1767225600, &next, NULL) : 0;
	coffer_tz_free(utc);
	coffer_cron_free(c);
	if (rc == COFFER_ENOENT) {
		coffer_err_set(err, COFFER_EINVAL,
		    "the schedule never fires, which makes the service manual-only (rule: every "
		    "service is backed up on a schedule)");
		return (coffer_err_hint(err,
		    "check the day and month fields (is it a date that "
		    "does not exist?)"));
	}
	return (0);
}

/* A count of periods to keep, or forever. */
static int
check_count_or_forever(const char *v, coffer_err *err)
{
	if (strcmp(v, "forever") == 0) {
		return (0);
	}
	char *end = NULL;
	long n = strtol(v, &end, 10);
	if (v[0] != '\0' && isdigit((unsigned char)v[0]) && *end == '\0' && n >= 0 && n <= 10000) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not a count", v);
	return (coffer_err_hint(err, "write a number from 0 to 10000, or forever"));
}

static int
check_ident(const char *v, coffer_err *err)
{
	if (coffer_name_valid(v)) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not an agent name", v);
	return (coffer_err_hint(
	    err, "use the name the drill runner was enrolled under (" COFFER_NAME_RULE ")"));
}

/* An IAM principal ARN as bucket policies name it: AWS
 * (arn:aws:iam::123456789012:user/coffer-billing, a role) or Ceph radosgw
 * (arn:aws:iam:::user/billing-agent, arn:aws:iam::TENANT:user/UID). It is
 * pasted into a JSON policy, so nothing that could break out of a string. */
static int
check_principal(const char *v, coffer_err *err)
{
	bool ok = strncmp(v, "arn:", 4) == 0 && strlen(v) <= 2048 && strchr(v + 4, ':') != NULL;
	for (const char *c = v; ok && *c != '\0'; c++) {
		ok = *c > 0x20 && *c < 0x7f && *c != '"' && *c != '\\';
	}
	if (ok) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL, "%.200s is not an IAM principal ARN", v);
	return (coffer_err_hint(err,
	    "write the ARN the bucket policy names, e.g. arn:aws:iam::123456789012:user/coffer-billing "
	    "on AWS or arn:aws:iam:::user/billing-agent on Ceph radosgw (docs/S3.md)"));
}

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const repo_types[] = { "posix", "s3", NULL };
static const char *const roles[] = { "operator", "auditor", "compliance", NULL };
static const char *const dr_copies[] = { "none", "all", "daily", "weekly", "monthly", "yearly",
	NULL };
static const char *const dr_locks[] = { "governance", "compliance", NULL };
static const char *const compliances[] = { "none", "gdpr", "hipaa", NULL };
static const char *const drill_backups[] = { "latest", "random", NULL };
static const char *const drill_repos[] = { "primary", "dr", "alternate", NULL };

static const coffer_config_key coordinator_keys[] = {
	{ .name = "listen", .type = COFFER_CONFIG_STRING, .required = true, .check = check_listen },
	{ .name = "admin_listen", .type = COFFER_CONFIG_STRING, .check = check_listen },
	{ .name = "catalog",
	    .type = COFFER_CONFIG_STRING,
	    .required = true,
	    .secret = COFFER_CONFIG_SECRET_IF_PASSWORD },
	/* The tables' owner, for `migrate` only (docs/CATALOG.md): the daemon
	 * runs as the runtime role named by catalog. */
	{ .name = "catalog_owner",
	    .type = COFFER_CONFIG_STRING,
	    .secret = COFFER_CONFIG_SECRET_IF_PASSWORD },
	/* Lets the daemon run as the tables' owner or a superuser. */
	{ .name = "development", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ .name = "audit_key", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "state_dir", .type = COFFER_CONFIG_PATH, .def = "/var/lib/coffer-coordinator" },
	{ .name = "metrics_listen", .type = COFFER_CONFIG_STRING },
	/* How long one rendering of /metrics answers scrapes (0: each scrape
	 * renders); a render costs a few dozen catalog queries. */
	{ .name = "metrics_cache",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "5s",
	    .min = 0,
	    .max = 5 * MINS },
	/* A file holding the bearer token /metrics asks for (mode 0600). */
	{ .name = "metrics_token_file", .type = COFFER_CONFIG_PATH },
	/* Serve /metrics beyond loopback without a token, knowingly. */
	{ .name = "metrics_public", .type = COFFER_CONFIG_BOOL, .def = "false" },
	/* How often retention, alerts and deliveries are re-evaluated. */
	{ .name = "maintenance_interval",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "60s",
	    .min = 1000,
	    .max = 3600 * 1000 },
	{ .name = "insecure", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ .name = "log_level", .type = COFFER_CONFIG_ENUM, .def = "info", .words = log_levels },
	/* Threads (each with its own catalog connection) applying agents'
	 * envelopes; admin requests and maintenance have one more of their own. */
	{ .name = "intake_workers", .type = COFFER_CONFIG_INT, .def = "4", .min = 1, .max = 32 },
	/* Flood-proof intake (coordinator/intake/gate.h): refusals a peer
	 * address may cause per second (and at once) before it is muted;
	 * envelopes an enrolled agent may send per second (and at once). */
	{ .name = "peer_refusal_rate",
	    .type = COFFER_CONFIG_INT,
	    .def = "10",
	    .min = 1,
	    .max = 100000 },
	{ .name = "peer_refusal_burst",
	    .type = COFFER_CONFIG_INT,
	    .def = "50",
	    .min = 1,
	    .max = 1000000 },
	{ .name = "agent_envelope_rate",
	    .type = COFFER_CONFIG_INT,
	    .def = "100",
	    .min = 1,
	    .max = 100000 },
	{ .name = "agent_envelope_burst",
	    .type = COFFER_CONFIG_INT,
	    .def = "200",
	    .min = 1,
	    .max = 1000000 },
	/* Refusals decided without the catalog are audited one row per peer,
	 * reason and period. */
	{ .name = "refusal_period",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "60s",
	    .min = 1 * SECS,
	    .max = 1 * HOURS },
	/* How long `events` and `refusals` rows are kept (docs/CATALOG.md). */
	{ .name = "events_keep",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "90d",
	    .min = 1 * HOURS,
	    .max = 100 * YEARS },
	{ .name = "refusals_keep",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "90d",
	    .min = 1 * HOURS,
	    .max = 100 * YEARS },
	{ 0 },
};

static const coffer_config_key tls_keys[] = {
	{ .name = "ca", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "cert", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "key", .type = COFFER_CONFIG_PATH, .required = true },
	/* The platform CA's revocation list (PEM); re-read when it changes. */
	{ .name = "crl", .type = COFFER_CONFIG_PATH },
	{ 0 },
};

static const coffer_config_key repo_keys[] = {
	{ .name = "type", .type = COFFER_CONFIG_ENUM, .required = true, .words = repo_types },
	{ .name = "path", .type = COFFER_CONFIG_PATH },
	{ .name = "endpoint", .type = COFFER_CONFIG_STRING, .check = coffer_config_check_http_url },
	{ .name = "region", .type = COFFER_CONFIG_STRING },
	{ .name = "bucket", .type = COFFER_CONFIG_STRING },
	{ .name = "prefix", .type = COFFER_CONFIG_STRING, .def = "" },
	{ .name = "access_key", .type = COFFER_CONFIG_STRING },
	{ .name = "secret_key", .type = COFFER_CONFIG_STRING, .secret = COFFER_CONFIG_SECRET },
	{ .name = "session_token", .type = COFFER_CONFIG_STRING, .secret = COFFER_CONFIG_SECRET },
	{ .name = "path_style", .type = COFFER_CONFIG_BOOL, .def = "false" },
	/* http:// to another host: the operator's explicit, logged choice. */
	{ .name = "insecure_http", .type = COFFER_CONFIG_BOOL, .def = "false" },
	/* The principal access_key belongs to, for `coffer-coordinator s3-policy`. */
	{ .name = "principal", .type = COFFER_CONFIG_STRING, .check = check_principal },
	/* [repository.primary]: start although the bucket keeps no versions
	 * (a replaced object could then not be told from the original). */
	{ .name = "unversioned_ok", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ 0 },
};

static const coffer_config_key alerts_keys[] = {
	/* The key a service's newest backup is sealed with has had no escrow
	 * copy in DR this long: key_not_escrowed. */
	{ .name = "key_escrow_max",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "1d",
	    .min = 1 * SECS,
	    .max = 30 * DAYS },
	{ .name = "pagerduty_url",
	    .type = COFFER_CONFIG_STRING,
	    .def = "https://events.pagerduty.com/v2/enqueue",
	    .check = coffer_config_check_http_url },
	{ .name = "routing_key", .type = COFFER_CONFIG_STRING, .secret = COFFER_CONFIG_SECRET },
	{ .name = "webhook_url",
	    .type = COFFER_CONFIG_STRING,
	    .check = coffer_config_check_http_url },
	{ .name = "agent_quiet",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "10m",
	    .min = 1 * MINS,
	    .max = 30 * DAYS },
	/* Free bytes in an agent's state directory below which agent_disk_full
	 * pages: 16 outbox segments' worth of events, room to ride out a
	 * coordinator outage, and less than any sensible dedicated volume.
	 * 0 pages only when a write has failed. */
	{ .name = "agent_state_free_min",
	    .type = COFFER_CONFIG_SIZE,
	    .def = "64MiB",
	    .min = 0,
	    .max = 1024LL * 1024 * 1024 * 1024 },
	{ .name = "completion_window",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "2h",
	    .min = 1 * MINS,
	    .max = 30 * DAYS },
	/* A backup still running this long past completion_window is
	 * abandoned and pages backup_abandoned: an agent's own deadline is its
	 * [schedule] completion_window, so a live backup reports well before. */
	{ .name = "abandon_grace",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "1h",
	    .min = 1 * MINS,
	    .max = 30 * DAYS },
	{ .name = "refusal_window",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "1h",
	    .min = 1 * MINS,
	    .max = 30 * DAYS },
	{ .name = "size_history", .type = COFFER_CONFIG_INT, .def = "10", .min = 2, .max = 1000 },
	/* How far an agent's clock may be from ours before agent_clock_skew
	 * pages. Above the request timeout, since a sample includes transit
	 * (coordinator/intake/skew.c); below the hours by which a skewed clock
	 * starts to mislead an operator reading the agent's logs. */
	{ .name = "agent_clock_skew_max",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "120s",
	    .min = 10 * SECS,
	    .max = 24 * HOURS },
	/* WAL segments waiting to be archived before wal_archive_lag pages. */
	{ .name = "wal_lag_segments",
	    .type = COFFER_CONFIG_INT,
	    .def = "16",
	    .min = 1,
	    .max = 1000000 },
	{ .name = "rate_per_minute",
	    .type = COFFER_CONFIG_INT,
	    .def = "100",
	    .min = 1,
	    .max = 10000 },
	/* How long the catalog may be unreachable before the coordinator
	 * pages catalog_unreachable from its local outbox (watch/outage.h):
	 * long enough to ride out a PostgreSQL restart or failover, short
	 * enough that nobody learns of the outage from its consequences. */
	/* What a page links to (coordinator/watch/notify.c): the runbook, whose
	 * entry for the alert kind is this URL + "#" + the kind (default: the
	 * build's COFFER_DOCS_URL + "/RUNBOOK.md", when it was given one), the
	 * dashboard, and the coordinator's status page as PagerDuty's
	 * client_url. "{service}" in the last two becomes the service's name. */
	{ .name = "runbook_url",
	    .type = COFFER_CONFIG_STRING,
	    .check = coffer_config_check_http_url },
	{ .name = "dashboard_url",
	    .type = COFFER_CONFIG_STRING,
	    .check = coffer_config_check_http_url },
	{ .name = "status_url",
	    .type = COFFER_CONFIG_STRING,
	    .check = coffer_config_check_http_url },
	{ .name = "catalog_unreachable_after",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "60s",
	    .min = 1 * SECS,
	    .max = 24 * HOURS },
	{ 0 },
};

static const coffer_config_key operator_keys[] = {
	{ .name = "public_key", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "role", .type = COFFER_CONFIG_ENUM, .required = true, .words = roles },
	{ 0 },
};

static const coffer_config_key service_keys[] = {
	{ .name = "owner", .type = COFFER_CONFIG_STRING, .required = true },
	{ .name = "schedule",
	    .type = COFFER_CONFIG_CRON,
	    .required = true,
	    .check = check_schedule,
	    .why = "every service is backed up on a schedule (cron, in the service's timezone)" },
	{ .name = "timezone",
	    .type = COFFER_CONFIG_STRING,
	    .def = "UTC",
	    .check = coffer_config_check_timezone },
	/* The recovery-point objective. No default: a default would enter
	 * every service's policy text and change its policy version; unset,
	 * coord_config_rpo derives it from the schedule. */
	{ .name = "rpo", .type = COFFER_CONFIG_DURATION, .min = 1 * MINS, .max = 366 * DAYS },
	{ .name = "retention.daily",
	    .type = COFFER_CONFIG_STRING,
	    .check = check_count_or_forever },
	{ .name = "retention.weekly",
	    .type = COFFER_CONFIG_STRING,
	    .check = check_count_or_forever },
	{ .name = "retention.monthly",
	    .type = COFFER_CONFIG_STRING,
	    .check = check_count_or_forever },
	{ .name = "retention.yearly",
	    .type = COFFER_CONFIG_STRING,
	    .check = check_count_or_forever },
	{ .name = "retention.min_redundancy",
	    .type = COFFER_CONFIG_INT,
	    .def = "1",
	    .min = 1,
	    .max = 1000 },
	{ .name = "retention.grace",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "7d",
	    .min = 1 * HOURS,
	    .max = 365 * DAYS },
	/* How old the newest object of an orphan (a backup directory no live
	 * catalog row owns, without a manifest) must be before retention
	 * removes it; and how long an abandoned backup waits for its late
	 * outcome before retention treats it as failed. */
	{ .name = "retention.orphan_grace",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "1d",
	    .min = 1 * HOURS,
	    .max = 365 * DAYS },
	{ .name = "pitr.window",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * MINS,
	    .max = 10 * YEARS },
	{ .name = "dr.copy", .type = COFFER_CONFIG_ENUM, .def = "none", .words = dr_copies },
	{ .name = "dr.lock", .type = COFFER_CONFIG_ENUM, .def = "compliance", .words = dr_locks },
	{ .name = "dr.retention",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * DAYS,
	    .max = 100 * YEARS },
	{ .name = "compliance", .type = COFFER_CONFIG_ENUM, .def = "none", .words = compliances },
	{ .name = "compliance.max_retention",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * DAYS,
	    .max = 100 * YEARS,
	    .allow_forever = true },
	{ .name = "compliance.min_retention",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * DAYS,
	    .max = 100 * YEARS },
	{ .name = "drill.schedule", .type = COFFER_CONFIG_CRON },
	{ .name = "drill.rto", .type = COFFER_CONFIG_DURATION, .min = 1 * MINS, .max = 30 * DAYS },
	/* No defaults below: a default would enter every service's policy
	 * text and change the policy version of services without drills. */
	{ .name = "drill.runner", .type = COFFER_CONFIG_STRING, .check = check_ident },
	{ .name = "drill.backup", .type = COFFER_CONFIG_ENUM, .words = drill_backups },
	{ .name = "drill.window",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * HOURS,
	    .max = 10 * YEARS },
	{ .name = "drill.repository", .type = COFFER_CONFIG_ENUM, .words = drill_repos },
	{ .name = "drill.freshness_query", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.freshness_max_lag",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * SECS,
	    .max = 10 * YEARS },
	{ .name = "drill.assert.1", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.2", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.3", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.4", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.5", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.6", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.7", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.8", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.assert.9", .type = COFFER_CONFIG_STRING },
	{ .name = "drill.keep_sandbox", .type = COFFER_CONFIG_BOOL },
	{ .name = "drill.overdue_after",
	    .type = COFFER_CONFIG_DURATION,
	    .min = 1 * SECS,
	    .max = 30 * DAYS },
	{ .name = "alerts.routing_key",
	    .type = COFFER_CONFIG_STRING,
	    .secret = COFFER_CONFIG_SECRET },
	/* Whose credentials the service's agents use: `s3-policy` limits it to
	 * services/<service>/ in the primary bucket. An identity, not policy. */
	{ .name = "s3.principal", .type = COFFER_CONFIG_STRING, .check = check_principal },
	{ 0 },
};

/* The integrity sweep (coordinator/drill/drills.c): digests of a sample of
 * stored backups, checked without restoring. */
static const coffer_config_key integrity_keys[] = {
	{ .name = "sweep_interval",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "24h",
	    .min = 1 * SECS,
	    .max = 30 * DAYS },
	{ .name = "sample", .type = COFFER_CONFIG_INT, .def = "3", .min = 1, .max = 1000 },
	/* Checks older than this are deleted once a newer check of the same
	 * object exists; each is also an audit row. */
	{ .name = "keep_checks",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "90d",
	    .min = 1 * DAYS,
	    .max = 3660 * DAYS },
	{ 0 },
};

/* The DR copy (coordinator/dr/drcopy.c). */
static const coffer_config_key dr_keys[] = {
	/* A due copy not verified after this pages dr_copy_lag. */
	{ .name = "copy_lag",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "6h",
	    .min = 1 * SECS,
	    .max = 30 * DAYS },
	/* Copies per pass of the copier thread; the next pass follows at once. */
	{ .name = "copies_per_pass", .type = COFFER_CONFIG_INT, .def = "4", .min = 1, .max = 1000 },
	/* A failed copy waits 1 minute, doubling per attempt up to this. */
	{ .name = "retry_max",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "1h",
	    .min = 1 * SECS,
	    .max = 7 * DAYS },
	/* The audit chain's head goes to the DR repository this often... */
	{ .name = "audit_export_interval",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "5m",
	    .min = 1 * SECS,
	    .max = 1 * DAYS },
	/* ...locked COMPLIANCE this long (HIPAA keeps records six years). */
	{ .name = "audit_retention",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "2190d",
	    .min = 1 * DAYS,
	    .max = 100 * YEARS },
	/* Ed25519 key that signs attestations, so restore hosts can check
	 * them with its public half alone. */
	{ .name = "attestation_key", .type = COFFER_CONFIG_PATH },
	{ 0 },
};

static const coffer_config_section coordinator_sections[] = {
	{ .name = "coordinator", .required = true, .keys = coordinator_keys },
	{ .name = "tls", .keys = tls_keys },
	{ .name = "repository.*", .keys = repo_keys },
	{ .name = "alerts", .keys = alerts_keys },
	{ .name = "operator.*", .keys = operator_keys },
	{ .name = "service.*", .keys = service_keys },
	{ .name = "integrity", .keys = integrity_keys },
	{ .name = "dr", .keys = dr_keys },
	{ 0 },
};

static const coffer_config_schema coordinator_schema = {
	.sections = coordinator_sections,
	.check_cron = coffer_cron_check,
};

int
coord_config_repo(
    const coord_config *cfg, const char *name, coffer_repo_config *rc, coffer_err *err)
{
	char sec[COFFER_CONFIG_MAX_NAME + 1];
	snprintf(sec, sizeof(sec), "repository.%s", name);
	memset(rc, 0, sizeof(*rc));
	if (!coffer_config_has_section(cfg->ini, sec)) {
		coffer_err_set(err, COFFER_ENOENT, "the configuration has no [%s]", sec);
		return (coffer_err_hint(err, "add [%s] (docs/CONFIGURATION.md)", sec));
	}
	rc->type = coffer_config_str(cfg->ini, sec, "type");
	rc->path = coffer_config_str(cfg->ini, sec, "path");
	rc->endpoint = coffer_config_str(cfg->ini, sec, "endpoint");
	rc->region = coffer_config_str(cfg->ini, sec, "region");
	rc->bucket = coffer_config_str(cfg->ini, sec, "bucket");
	rc->prefix = coffer_config_str(cfg->ini, sec, "prefix");
	rc->access_key = coffer_config_str(cfg->ini, sec, "access_key");
	rc->secret_key = coffer_config_str(cfg->ini, sec, "secret_key");
	rc->session_token = coffer_config_str(cfg->ini, sec, "session_token");
	rc->path_style = coffer_config_bool(cfg->ini, sec, "path_style");
	rc->insecure_http = coffer_config_bool(cfg->ini, sec, "insecure_http");
	return (0);
}

const coffer_config_schema *
coord_config_schema(void)
{
	return (&coordinator_schema);
}

static const char *
opt_str(const coffer_config *ini, const char *section, const char *key)
{
	return (coffer_config_has(ini, section, key) ? coffer_config_str(ini, section, key) : NULL);
}

static int
check_instances(const coffer_config *ini, const char *pattern, coffer_err *err)
{
	const char *const *names;
	size_t n = 0;
	if (coffer_config_sections(ini, pattern, &names, &n) != 0) {
		return (0); /* not a pattern of this schema: nothing to check */
	}
	for (size_t i = 0; i < n; i++) {
		/* Instance names ("service.<name>") end up in repository
		 * paths and audit subjects: one rule with every other name. */
		if (!coffer_name_valid(names[i])) {
			char section[COFFER_CONFIG_MAX_NAME + 16];
			snprintf(section, sizeof(section), "%s.%s", pattern, names[i]);
			coffer_config_err_at(ini, section, NULL, err, "'%s' is not a valid %s name",
			    names[i], pattern);
			return (coffer_err_hint(err, "use " COFFER_NAME_RULE));
		}
	}
	return (0);
}

/* ---- policy rules ---- */

static const char *const tier_keys[COORD_TIER_COUNT] = {
	"retention.daily",
	"retention.weekly",
	"retention.monthly",
	"retention.yearly",
};
/* The longest a period can last: a backup made at the very start of a
 * period stays in an N-period tier at most N of these. */
static const int64_t tier_unit_ms[COORD_TIER_COUNT] = { 1 * DAYS, 7 * DAYS, 31 * DAYS, 366 * DAYS };
static const char *const tier_unit_names[COORD_TIER_COUNT] = { "1d per day", "7d per week",
	"31d per month", "366d per year" };

/* A tier's count: 0 if unset, COORD_RETENTION_FOREVER, or the number (the
 * loader has already checked the text). */
static int32_t
tier_count(const coffer_config *ini, const char *section, const char *key)
{
	if (!coffer_config_has(ini, section, key)) {
		return (0);
	}
	const char *v = coffer_config_str(ini, section, key);
	if (strcmp(v, "forever") == 0) {
		return (COORD_RETENTION_FOREVER);
	}
	return ((int32_t)strtol(v, NULL, 10));
}

static int64_t
tier_span_ms(int32_t count, int t)
{
	return (count == COORD_RETENTION_FOREVER ? -1 : count * tier_unit_ms[t]);
}

/* a > b for spans where -1 is forever. */
static bool
span_longer(int64_t a, int64_t b)
{
	if (a == -1) {
		return (b != -1);
	}
	return (b != -1 && a > b);
}

static const char *
fmt_span(char *buf, size_t size, int64_t ms)
{
	if (ms == -1) {
		snprintf(buf, size, "forever");
		return (buf);
	}
	return (coffer_duration_format(buf, size, ms));
}

/* How a rule is labelled: the mode that imposes it, or the policy itself. */
static const char *const compliance_names[] = { "policy", "gdpr", "hipaa" };

static int
check_gdpr_max(
    const coffer_config *ini, const char *section, const coord_service_policy *p, coffer_err *err)
{
	char a[32], b[32];
	int64_t max = p->max_retention_ms;
	for (int t = 0; t < COORD_TIER_COUNT; t++) {
		int64_t span = tier_span_ms(p->retention.tiers[t], t);
		if (p->retention.tiers[t] != 0 && span_longer(span, max)) {
			char what[64];
			if (span == -1) {
				snprintf(what, sizeof(what), "keeps backups forever");
			} else {
				snprintf(what, sizeof(what), "keeps backups up to %s (%s)",
				    fmt_span(a, sizeof(a), span), tier_unit_names[t]);
			}
			coffer_config_err_at(ini, section, tier_keys[t], err,
			    "%s, longer than compliance.max_retention = %s (rule: %s: no tier may keep "
			    "data longer than the declared maximum)",
			    what, fmt_span(b, sizeof(b), max), compliance_names[p->compliance]);
			return (coffer_err_hint(err,
			    "lower %s to at most %lld, or raise "
			    "compliance.max_retention if the law allows it",
			    tier_keys[t], (long long)(max / tier_unit_ms[t])));
		}
	}
	if (p->pitr_window_ms > max) {
		coffer_config_err_at(ini, section, "pitr.window", err,
		    "%s of WAL is longer than compliance.max_retention = %s (rule: %s: WAL holds the "
		    "same data as the backups)",
		    fmt_span(a, sizeof(a), p->pitr_window_ms), fmt_span(b, sizeof(b), max),
		    compliance_names[p->compliance]);
		return (coffer_err_hint(
		    err, "shorten pitr.window to at most %s", fmt_span(b, sizeof(b), max)));
	}
	if (coffer_config_has(ini, section, "dr.retention") &&
	    strcmp(coffer_config_str(ini, section, "dr.copy"), "none") != 0) {
		int64_t dr = coffer_config_duration_ms(ini, section, "dr.retention");
		if (dr > max) {
			coffer_config_err_at(ini, section, "dr.retention", err,
			    "DR copies locked for %s outlive compliance.max_retention = %s (rule: %s: "
			    "an object lock cannot be lifted early)",
			    fmt_span(a, sizeof(a), dr), fmt_span(b, sizeof(b), max),
			    compliance_names[p->compliance]);
			return (coffer_err_hint(
			    err, "set dr.retention to at most %s", fmt_span(b, sizeof(b), max)));
		}
	}
	return (0);
}

/* drill.*: read into p->drill and checked against the rest of the policy. */
static int
read_drill_policy(
    const coffer_config *ini, const char *section, coord_service_policy *p, coffer_err *err)
{
	coord_drill_policy *d = &p->drill;
	p->s3_principal = opt_str(ini, section, "s3.principal");
	d->schedule = opt_str(ini, section, "drill.schedule");
	d->runner = opt_str(ini, section, "drill.runner");
	d->random = coffer_config_has(ini, section, "drill.backup") &&
	    strcmp(coffer_config_str(ini, section, "drill.backup"), "random") == 0;
	d->window_ms = coffer_config_has(ini, section, "drill.window")
	    ? coffer_config_duration_ms(ini, section, "drill.window")
	    : 30 * DAYS;
	const char *repo = opt_str(ini, section, "drill.repository");
	d->repository = repo == NULL || strcmp(repo, "primary") == 0 ? COORD_DRILL_PRIMARY
	    : strcmp(repo, "dr") == 0                                ? COORD_DRILL_DR
	                                                             : COORD_DRILL_ALTERNATE;
	d->freshness_query = opt_str(ini, section, "drill.freshness_query");
	d->freshness_max_lag_ms = coffer_config_has(ini, section, "drill.freshness_max_lag")
	    ? coffer_config_duration_ms(ini, section, "drill.freshness_max_lag")
	    : 0;
	for (int i = 1; i <= COORD_DRILL_MAX_ASSERTS; i++) {
		char key[32];
		snprintf(key, sizeof(key), "drill.assert.%d", i);
		const char *q = opt_str(ini, section, key);
		if (q != NULL && q[0] != '\0') {
			d->asserts[d->n_asserts++] = q;
		}
	}
	/* Off unless asked for: a kept sandbox is a restored copy of the
	 * service's data on the runner host (the runner drops it after its
	 * [drill] keep_sandbox_for in any case). */
	d->keep_sandbox = coffer_config_has(ini, section, "drill.keep_sandbox") &&
	    coffer_config_bool(ini, section, "drill.keep_sandbox");
	d->rto_ms = coffer_config_has(ini, section, "drill.rto")
	    ? coffer_config_duration_ms(ini, section, "drill.rto")
	    : 60 * MINS;
	d->overdue_after_ms = coffer_config_has(ini, section, "drill.overdue_after")
	    ? coffer_config_duration_ms(ini, section, "drill.overdue_after")
	    : 1 * HOURS;

	if (d->schedule != NULL && d->runner == NULL) {
		coffer_config_err_at(ini, section, "drill.schedule", err,
		    "a drill schedule without drill.runner (rule: a scheduled drill needs the drill "
		    "runner that restores it)");
		return (coffer_err_hint(err,
		    "add drill.runner = <agent enrolled with "
		    "`coffer agents enroll --drill-runner --service %s`>",
		    p->name));
	}
	if (d->repository != COORD_DRILL_PRIMARY &&
	    strcmp(coffer_config_str(ini, section, "dr.copy"), "none") == 0) {
		coffer_config_err_at(ini, section, "drill.repository", err,
		    "%s drills from the DR repository, but dr.copy = none (rule: a DR drill needs "
		    "DR copies)",
		    repo);
		return (coffer_err_hint(err,
		    "set dr.copy (e.g. dr.copy = daily) or drill.repository "
		    "= primary"));
	}
	if ((d->freshness_query != NULL) != (d->freshness_max_lag_ms != 0)) {
		const char *have = d->freshness_query != NULL ? "drill.freshness_query"
		                                              : "drill.freshness_max_lag";
		coffer_config_err_at(ini, section, have, err,
		    "drill.freshness_query and drill.freshness_max_lag go together (rule: the "
		    "freshness check compares the newest row with a bound)");
		return (coffer_err_hint(err,
		    "set both, e.g. drill.freshness_query = SELECT "
		    "max(created_at) FROM orders and drill.freshness_max_lag "
		    "= 1h, or neither"));
	}
	if (coffer_config_has(ini, section, "drill.window") && !d->random) {
		coffer_config_err_at(ini, section, "drill.window", err,
		    "drill.window applies only to drill.backup = random (rule: latest always "
		    "drills the newest backup)");
		return (coffer_err_hint(err, "add drill.backup = random, or remove drill.window"));
	}
	return (0);
}

/* Reads and checks one service's policy into *p (strings point into ini). */
static int
read_policy(const coffer_config *ini, const char *name, coord_service_policy *p, coffer_err *err)
{
	char section[COFFER_CONFIG_MAX_NAME + 16];
	char a[32], b[32];
	snprintf(section, sizeof(section), "service.%s", name);
	*p = (coord_service_policy) { 0 };
	p->name = name;
	p->owner = coffer_config_str(ini, section, "owner");
	p->schedule = coffer_config_str(ini, section, "schedule");
	p->timezone = coffer_config_str(ini, section, "timezone");
	p->rpo_ms = coffer_config_has(ini, section, "rpo")
	    ? coffer_config_duration_ms(ini, section, "rpo")
	    : 0;
	bool any = false;
	p->longest_ms = 0;
	int longest_tier = -1;
	for (int t = 0; t < COORD_TIER_COUNT; t++) {
		p->retention.tiers[t] = tier_count(ini, section, tier_keys[t]);
		if (p->retention.tiers[t] == 0) {
			continue;
		}
		any = true;
		int64_t span = tier_span_ms(p->retention.tiers[t], t);
		if (longest_tier < 0 || span_longer(span, p->longest_ms)) {
			p->longest_ms = span;
			longest_tier = t;
		}
	}
	p->retention.min_redundancy =
	    (int32_t)coffer_config_int(ini, section, "retention.min_redundancy");
	p->retention.grace_ms = coffer_config_duration_ms(ini, section, "retention.grace");
	p->orphan_grace_ms = coffer_config_duration_ms(ini, section, "retention.orphan_grace");
	p->pitr_window_ms = coffer_config_has(ini, section, "pitr.window")
	    ? coffer_config_duration_ms(ini, section, "pitr.window")
	    : 0;
	const char *mode = coffer_config_str(ini, section, "compliance");
	p->compliance = strcmp(mode, "gdpr") == 0 ? COORD_COMPLIANCE_GDPR
	    : strcmp(mode, "hipaa") == 0          ? COORD_COMPLIANCE_HIPAA
	                                          : COORD_COMPLIANCE_NONE;
	bool has_max = coffer_config_has(ini, section, "compliance.max_retention");
	bool has_min = coffer_config_has(ini, section, "compliance.min_retention");
	p->max_retention_ms =
	    has_max ? coffer_config_duration_ms(ini, section, "compliance.max_retention") : 0;
	p->min_retention_ms =
	    has_min ? coffer_config_duration_ms(ini, section, "compliance.min_retention") : 0;

	if (!any) {
		coffer_config_err_at(ini, section, NULL, err,
		    "service %s keeps no backups: retention.daily, retention.weekly, "
		    "retention.monthly and retention.yearly are all 0 or unset (rule: a service "
		    "must have retention)",
		    name);
		return (coffer_err_hint(err,
		    "set at least one tier, e.g. retention.daily = 7 and "
		    "retention.monthly = 12"));
	}
	if (p->compliance == COORD_COMPLIANCE_GDPR && !has_max) {
		coffer_config_err_at(ini, section, "compliance", err,
		    "gdpr requires compliance.max_retention (rule: gdpr: personal data is kept no "
		    "longer than a declared maximum)");
		return (coffer_err_hint(err,
		    "add compliance.max_retention = 400d (or the period "
		    "your records of processing state)"));
	}
	if (p->compliance == COORD_COMPLIANCE_GDPR && p->max_retention_ms == -1) {
		coffer_config_err_at(ini, section, "compliance.max_retention", err,
		    "forever is not a maximum (rule: gdpr: personal data is kept no longer than a "
		    "declared maximum)");
		return (coffer_err_hint(err, "write a duration such as 400d"));
	}
	if (p->compliance == COORD_COMPLIANCE_HIPAA) {
		if (!has_min) {
			p->min_retention_ms = COORD_HIPAA_MIN_RETENTION_MS;
		} else if (p->min_retention_ms < COORD_HIPAA_MIN_RETENTION_MS) {
			coffer_config_err_at(ini, section, "compliance.min_retention", err,
			    "%s is shorter than hipaa's six years (rule: hipaa: audit-relevant "
			    "records are kept at least 2190d)",
			    fmt_span(a, sizeof(a), p->min_retention_ms));
			return (coffer_err_hint(err,
			    "set compliance.min_retention to 2190d or more, or "
			    "remove it to use 2190d"));
		}
	}
	if (has_max && p->max_retention_ms != -1 && p->min_retention_ms > p->max_retention_ms) {
		coffer_config_err_at(ini, section, "compliance.min_retention", err,
		    "%s is longer than compliance.max_retention = %s (rule: the minimum cannot "
		    "exceed the maximum)",
		    fmt_span(a, sizeof(a), p->min_retention_ms),
		    fmt_span(b, sizeof(b), p->max_retention_ms));
		return (coffer_err_hint(err, "fix one of the two bounds"));
	}
	if (has_max && p->max_retention_ms != -1) {
		int rc = check_gdpr_max(ini, section, p, err);
		if (rc != 0) {
			return (rc);
		}
	}
	if (p->min_retention_ms > 0 && span_longer(p->min_retention_ms, p->longest_ms)) {
		const char *key = tier_keys[longest_tier];
		coffer_config_err_at(ini, section, key, err,
		    "the longest tier keeps backups up to %s, shorter than compliance.min_retention "
		    "= %s (rule: %s: the policy's longest retention must reach the minimum)",
		    fmt_span(a, sizeof(a), p->longest_ms),
		    fmt_span(b, sizeof(b), p->min_retention_ms), compliance_names[p->compliance]);
		int64_t years = (p->min_retention_ms + 366 * DAYS - 1) / (366 * DAYS);
		return (coffer_err_hint(
		    err, "set retention.yearly = %lld (or more, or forever)", (long long)years));
	}
	int drc = read_drill_policy(ini, section, p, err);
	if (drc != 0) {
		return (drc);
	}
	char text[8192];
	int len = coord_config_policy_text(ini, name, text, sizeof(text));
	if (len < 0) {
		coffer_config_err_at(ini, section, NULL, err,
		    "the policy of service %s is too long to version", name);
		return (coffer_err_hint(err, "shorten its values"));
	}
	uint8_t md[32];
	unsigned mdlen = 0;
	if (EVP_Digest(text, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "sha256 of a service policy"));
	}
	coffer_hex_encode(md, sizeof(md), p->version);
	return (0);
}

static int
read_policies(coord_config *c, coffer_err *err)
{
	const char *const *names;
	size_t n = 0;
	if (coffer_config_sections(c->ini, "service", &names, &n) != 0 || n == 0) {
		return (0);
	}
	c->services = calloc(n, sizeof(*c->services));
	if (c->services == NULL) {
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "out of memory reading service policies"));
	}
	for (size_t i = 0; i < n; i++) {
		int rc = read_policy(c->ini, names[i], &c->services[i], err);
		if (rc != 0) {
			return (rc);
		}
		c->n_services++;
	}
	return (0);
}

const coord_service_policy *
coord_config_service(const coord_config *cfg, const char *name)
{
	for (size_t i = 0; cfg != NULL && name != NULL && i < cfg->n_services; i++) {
		if (strcmp(cfg->services[i].name, name) == 0) {
			return (&cfg->services[i]);
		}
	}
	return (NULL);
}

/* Appends to buf at *used; false when it does not fit. */
static bool
put(char *buf, size_t size, size_t *used, const char *key, const char *value)
{
	int w = snprintf(buf + *used, size - *used, "%s=%s\n", key, value);
	if (w < 0 || (size_t)w >= size - *used) {
		return (false);
	}
	*used += (size_t)w;
	return (true);
}

/* Runs walked at most when deriving an RPO: one a minute over the horizon. */
#define RPO_MAX_RUNS (COORD_RPO_HORIZON_MS / MINS + 2)

int
coord_config_rpo(const coord_config *cfg, const coord_service_policy *p, int64_t now_ms,
    int64_t *rpo_ms, bool *derived, coffer_err *err)
{
	*rpo_ms = p->rpo_ms;
	*derived = p->rpo_ms == 0;
	if (p->rpo_ms != 0) {
		return (0);
	}
	coffer_cron *cron = coffer_cron_parse(p->schedule, err);
	if (cron == NULL) {
		return (coffer_err_wrap(err, "service %s: schedule", p->name));
	}
	coffer_tz *tz = coffer_tz_load(p->timezone != NULL ? p->timezone : "UTC", err);
	if (tz == NULL) {
		coffer_cron_free(cron);
		return (coffer_err_wrap(err, "service %s: timezone", p->name));
	}
	int64_t at = now_ms / 1000, prev = 0, next = 0, gap = 0;
	int rv = coffer_cron_prev(cron, tz, at, &prev, err);
	if (rv == COFFER_ENOENT) {
		coffer_err_clear(err);
		rv = coffer_cron_next(cron, tz, at, &prev, err);
	}
	int64_t until = prev + COORD_RPO_HORIZON_MS / 1000;
	for (int64_t i = 0; rv == 0 && i < RPO_MAX_RUNS && (prev <= until || gap == 0); i++) {
		rv = coffer_cron_next(cron, tz, prev, &next, err);
		if (rv == 0) {
			gap = next - prev > gap ? next - prev : gap;
			prev = next;
		}
	}
	coffer_cron_free(cron);
	coffer_tz_free(tz);
	if (rv != 0 && gap == 0) {
		return (
		    coffer_err_wrap(err, "service %s: deriving rpo from the schedule", p->name));
	}
	coffer_err_clear(err);
	*rpo_ms = gap * 1000 + coffer_config_duration_ms(cfg->ini, "alerts", "completion_window");
	return (0);
}

int
coord_config_policy_text(const coffer_config *ini, const char *service, char *buf, size_t size)
{
	char section[COFFER_CONFIG_MAX_NAME + 16];
	if (size == 0) {
		return (COFFER_ETOOBIG);
	}
	buf[0] = '\0';
	if (strlen(service) > COFFER_CONFIG_MAX_NAME) {
		return (COFFER_ENOENT);
	}
	snprintf(section, sizeof(section), "service.%s", service);
	if (!coffer_config_has_section(ini, section)) {
		return (COFFER_ENOENT);
	}
	size_t used = 0;
	if (!put(buf, size, &used, "coffer-policy", "1") ||
	    !put(buf, size, &used, "service", service)) {
		return (COFFER_ETOOBIG);
	}
	for (const coffer_config_key *k = service_keys; k->name != NULL; k++) {
		if (!coffer_config_has(ini, section, k->name) && k->def == NULL) {
			continue;
		}
		/* A secret, and not policy: it must never reach an audit row. */
		if (strcmp(k->name, "alerts.routing_key") == 0) {
			continue;
		}
		/* Who holds the keys is not what the policy is: rotating a
		 * principal must not make a new policy version. */
		if (strcmp(k->name, "s3.principal") == 0) {
			continue;
		}
		const char *raw = coffer_config_str(ini, section, k->name);
		char v[COFFER_CONFIG_MAX_LINE];
		if (k->type == COFFER_CONFIG_DURATION) {
			fmt_span(v, sizeof(v), coffer_config_duration_ms(ini, section, k->name));
		} else if (k->type == COFFER_CONFIG_INT) {
			snprintf(v, sizeof(v), "%lld",
			    (long long)coffer_config_int(ini, section, k->name));
		} else if (k->check == check_count_or_forever) {
			int32_t n = tier_count(ini, section, k->name);
			if (n == COORD_RETENTION_FOREVER) {
				snprintf(v, sizeof(v), "forever");
			} else {
				snprintf(v, sizeof(v), "%d", (int)n);
			}
		} else if (k->type == COFFER_CONFIG_CRON) {
			/* One space between fields: spacing is not policy. */
			size_t o = 0;
			bool gap = false;
			for (const char *q = raw; *q != '\0' && o + 2 < sizeof(v); q++) {
				if (*q == ' ' || *q == '\t') {
					gap = o > 0;
					continue;
				}
				if (gap) {
					v[o++] = ' ';
					gap = false;
				}
				v[o++] = *q;
			}
			v[o] = '\0';
		} else {
			snprintf(v, sizeof(v), "%s", raw);
		}
		if (!put(buf, size, &used, k->name, v)) {
			return (COFFER_ETOOBIG);
		}
	}
	return ((int)used);
}

static int
check_repos_http(const coffer_config *ini, coffer_err *err)
{
	const char *const *names;
	size_t n = 0;
	if (coffer_config_sections(ini, "repository", &names, &n) != 0) {
		return (0);
	}
	for (size_t i = 0; i < n; i++) {
		char section[COFFER_CONFIG_MAX_NAME + 16];
		snprintf(section, sizeof(section), "repository.%s", names[i]);
		int rc = coffer_repo_s3_section_check(ini, section, err);
		if (rc != 0) {
			return (rc);
		}
	}
	return (0);
}

/* /metrics names every service, its owner and its health: beyond loopback
 * it needs a token, or the operator's explicit word that it is meant to be
 * public (behind a firewall or a proxy that authenticates). */
static int
check_metrics_exposure(const coord_config *c, coffer_err *err)
{
	const char *l = c->metrics_listen;
	if (l == NULL || c->metrics_token_file != NULL ||
	    coffer_config_bool(c->ini, "coordinator", "metrics_public")) {
		return (0);
	}
	static const char *const loopback[] = { "127.", "[::1]:", "localhost:", NULL };
	for (size_t i = 0; loopback[i] != NULL; i++) {
		if (strncmp(l, loopback[i], strlen(loopback[i])) == 0) {
			return (0);
		}
	}
	coffer_config_err_at(c->ini, "coordinator", "metrics_listen", err,
	    "%s is not a loopback address: /metrics (every service, its owner and health) would "
	    "be open to the network without a token",
	    l);
	return (coffer_err_hint(err,
	    "set metrics_token_file (a bearer token your scraper sends), or metrics_public = true "
	    "if a firewall or an authenticating proxy guards it"));
}

static int
finish(coffer_config *ini, coord_config **out, coffer_err *err)
{
	int rc;
	if ((rc = check_instances(ini, "service", err)) != 0 ||
	    (rc = check_instances(ini, "operator", err)) != 0 ||
	    (rc = check_instances(ini, "repository", err)) != 0 ||
	    (rc = check_repos_http(ini, err)) != 0) {
		coffer_config_free(ini);
		return (rc);
	}
	coord_config *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		coffer_config_free(ini);
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "out of memory reading coordinator config"));
	}
	c->ini = ini;
	c->listen = coffer_config_str(ini, "coordinator", "listen");
	c->admin_listen = opt_str(ini, "coordinator", "admin_listen");
	c->catalog = coffer_config_str(ini, "coordinator", "catalog");
	c->catalog_owner = opt_str(ini, "coordinator", "catalog_owner");
	c->development = coffer_config_bool(ini, "coordinator", "development");
	c->audit_key = coffer_config_str(ini, "coordinator", "audit_key");
	c->state_dir = coffer_config_str(ini, "coordinator", "state_dir");
	c->metrics_listen = opt_str(ini, "coordinator", "metrics_listen");
	c->maintenance_interval_ms =
	    coffer_config_duration_ms(ini, "coordinator", "maintenance_interval");
	c->insecure = coffer_config_bool(ini, "coordinator", "insecure");
	c->intake_workers = (int)coffer_config_int(ini, "coordinator", "intake_workers");
	c->peer_refusal_rate = (int)coffer_config_int(ini, "coordinator", "peer_refusal_rate");
	c->peer_refusal_burst = (int)coffer_config_int(ini, "coordinator", "peer_refusal_burst");
	c->agent_envelope_rate = (int)coffer_config_int(ini, "coordinator", "agent_envelope_rate");
	c->agent_envelope_burst =
	    (int)coffer_config_int(ini, "coordinator", "agent_envelope_burst");
	c->refusal_period_ms = coffer_config_duration_ms(ini, "coordinator", "refusal_period");
	c->events_keep_ms = coffer_config_duration_ms(ini, "coordinator", "events_keep");
	c->refusals_keep_ms = coffer_config_duration_ms(ini, "coordinator", "refusals_keep");
	c->crl = opt_str(ini, "tls", "crl");
	if (coffer_log_level_parse(
	        coffer_config_str(ini, "coordinator", "log_level"), &c->log_level) != 0) {
		c->log_level = COFFER_LOG_INFO;
	}
	c->metrics_cache_ms = coffer_config_duration_ms(ini, "coordinator", "metrics_cache");
	c->metrics_token_file = opt_str(ini, "coordinator", "metrics_token_file");
	if ((rc = check_metrics_exposure(c, err)) != 0 || (rc = read_policies(c, err)) != 0) {
		coord_config_free(c);
		return (rc);
	}
	*out = c;
	return (0);
}

int
coord_config_load(const char *path, coord_config **out, coffer_err *err)
{
	coffer_config *ini = NULL;
	int rc = coffer_config_load(path, &coordinator_schema, &ini, err);
	if (rc != 0) {
		return (rc);
	}
	return (finish(ini, out, err));
}

int
coord_config_load_string(const char *text, const char *name, coord_config **out, coffer_err *err)
{
	coffer_config *ini = NULL;
	int rc = coffer_config_load_string(text, name, &coordinator_schema, &ini, err);
	if (rc != 0) {
		return (rc);
	}
	return (finish(ini, out, err));
}

void
coord_config_free(coord_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	coffer_config_free(cfg->ini);
	free(cfg->services);
	free(cfg);
}
