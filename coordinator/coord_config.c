/*
 * Coordinator configuration: the coordinator.conf schema. See
 * coordinator/coord_config.h. The typed checks live in common/config.c;
 * what is here is what needs to know what a coordinator is.
 */
#include "coordinator/coord_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cron.h"
#include "common/tz.h"

#define SECS 1000LL
#define MINS (60 * SECS)
#define HOURS (60 * MINS)
#define DAYS (24 * HOURS)
#define YEARS (366 * DAYS)

static int
check_cron(const char *expr, coffer_err *err)
{
	coffer_cron *c = coffer_cron_parse(expr, err);
	if (c == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_EINVAL);
	}
	coffer_cron_free(c);
	return (0);
}

static int
check_timezone(const char *v, coffer_err *err)
{
	coffer_tz *tz = coffer_tz_load(v, err);
	if (tz == NULL) {
		int code = err != NULL && err->code != 0 ? err->code : COFFER_EINVAL;
		if (err != NULL && err->hint[0] == '\0') {
			coffer_err_hint(err, "use UTC or a tz database name such as Europe/Rome");
		}
		return (code);
	}
	coffer_tz_free(tz);
	return (0);
}

static int
check_listen(const char *v, coffer_err *err)
{
	static const char *const schemes[] = { "tls+tcp://", "tcp://", "ipc://" };
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i]);
		if (strncmp(v, schemes[i], n) == 0 && v[n] != '\0') {
			return (0);
		}
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not a listen address", v);
	return (coffer_err_hint(err, "write tls+tcp://host:port (tcp:// and ipc:// only for "
				     "tests and single-host setups)"));
}

static int
check_http_url(const char *v, coffer_err *err)
{
	if ((strncmp(v, "https://", 8) == 0 && v[8] != '\0') ||
	    (strncmp(v, "http://", 7) == 0 && v[7] != '\0')) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not an http(s) URL", v);
	return (coffer_err_hint(err, "write https://host[:port]/path"));
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

/* Section instance names ("service.<name>") end up in repository paths
 * and audit subjects: nothing that climbs out of a directory. */
static bool
ident_ok(const char *v)
{
	size_t n = strlen(v);
	bool ok = n >= 1 && n <= 63 && v[0] != '.' && v[0] != '-';
	for (size_t i = 0; ok && i < n; i++) {
		ok = isalnum((unsigned char)v[i]) || v[i] == '.' || v[i] == '_' || v[i] == '-';
	}
	return (ok);
}

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const repo_types[] = { "posix", "s3", NULL };
static const char *const roles[] = { "operator", "auditor", NULL };
static const char *const dr_copies[] = { "none", "all", "daily", "weekly", "monthly", "yearly",
	NULL };
static const char *const dr_locks[] = { "governance", "compliance", NULL };
static const char *const compliances[] = { "none", "gdpr", "hipaa", NULL };

static const coffer_config_key coordinator_keys[] = {
	{ .name = "listen", .type = COFFER_CONFIG_STRING, .required = true, .check = check_listen },
	{ .name = "admin_listen", .type = COFFER_CONFIG_STRING, .check = check_listen },
	{ .name = "catalog", .type = COFFER_CONFIG_STRING, .required = true },
	{ .name = "audit_key", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "state_dir", .type = COFFER_CONFIG_PATH, .def = "/var/lib/coffer-coordinator" },
	{ .name = "metrics_listen", .type = COFFER_CONFIG_STRING },
	{ .name = "insecure", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ .name = "log_level", .type = COFFER_CONFIG_ENUM, .def = "info", .words = log_levels },
	{ 0 },
};

static const coffer_config_key tls_keys[] = {
	{ .name = "ca", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "cert", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "key", .type = COFFER_CONFIG_PATH, .required = true },
	{ 0 },
};

static const coffer_config_key repo_keys[] = {
	{ .name = "type", .type = COFFER_CONFIG_ENUM, .required = true, .words = repo_types },
	{ .name = "path", .type = COFFER_CONFIG_PATH },
	{ .name = "endpoint", .type = COFFER_CONFIG_STRING, .check = check_http_url },
	{ .name = "region", .type = COFFER_CONFIG_STRING },
	{ .name = "bucket", .type = COFFER_CONFIG_STRING },
	{ .name = "prefix", .type = COFFER_CONFIG_STRING, .def = "" },
	{ .name = "access_key", .type = COFFER_CONFIG_STRING },
	{ .name = "secret_key", .type = COFFER_CONFIG_STRING },
	{ .name = "session_token", .type = COFFER_CONFIG_STRING },
	{ .name = "path_style", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ 0 },
};

static const coffer_config_key alerts_keys[] = {
	{ .name = "pagerduty_url", .type = COFFER_CONFIG_STRING,
	    .def = "https://events.pagerduty.com/v2/enqueue", .check = check_http_url },
	{ .name = "routing_key", .type = COFFER_CONFIG_STRING },
	{ .name = "webhook_url", .type = COFFER_CONFIG_STRING, .check = check_http_url },
	{ 0 },
};

static const coffer_config_key operator_keys[] = {
	{ .name = "public_key", .type = COFFER_CONFIG_PATH, .required = true },
	{ .name = "role", .type = COFFER_CONFIG_ENUM, .required = true, .words = roles },
	{ 0 },
};

static const coffer_config_key service_keys[] = {
	{ .name = "owner", .type = COFFER_CONFIG_STRING, .required = true },
	{ .name = "schedule", .type = COFFER_CONFIG_CRON, .required = true },
	{ .name = "timezone", .type = COFFER_CONFIG_STRING, .def = "UTC", .check = check_timezone },
	{ .name = "retention.daily", .type = COFFER_CONFIG_INT, .min = 0, .max = 10000 },
	{ .name = "retention.weekly", .type = COFFER_CONFIG_INT, .min = 0, .max = 10000 },
	{ .name = "retention.monthly", .type = COFFER_CONFIG_INT, .min = 0, .max = 10000 },
	{ .name = "retention.yearly", .type = COFFER_CONFIG_STRING, .check = check_count_or_forever },
	{ .name = "retention.min_redundancy", .type = COFFER_CONFIG_INT, .def = "1", .min = 1,
	    .max = 1000 },
	{ .name = "pitr.window", .type = COFFER_CONFIG_DURATION, .min = 1 * MINS,
	    .max = 10 * YEARS },
	{ .name = "dr.copy", .type = COFFER_CONFIG_ENUM, .def = "none", .words = dr_copies },
	{ .name = "dr.lock", .type = COFFER_CONFIG_ENUM, .def = "compliance", .words = dr_locks },
	{ .name = "dr.retention", .type = COFFER_CONFIG_DURATION, .min = 1 * DAYS,
	    .max = 100 * YEARS },
	{ .name = "compliance", .type = COFFER_CONFIG_ENUM, .def = "none", .words = compliances },
	{ .name = "compliance.max_retention", .type = COFFER_CONFIG_DURATION, .min = 1 * DAYS,
	    .max = 100 * YEARS, .allow_forever = true },
	{ .name = "drill.schedule", .type = COFFER_CONFIG_CRON },
	{ .name = "drill.rto", .type = COFFER_CONFIG_DURATION, .min = 1 * MINS, .max = 30 * DAYS },
	{ 0 },
};

static const coffer_config_section coordinator_sections[] = {
	{ .name = "coordinator", .required = true, .keys = coordinator_keys },
	{ .name = "tls", .keys = tls_keys },
	{ .name = "repository.*", .keys = repo_keys },
	{ .name = "alerts", .keys = alerts_keys },
	{ .name = "operator.*", .keys = operator_keys },
	{ .name = "service.*", .keys = service_keys },
	{ 0 },
};

static const coffer_config_schema coordinator_schema = {
	.sections = coordinator_sections,
	.check_cron = check_cron,
};

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
		if (!ident_ok(names[i])) {
			char section[COFFER_CONFIG_MAX_NAME + 16];
			snprintf(section, sizeof(section), "%s.%s", pattern, names[i]);
			coffer_config_err_at(ini, section, NULL, err, "'%s' is not a valid %s name",
			    names[i], pattern);
			return (coffer_err_hint(err, "use 1 to 63 letters, digits, '.', '_' or '-', "
						     "not starting with '.' or '-'"));
		}
	}
	return (0);
}

static int
finish(coffer_config *ini, coord_config **out, coffer_err *err)
{
	int rc;
	if ((rc = check_instances(ini, "service", err)) != 0 ||
	    (rc = check_instances(ini, "operator", err)) != 0 ||
	    (rc = check_instances(ini, "repository", err)) != 0) {
		coffer_config_free(ini);
		return (rc);
	}
	coord_config *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		coffer_config_free(ini);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory reading coordinator config"));
	}
	c->ini = ini;
	c->listen = coffer_config_str(ini, "coordinator", "listen");
	c->admin_listen = opt_str(ini, "coordinator", "admin_listen");
	c->catalog = coffer_config_str(ini, "coordinator", "catalog");
	c->audit_key = coffer_config_str(ini, "coordinator", "audit_key");
	c->state_dir = coffer_config_str(ini, "coordinator", "state_dir");
	c->metrics_listen = opt_str(ini, "coordinator", "metrics_listen");
	c->insecure = coffer_config_bool(ini, "coordinator", "insecure");
	if (coffer_log_level_parse(coffer_config_str(ini, "coordinator", "log_level"),
		&c->log_level) != 0) {
		c->log_level = COFFER_LOG_INFO;
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
coord_config_load_string(const char *text, const char *name, coord_config **out,
    coffer_err *err)
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
	free(cfg);
}
