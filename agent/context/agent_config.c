/*
 * Agent configuration: the agent.conf schema and the rules that span keys.
 * See agent/context/agent_config.h for the rules and docs/CONFIGURATION.md for the
 * keys. The typed checks live in common/conf/config.c; what is here is only what
 * needs to know what an agent is.
 */
#include "agent/context/agent_config.h"

#include "common/base/name.h"

#include "common/crypto/manifest.h"

#include "agent/pg/dump.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf/cron.h"
#include "common/conf/tz.h"
#include "common/repo/repo_s3.h"
#include "common/wire/net.h"

#define SECS  1000LL
#define MINS  (60 * SECS)
#define HOURS (60 * MINS)
#define DAYS  (24 * HOURS)

struct agent_config_priv {
	agent_config pub; /* first: agent_config_free casts back */
	char *pg_dump;
	char *pg_restore;
	char *psql;
};

/* name and service end up in file names and repository paths, so nothing
 * that could climb out of a directory or hide as a dot file. */
static int
check_ident(const char *v, coffer_err *err)
{
	return (coffer_name_check(v, "name", err));
}

static int
check_url(const char *v, coffer_err *err)
{
	return (coffer_net_url_check(v, "coordinator address", err));
}

/* One rule for what pg_dump may be told, shared with the backup itself
 * (agent/pg/dump.c): checked here so a bad option is refused at load, with the
 * file and line, instead of failing the first scheduled backup. */
static int
check_dump_options(const char *v, coffer_err *err)
{
	char **argv = NULL;
	int rc = agent_dump_argv("pg_dump", "-", "-", v, &argv, err);
	agent_dump_argv_free(argv);
	/* The loader names the section and key already. */
	static const char prefix[] = "[postgres] dump_options: ";
	if (rc != 0 && err != NULL && strncmp(err->msg, prefix, sizeof(prefix) - 1) == 0) {
		memmove(
		    err->msg, err->msg + sizeof(prefix) - 1, strlen(err->msg) - sizeof(prefix) + 2);
	}
	return (rc);
}

static int
check_schema_query(const char *v, coffer_err *err)
{
	if (strlen(v) > COFFER_MANIFEST_SCHEMA_QUERY_MAX) {
		coffer_err_set(err, COFFER_EINVAL, "is longer than %d bytes",
		    COFFER_MANIFEST_SCHEMA_QUERY_MAX);
		return (coffer_err_hint(err,
		    "use a short query, e.g. SELECT max(version) FROM "
		    "schema_migrations"));
	}
	return (0);
}

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const roles[] = { "service", "drill_runner", NULL };
static const char *const repo_types[] = { "posix", "s3", NULL };

static const coffer_config_key agent_keys[] = {
	{ .name = "name", .type = COFFER_CONFIG_STRING, .required = true, .check = check_ident },
	{ .name = "service", .type = COFFER_CONFIG_STRING, .required = true, .check = check_ident },
	{ .name = "state_dir", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "signing_key", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "key_ring", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "timezone",
	    .type = COFFER_CONFIG_STRING,
	    .def = "UTC",
	    .check = coffer_config_check_timezone },
	{ .name = "log_level", .type = COFFER_CONFIG_ENUM, .def = "info", .words = log_levels },
	/* drill_runner: restores other services' backups into a sandbox
	 * (agent/restore/drill.h); it has no service, schedule or database of its own. */
	{ .name = "role", .type = COFFER_CONFIG_ENUM, .def = "service", .words = roles },
	{ 0 },
};

static const coffer_config_key postgres_keys[] = {
	{ .name = "conninfo",
	    .type = COFFER_CONFIG_STRING,
	    .required = true,
	    .secret = COFFER_CONFIG_SECRET_IF_PASSWORD },
	{ .name = "pg_dump", .type = COFFER_CONFIG_PATH, .def = "pg_dump" },
	{ .name = "pg_restore", .type = COFFER_CONFIG_PATH, .def = "pg_restore" },
	{ .name = "psql", .type = COFFER_CONFIG_PATH, .def = "psql" },
	{ .name = "dump_options",
	    .type = COFFER_CONFIG_STRING,
	    .def = "",
	    .check = check_dump_options },
	{ .name = "bin_dir", .type = COFFER_CONFIG_PATH },
	{ 0 },
};

static const coffer_config_key schedule_keys[] = {
	{ .name = "logical",
	    .type = COFFER_CONFIG_CRON,
	    .required = true,
	    .why = "every service needs a backup schedule; manual-only backups are not allowed" },
	{ .name = "physical", .type = COFFER_CONFIG_CRON },
	{ .name = "completion_window",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "2h",
	    .min = 1000,
	    .max = 7 * DAYS },
	{ 0 },
};

static const coffer_config_key backup_keys[] = {
	{ .name = "compress_level", .type = COFFER_CONFIG_INT, .def = "3", .min = 1, .max = 19 },
	{ .name = "compress_workers", .type = COFFER_CONFIG_INT, .def = "2", .min = 0, .max = 64 },
	{ .name = "chunk_size",
	    .type = COFFER_CONFIG_SIZE,
	    .def = "1MiB",
	    .min = 64 * 1024,
	    .max = 16 * 1024 * 1024 },
	/* Recorded in each manifest with its result; drills compare. */
	{ .name = "schema_query", .type = COFFER_CONFIG_STRING, .check = check_schema_query },
	{ 0 },
};

static const coffer_config_key repo_keys[] = {
	{ .name = "type",
	    .type = COFFER_CONFIG_ENUM,
	    .required = true,
	    .words = repo_types,
	    .why = "the repository is where backups are written" },
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
	{ 0 },
};

static const coffer_config_key coordinator_keys[] = {
	{ .name = "url", .type = COFFER_CONFIG_STRING, .required = true, .check = check_url },
	{ .name = "ca", .type = COFFER_CONFIG_PATH },
	{ .name = "cert", .type = COFFER_CONFIG_PATH },
	{ .name = "key", .type = COFFER_CONFIG_PATH },
	{ .name = "insecure", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ .name = "heartbeat",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "60s",
	    .min = 1 * SECS,
	    .max = 1 * HOURS },
	{ .name = "retry_max",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "5m",
	    .min = 1 * SECS,
	    .max = 1 * DAYS },
	{ 0 },
};

/* [keys]: public keys only; what a host needs to escrow its key ring and
 * to trust manifests signed by keys it does not hold (ARCHITECTURE.md,
 * "Trust in a manifest"). */
static const coffer_config_key keys_keys[] = {
	{ .name = "escrow_public_key", .type = COFFER_CONFIG_PATH },
	{ .name = "coordinator_public_key", .type = COFFER_CONFIG_PATH },
	{ 0 },
};

/* A drill runner's sandbox: the PostgreSQL server drills restore into. */
static const coffer_config_key drill_keys[] = {
	{ .name = "sandbox",
	    .type = COFFER_CONFIG_STRING,
	    .required = true,
	    .why = "a drill runner restores into a sandbox server of its own" },
	{ .name = "jobs", .type = COFFER_CONFIG_INT, .def = "2", .min = 1, .max = 64 },
	/* A kept sandbox is a restored copy of a service's data on the host
	 * that holds every drilled service's key ring: bounded. */
	{ .name = "keep_sandbox_for",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "24h",
	    .min = 1 * MINS,
	    .max = 7 * DAYS },
	{ 0 },
};

/* [drill.<service>]: what the runner needs to read one service's backups. */
static const coffer_config_key drill_service_keys[] = {
	{ .name = "key_ring",
	    .type = COFFER_CONFIG_PATH,
	    .required = true,
	    .why = "the service's key ring decrypts its backups" },
	{ .name = "verify_key",
	    .type = COFFER_CONFIG_PATH,
	    .required = true,
	    .why = "the service agent's public key checks its manifests' signatures" },
	{ 0 },
};

static const coffer_config_section agent_sections[] = {
	{ .name = "agent", .required = true, .keys = agent_keys },
	{ .name = "postgres", .required = true, .keys = postgres_keys },
	{ .name = "schedule", .required = true, .keys = schedule_keys },
	{ .name = "backup", .keys = backup_keys },
	{ .name = "repository.primary", .required = true, .keys = repo_keys },
	{ .name = "repository.dr", .keys = repo_keys },
	{ .name = "coordinator", .keys = coordinator_keys },
	{ .name = "keys", .keys = keys_keys },
	{ .name = "drill", .keys = drill_keys },
	{ .name = "drill.*", .keys = drill_service_keys },
	{ 0 },
};

static bool
is_runner(const coffer_config *ini)
{
	return (strcmp(coffer_config_str(ini, "agent", "role"), "drill_runner") == 0);
}

/* A drill runner has no service, key ring, database or schedule of its own. */
static bool
runner_optional(const coffer_config *ini, const char *section, const char *key)
{
	if (!coffer_config_has_section(ini, "agent") || !is_runner(ini)) {
		return (false);
	}
	if (strcmp(section, "agent") == 0) {
		return (
		    key != NULL && (strcmp(key, "service") == 0 || strcmp(key, "key_ring") == 0));
	}
	return (strcmp(section, "postgres") == 0 || strcmp(section, "schedule") == 0);
}

static const coffer_config_schema agent_schema = {
	.sections = agent_sections,
	.check_cron = coffer_cron_check,
	.optional = runner_optional,
};

const coffer_config_schema *
agent_config_schema(void)
{
	return (&agent_schema);
}

/* NULL for unset keys without a default, so callers test presence simply. */
static const char *
opt_str(const coffer_config *ini, const char *section, const char *key)
{
	return (coffer_config_has(ini, section, key) ? coffer_config_str(ini, section, key) : NULL);
}

static int
repo_load(const coffer_config *ini, const char *section, agent_repo_config *r, coffer_err *err)
{
	static const char *const s3_only[] = { "endpoint", "region", "bucket", "prefix",
		"access_key", "secret_key", "session_token", "path_style", "insecure_http" };
	static const char *const s3_needs[] = { "endpoint", "region", "bucket" };
	memset(r, 0, sizeof(*r));
	if (!coffer_config_has_section(ini, section)) {
		return (0);
	}
	r->present = true;
	r->type = strcmp(coffer_config_str(ini, section, "type"), "s3") == 0 ? AGENT_REPO_S3
	                                                                     : AGENT_REPO_POSIX;
	r->path = opt_str(ini, section, "path");
	r->endpoint = opt_str(ini, section, "endpoint");
	r->region = opt_str(ini, section, "region");
	r->bucket = opt_str(ini, section, "bucket");
	r->prefix = coffer_config_str(ini, section, "prefix");
	r->access_key = opt_str(ini, section, "access_key");
	r->secret_key = opt_str(ini, section, "secret_key");
	r->session_token = opt_str(ini, section, "session_token");
	r->path_style = coffer_config_bool(ini, section, "path_style");
	r->insecure_http = coffer_config_bool(ini, section, "insecure_http");
	if (r->type == AGENT_REPO_POSIX) {
		if (r->path == NULL) {
			coffer_config_err_at(ini, section, "type", err,
			    "type = posix needs 'path', which is missing");
			return (coffer_err_hint(err,
			    "add 'path = /srv/coffer' (the repository's "
			    "directory) under [%s]",
			    section));
		}
		for (size_t i = 0; i < sizeof(s3_only) / sizeof(s3_only[0]); i++) {
			if (coffer_config_has(ini, section, s3_only[i])) {
				coffer_config_err_at(ini, section, s3_only[i], err,
				    "applies only to type = s3, and this repository is posix");
				return (coffer_err_hint(
				    err, "remove %s, or set type = s3", s3_only[i]));
			}
		}
		return (0);
	}
	if (r->path != NULL) {
		coffer_config_err_at(ini, section, "path", err,
		    "applies only to type = posix, and this repository is s3");
		return (coffer_err_hint(err, "remove path; use prefix for a folder in the bucket"));
	}
	for (size_t i = 0; i < sizeof(s3_needs) / sizeof(s3_needs[0]); i++) {
		if (!coffer_config_has(ini, section, s3_needs[i])) {
			coffer_config_err_at(ini, section, "type", err,
			    "type = s3 needs '%s', which is missing", s3_needs[i]);
			return (coffer_err_hint(
			    err, "add endpoint, region and bucket under [%s]", section));
		}
	}
	if (coffer_repo_s3_section_check(ini, section, err) != 0) {
		return (err->code);
	}
	if ((r->access_key == NULL) != (r->secret_key == NULL)) {
		const char *set = r->access_key != NULL ? "access_key" : "secret_key";
		coffer_config_err_at(
		    ini, section, set, err, "access_key and secret_key must be set together");
		return (coffer_err_hint(err,
		    "set both, or neither to use the environment's "
		    "credentials"));
	}
	if (r->session_token != NULL && r->access_key == NULL) {
		coffer_config_err_at(ini, section, "session_token", err,
		    "session_token needs access_key and secret_key");
		return (coffer_err_hint(err,
		    "add the temporary access_key and secret_key that "
		    "go with the token"));
	}
	return (0);
}

static int
coordinator_load(const coffer_config *ini, agent_config *c, coffer_err *err)
{
	c->heartbeat_ms = coffer_config_duration_ms(ini, "coordinator", "heartbeat");
	c->retry_max_ms = coffer_config_duration_ms(ini, "coordinator", "retry_max");
	c->coordinator_insecure = coffer_config_bool(ini, "coordinator", "insecure");
	c->coordinator_present = coffer_config_has_section(ini, "coordinator");
	if (!c->coordinator_present) {
		return (0);
	}
	c->coordinator_url = coffer_config_str(ini, "coordinator", "url");
	c->coordinator_ca = opt_str(ini, "coordinator", "ca");
	c->coordinator_cert = opt_str(ini, "coordinator", "cert");
	c->coordinator_key = opt_str(ini, "coordinator", "key");
	if (strncmp(c->coordinator_url, "tls+tcp://", 10) != 0) {
		return (0);
	}
	/* Mutual TLS: the coordinator refuses an agent without a client
	 * certificate, so fail here rather than at every connection. */
	const char *missing = c->coordinator_cert == NULL           ? "cert"
	    : c->coordinator_key == NULL                            ? "key"
	    : c->coordinator_ca == NULL && !c->coordinator_insecure ? "ca"
	                                                            : NULL;
	if (missing != NULL) {
		coffer_config_err_at(ini, "coordinator", "url", err,
		    "a tls+tcp:// coordinator needs '%s', which is missing", missing);
		return (coffer_err_hint(err,
		    "add ca, cert and key (the platform CA, this agent's "
		    "certificate and its private key) under [coordinator]"));
	}
	return (0);
}

/* The runner's own rules: [drill] it must have; a service agent must not
 * (a production agent never restores into a sandbox on its own), nor may a
 * runner set what belongs to a service. */
static int
drill_load(const coffer_config *ini, agent_config *c, coffer_err *err)
{
	if (!c->drill_runner) {
		if (coffer_config_has_section(ini, "drill")) {
			coffer_config_err_at(ini, "drill", NULL, err,
			    "[drill] is for drill runners, and this agent has role = service");
			return (coffer_err_hint(err,
			    "remove [drill], or set [agent] role = "
			    "drill_runner on a separate runner host"));
		}
		return (0);
	}
	static const char *const service_only[][3] = { { "agent", "service", "service" },
		{ "agent", "key_ring", "key ring" }, { "postgres", "conninfo", "database" },
		{ "schedule", "logical", "backup schedule" } };
	for (size_t i = 0; i < sizeof(service_only) / sizeof(service_only[0]); i++) {
		if (coffer_config_has(ini, service_only[i][0], service_only[i][1])) {
			coffer_config_err_at(ini, service_only[i][0], service_only[i][1], err,
			    "a drill runner has no %s of its own", service_only[i][2]);
			return (coffer_err_hint(err,
			    "remove it; per-service keys go under "
			    "[drill.<service>] (key_ring, verify_key)"));
		}
	}
	if (!coffer_config_has_section(ini, "drill")) {
		coffer_config_err_at(ini, "agent", "role", err,
		    "role = drill_runner needs a [drill] section with sandbox");
		return (coffer_err_hint(err,
		    "add [drill] sandbox = host=... user=... (a PostgreSQL "
		    "server that is no service's production database)"));
	}
	c->drill_sandbox = coffer_config_str(ini, "drill", "sandbox");
	c->drill_jobs = (int)coffer_config_int(ini, "drill", "jobs");
	c->drill_keep_sandbox_ms = coffer_config_duration_ms(ini, "drill", "keep_sandbox_for");
	return (0);
}

/* A bare command name is looked up in bin_dir when that is set; a path is
 * taken as written. */
static int
resolve_bin(const char *bin_dir, const char *cmd, char **out, coffer_err *err)
{
	if (bin_dir == NULL || strchr(cmd, '/') != NULL) {
		*out = strdup(cmd);
	} else {
		size_t n = strlen(bin_dir) + 1 + strlen(cmd) + 1;
		*out = malloc(n);
		if (*out != NULL) {
			snprintf(*out, n, "%s%s%s", bin_dir,
			    bin_dir[strlen(bin_dir) - 1] == '/' ? "" : "/", cmd);
		}
	}
	if (*out == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory reading agent config"));
	}
	return (0);
}

static int
fill(struct agent_config_priv *p, coffer_err *err)
{
	agent_config *c = &p->pub;
	const coffer_config *ini = c->ini;
	c->name = coffer_config_str(ini, "agent", "name");
	c->drill_runner = is_runner(ini);
	c->service = c->drill_runner ? "" : coffer_config_str(ini, "agent", "service");
	c->state_dir = coffer_config_str(ini, "agent", "state_dir");
	c->signing_key = coffer_config_str(ini, "agent", "signing_key");
	c->key_ring = coffer_config_str(ini, "agent", "key_ring");
	c->timezone = coffer_config_str(ini, "agent", "timezone");
	if (coffer_log_level_parse(coffer_config_str(ini, "agent", "log_level"), &c->log_level) !=
	    0) {
		c->log_level = COFFER_LOG_INFO; /* unreachable: the enum matches the parser */
	}

	c->conninfo = coffer_config_str(ini, "postgres", "conninfo");
	c->dump_options = coffer_config_str(ini, "postgres", "dump_options");
	c->bin_dir = opt_str(ini, "postgres", "bin_dir");
	int rc;
	if ((rc = resolve_bin(c->bin_dir, coffer_config_str(ini, "postgres", "pg_dump"),
	         &p->pg_dump, err)) != 0 ||
	    (rc = resolve_bin(c->bin_dir, coffer_config_str(ini, "postgres", "pg_restore"),
	         &p->pg_restore, err)) != 0 ||
	    (rc = resolve_bin(
	         c->bin_dir, coffer_config_str(ini, "postgres", "psql"), &p->psql, err)) != 0) {
		return (rc);
	}
	c->pg_dump = p->pg_dump;
	c->pg_restore = p->pg_restore;
	c->psql = p->psql;

	c->schedule_logical = coffer_config_str(ini, "schedule", "logical");
	c->schedule_physical = opt_str(ini, "schedule", "physical");
	c->completion_window_ms = coffer_config_duration_ms(ini, "schedule", "completion_window");

	c->compress_level = (int)coffer_config_int(ini, "backup", "compress_level");
	c->compress_workers = (int)coffer_config_int(ini, "backup", "compress_workers");
	c->chunk_size = (size_t)coffer_config_size(ini, "backup", "chunk_size");
	c->schema_query = opt_str(ini, "backup", "schema_query");

	if ((rc = repo_load(ini, "repository.primary", &c->repo_primary, err)) != 0 ||
	    (rc = repo_load(ini, "repository.dr", &c->repo_dr, err)) != 0) {
		return (rc);
	}
	c->escrow_public_key = opt_str(ini, "keys", "escrow_public_key");
	c->coordinator_public_key = opt_str(ini, "keys", "coordinator_public_key");
	if ((rc = drill_load(ini, c, err)) != 0) {
		return (rc);
	}
	return (coordinator_load(ini, c, err));
}

static int
finish(coffer_config *ini, agent_config **out, coffer_err *err)
{
	struct agent_config_priv *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		coffer_config_free(ini);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory reading agent config"));
	}
	p->pub.ini = ini;
	int rc = fill(p, err);
	if (rc != 0) {
		agent_config_free(&p->pub);
		return (rc);
	}
	*out = &p->pub;
	return (0);
}

int
agent_config_load(const char *path, agent_config **out, coffer_err *err)
{
	*out = NULL;
	coffer_config *ini;
	int rc = coffer_config_load(path, &agent_schema, &ini, err);
	if (rc != 0) {
		return (rc);
	}
	return (finish(ini, out, err));
}

int
agent_config_load_string(const char *text, const char *name, agent_config **out, coffer_err *err)
{
	*out = NULL;
	coffer_config *ini;
	int rc = coffer_config_load_string(text, name, &agent_schema, &ini, err);
	if (rc != 0) {
		return (rc);
	}
	return (finish(ini, out, err));
}

void
agent_config_free(agent_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	struct agent_config_priv *p = (struct agent_config_priv *)cfg;
	coffer_config_free(p->pub.ini);
	free(p->pg_dump);
	free(p->pg_restore);
	free(p->psql);
	free(p);
}
