/*
 * Coordinator configuration: the coordinator.conf schema (common/conf/config.h)
 * and the few values every coordinator command needs, read once.
 *
 * Sections: [coordinator] (required), [tls], [repository.*], [alerts],
 * [operator.*], [service.*]; unknown sections and keys are refused by the
 * loader with file:line and the allowed names. docs/CONFIGURATION.md
 * documents each key.
 *
 * Checked here beyond the types: names of services and operators are
 * 1..63 of [A-Za-z0-9._-] not starting with '.' or '-' (a service becomes a
 * repository directory); cron keys parse; timezone loads; retention tiers
 * are counts or "forever".
 *
 * Policy rules, per [service.NAME], each refused naming file:line, the
 * service, the key and the rule, with a hint (docs/RETENTION.md):
 * - schedule is required and must fire: "manual" (or none/never/off) and a
 *   cron that never fires are refused -- a service without a schedule is a
 *   service without backups;
 * - at least one of retention.daily/weekly/monthly/yearly keeps backups;
 * - compliance = gdpr requires compliance.max_retention (not forever), and
 *   no tier, pitr.window or dr.retention may keep data longer than it;
 * - compliance = hipaa requires the longest tier to reach
 *   compliance.min_retention (default and lowest allowed: 2190d, six years);
 * - a declared maximum or minimum is enforced whatever the mode, and the
 *   minimum must not exceed the maximum.
 * A tier's span is its count times the longest its period can be: 1d, 7d,
 * 31d, 366d ("forever" is infinite) -- the longest any backup can stay in it.
 *
 * Ownership: strings point into the loaded file and live until
 * coord_config_free.
 */
#ifndef COFFER_COORDINATOR_POLICY_COORD_CONFIG_H
#define COFFER_COORDINATOR_POLICY_COORD_CONFIG_H

#include <stdbool.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/conf/config.h"
#include "common/repo/repo.h"
#include "coordinator/policy/retention.h"

typedef enum coord_compliance {
	COORD_COMPLIANCE_NONE = 0,
	COORD_COMPLIANCE_GDPR = 1,
	COORD_COMPLIANCE_HIPAA = 2,
} coord_compliance;

/* HIPAA keeps documentation six years (45 CFR 164.316(b)(2)); as days. */
#define COORD_HIPAA_MIN_RETENTION_MS (2190LL * 24 * 3600 * 1000)

/* sha256 in hex, plus the terminator. */
#define COORD_POLICY_VERSION_HEX 65

/* Which repository a drill restores from; alternate flips per drill. */
typedef enum coord_drill_repo {
	COORD_DRILL_PRIMARY = 0,
	COORD_DRILL_DR = 1,
	COORD_DRILL_ALTERNATE = 2,
} coord_drill_repo;

/* drill.assert.1 .. drill.assert.9: inih has no lists or multi-line values. */
#define COORD_DRILL_MAX_ASSERTS 9

/* A service's restore-drill policy (drill.* keys, docs/CONFIGURATION.md).
 * runner NULL: the service is never drilled. schedule NULL: drills run only
 * by `coffer drill run`. Checked at load: a schedule needs a runner, a
 * repository of dr or alternate needs dr.copy, a freshness query needs its
 * bound and the bound its query, drill.window only with drill.backup =
 * random. */
typedef struct coord_drill_policy {
	const char *schedule;
	const char *runner;
	bool random;       /* drill.backup = random (else latest) */
	int64_t window_ms; /* random: backups finished within this (30d) */
	coord_drill_repo repository;
	const char *freshness_query; /* NULL: no freshness check */
	int64_t freshness_max_lag_ms;
	const char *asserts[COORD_DRILL_MAX_ASSERTS];
	size_t n_asserts;
	bool keep_sandbox;        /* after a failure (default false) */
	int64_t rto_ms;           /* drill.rto (60m) */
	int64_t overdue_after_ms; /* drill.overdue_after (1h) */
} coord_drill_policy;

/* One service's policy, read and checked at load. */
typedef struct coord_service_policy {
	const char *name; /* "billing" for [service.billing] */
	const char *owner;
	const char *schedule;             /* cron text, in timezone */
	const char *timezone;             /* IANA name; "UTC" by default */
	coord_retention_policy retention; /* tiers, min_redundancy, grace */
	int64_t pitr_window_ms;           /* 0: not set */
	int64_t orphan_grace_ms;          /* retention.orphan_grace (1d) */
	coord_compliance compliance;
	int64_t max_retention_ms; /* 0: none declared */
	int64_t min_retention_ms; /* 0: none (hipaa: at least COORD_HIPAA_MIN_RETENTION_MS) */
	int64_t longest_ms;       /* the longest span over the tiers; -1 for forever */
	/* sha256 of coord_config_policy_text: the "policy version" that audit
	 * rows and retention decisions name. Changes when any key of the
	 * section changes meaning; not when only spacing, comments, key order
	 * or the spelling of a default ("timezone = UTC" or unset) do. */
	char version[COORD_POLICY_VERSION_HEX];
	coord_drill_policy drill;
	/* s3.principal: the IAM principal of the service's agents' credentials;
	 * NULL when unset (s3-policy then grants the service nothing). */
	const char *s3_principal;
	/* rpo: the recovery-point objective, how old the newest verified
	 * backup may be; 0 when unset (coord_config_rpo derives one). */
	int64_t rpo_ms;
} coord_service_policy;

typedef struct coord_config {
	/* [coordinator] */
	const char *listen;
	const char *admin_listen;  /* NULL if unset */
	const char *catalog;       /* libpq conninfo; may hold a password: never log it */
	const char *catalog_owner; /* the same for migrate as the tables' owner; NULL if unset */
	bool development;          /* may run as the tables' owner or a superuser */
	const char *audit_key;     /* path */
	const char *state_dir;
	const char *metrics_listen;      /* NULL if unset */
	int64_t metrics_cache_ms;        /* 0: render every scrape */
	const char *metrics_token_file;  /* NULL: /metrics needs no token */
	int64_t maintenance_interval_ms; /* retention, alerts, deliveries */
	bool insecure;                   /* plain tcp:// on a non-loopback address allowed */
	int intake_workers;              /* threads applying agents' envelopes */
	int peer_refusal_rate;           /* refusals a second a peer address may cause */
	int peer_refusal_burst;          /* ...and at once */
	int agent_envelope_rate;         /* envelopes a second an agent may send */
	int agent_envelope_burst;        /* ...and at once */
	int64_t refusal_period_ms;       /* refusals audited per peer, reason and period */
	int64_t events_keep_ms;          /* `events` rows older are pruned */
	int64_t refusals_keep_ms;        /* `refusals` rows not seen since are pruned */
	const char *crl;                 /* [tls] crl; NULL if unset */
	coffer_log_level log_level;
	/* The whole file, for modules that read their own sections. */
	coffer_config *ini;
	/* [service.*] in file order. */
	coord_service_policy *services;
	size_t n_services;
} coord_config;

/* The policy of service name, or NULL if there is no [service.name]. */
const coord_service_policy *coord_config_service(const coord_config *cfg, const char *name);

/* How far back the longest gap between scheduled runs is looked for when
 * rpo is derived: a week and a day, so weekday-only schedules show their
 * weekend. */
#define COORD_RPO_HORIZON_MS (8LL * 24 * 3600 * 1000)

/*
 * A service's recovery-point objective at now_ms (Unix ms): [service.NAME]
 * rpo when the file sets it (*derived false); otherwise (*derived true) the
 * oldest its newest verified backup can get without backup_missed paging:
 * the longest gap between two consecutive runs of its schedule, from the
 * run before now to COORD_RPO_HORIZON_MS after it (further for a schedule
 * that fires less often), plus [alerts] completion_window. Costs one
 * schedule walk (up to one run a minute over the horizon): cache it.
 */
int coord_config_rpo(const coord_config *cfg, const coord_service_policy *p, int64_t now_ms,
    int64_t *rpo_ms, bool *derived, coffer_err *err);

/* The canonical text of [service.<service>] in a loaded file: a header
 * line, "service=NAME", then "key=value" for every key the file sets or
 * that has a default, in schema order, with values normalized (durations
 * as coffer_duration_format writes them, counts in decimal, cron fields
 * single-spaced). Written into buf (NUL-terminated); returns its length,
 * or COFFER_ETOOBIG if size is too small, COFFER_ENOENT if no such
 * section. Its sha256 is the policy version. */
int coord_config_policy_text(const coffer_config *ini, const char *service, char *buf, size_t size);

/* Fills rc from [repository.<name>] (strings borrowed from cfg).
 * COFFER_ENOENT, with a hint, when the file has no such section. */
int coord_config_repo(
    const coord_config *cfg, const char *name, coffer_repo_config *rc, coffer_err *err);

/* The schema (static), for check-config and for tests. */
const coffer_config_schema *coord_config_schema(void);

/* Reads and checks path; *out is for coord_config_free. Errors as
 * coffer_config_load. */
int coord_config_load(const char *path, coord_config **out, coffer_err *err);

/* The same from text; name stands in for the path in messages. */
int coord_config_load_string(
    const char *text, const char *name, coord_config **out, coffer_err *err);

void coord_config_free(coord_config *cfg);

#endif
