/*
 * Coordinator configuration: the coordinator.conf schema (common/config.h)
 * and the few values every coordinator command needs, read once.
 *
 * Sections: [coordinator] (required), [tls], [repository.*], [alerts],
 * [operator.*], [service.*]; unknown sections and keys are refused by the
 * loader with file:line and the allowed names. docs/CONFIGURATION.md
 * documents each key.
 *
 * Checked here beyond the types: names of services and operators are
 * 1..63 of [A-Za-z0-9._-] not starting with '.' or '-' (a service becomes a
 * repository directory); cron keys parse; timezone loads; retention.yearly
 * is a count or "forever". Policy rules that span keys (a service without
 * retention, retention under the compliance minimum, ...) belong to the
 * policy module, which reads the same loaded file through `ini`.
 *
 * Ownership: strings point into the loaded file and live until
 * coord_config_free.
 */
#ifndef COFFER_COORDINATOR_COORD_CONFIG_H
#define COFFER_COORDINATOR_COORD_CONFIG_H

#include <stdbool.h>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"

typedef struct coord_config {
	/* [coordinator] */
	const char *listen;
	const char *admin_listen;   /* NULL if unset */
	const char *catalog;        /* libpq conninfo; may hold a password: never log it */
	const char *audit_key;      /* path */
	const char *state_dir;
	const char *metrics_listen; /* NULL if unset */
	bool insecure;              /* plain tcp:// on a non-loopback address allowed */
	coffer_log_level log_level;
	/* The whole file, for modules that read their own sections. */
	coffer_config *ini;
} coord_config;

/* The schema (static), for check-config and for tests. */
const coffer_config_schema *coord_config_schema(void);

/* Reads and checks path; *out is for coord_config_free. Errors as
 * coffer_config_load. */
int coord_config_load(const char *path, coord_config **out, coffer_err *err);

/* The same from text; name stands in for the path in messages. */
int coord_config_load_string(const char *text, const char *name, coord_config **out,
    coffer_err *err);

void coord_config_free(coord_config *cfg);

#endif
