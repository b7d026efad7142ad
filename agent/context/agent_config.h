/*
 * Agent configuration: agent.conf read into one struct, with every rule an
 * operator can break checked at load, so the daemon and every one-shot
 * command refuse a bad file before touching a database or a repository.
 * docs/CONFIGURATION.md documents each key.
 *
 * Rules beyond the types (each refused with file:line and the fix):
 * - [schedule] logical is required: manual-only backups are not allowed.
 *   Cron expressions are checked with coffer_cron_parse (common/conf/cron.h).
 * - [repository.primary] is required, [repository.dr] optional; posix needs
 *   path, s3 needs endpoint, region and bucket; keys of the other type are
 *   refused rather than ignored; access_key and secret_key come together.
 * - [coordinator] is optional (events wait in the outbox), but when present
 *   it needs url; tls+tcp:// needs cert and key, and ca unless insecure.
 * - name and service are 1..63 of [A-Za-z0-9._-], not starting with '.' or
 *   '-': service becomes a directory in the repository.
 * - timezone is "UTC" or a zone coffer_tz_load can load.
 * - [agent] role = drill_runner (agent/restore/drill.h): no service, key_ring,
 *   [postgres] conninfo or [schedule]; [drill] sandbox required, and
 *   [drill.<service>] key_ring and verify_key per service it drills. A
 *   service agent may not have [drill].
 *
 * Ownership: every string points into the loaded configuration and lives
 * until agent_config_free; pg_dump, pg_restore and psql are the commands to
 * run, already joined with bin_dir when it is set.
 */
#ifndef COFFER_AGENT_CONTEXT_AGENT_CONFIG_H
#define COFFER_AGENT_CONTEXT_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/conf/config.h"

typedef enum agent_repo_type {
	AGENT_REPO_POSIX = 0,
	AGENT_REPO_S3 = 1,
} agent_repo_type;

typedef struct agent_repo_config {
	bool present; /* the section is in the file */
	agent_repo_type type;
	const char *path;                                    /* posix */
	const char *endpoint, *region, *bucket, *prefix;     /* s3; prefix may be "" */
	const char *access_key, *secret_key, *session_token; /* s3; NULL if unset */
	bool path_style;
	bool insecure_http; /* plain http to another host allowed (and warned of) */
} agent_repo_config;

typedef struct agent_config {
	/* [agent] */
	const char *name;
	bool drill_runner;   /* [agent] role = drill_runner */
	const char *service; /* "" for a drill runner */
	const char *state_dir;
	const char *signing_key;
	const char *key_ring;
	const char *timezone;       /* default "UTC" */
	coffer_log_level log_level; /* default info */
	/* [postgres] */
	const char *conninfo;
	const char *pg_dump; /* resolved against bin_dir */
	const char *pg_restore;
	const char *psql;
	const char *dump_options; /* extra pg_dump arguments, split on spaces; "" if none */
	const char *bin_dir;      /* NULL if unset */
	/* [schedule] */
	const char *schedule_logical;
	const char *schedule_physical; /* NULL if unset */
	int64_t completion_window_ms;
	/* [backup] */
	int compress_level;
	int compress_workers;
	size_t chunk_size;
	const char *schema_query; /* NULL if unset */
	/* [repository.primary], [repository.dr] */
	agent_repo_config repo_primary;
	agent_repo_config repo_dr;
	/* [coordinator] */
	bool coordinator_present;
	const char *coordinator_url;
	const char *coordinator_ca; /* NULL if unset */
	const char *coordinator_cert;
	const char *coordinator_key;
	bool coordinator_insecure;
	int64_t heartbeat_ms;
	int64_t retry_max_ms;
	/* [keys]: NULL if unset */
	const char *escrow_public_key;      /* each key of the ring is sealed to it */
	const char *coordinator_public_key; /* verifies the coordinator's attestations */
	/* [drill] (drill runners only; [drill.<service>] is read by agent/restore/drill.c) */
	const char *drill_sandbox;
	int drill_jobs;
	int64_t drill_keep_sandbox_ms; /* a kept sandbox is dropped this long after its drill */
	/* The parsed file, for callers that report their own findings at the
	 * right line with coffer_config_err_at. */
	coffer_config *ini;
} agent_config;

/* The schema of agent.conf (static; for tools that check a file's syntax). */
const coffer_config_schema *agent_config_schema(void);

/* Reads and checks path. On success *out is a new config for
 * agent_config_free. Errors as coffer_config_load, plus COFFER_EINVAL for
 * the rules above. */
int agent_config_load(const char *path, agent_config **out, coffer_err *err);

/* The same from text; name stands in for the path in messages (tests). */
int agent_config_load_string(
    const char *text, const char *name, agent_config **out, coffer_err *err);

void agent_config_free(agent_config *cfg);

#endif
