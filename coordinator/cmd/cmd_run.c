/*
 * coffer-coordinator run -c FILE: the daemon. Loads the config and the
 * audit key, then serves agents until SIGTERM or SIGINT (coordinator/
 * server.h). Refuses to start on a catalog it cannot reach or whose schema
 * is not this binary's, or that it would use as the tables' owner or a
 * superuser (unless [coordinator] development), with one line saying what
 * to do. Keeps the audit log's local high-water mark in state_dir.
 */
#include <stdio.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/serve/server.h"

/* Least privilege: refuse the tables' owner or a superuser (docs/CATALOG.md).
 * A catalog that cannot be reached now is the server's to report (it
 * waits for it); this check then runs when the coordinator next starts. */
static int
check_role(const coord_config *cfg, coffer_err *err)
{
	coffer_err e;
	coffer_err_clear(&e);
	coord_catalog *cat = coord_catalog_open(cfg->catalog, &e);
	if (cat == NULL) {
		return (0);
	}
	int rv = coord_catalog_check_role(cat, cfg->development, &e);
	coord_catalog_close(cat);
	if (rv == COFFER_EREFUSED) {
		*err = e;
		return (rv);
	}
	return (0);
}

int
coord_cmd_run(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator run";
	const char *config = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_config *cfg = NULL;
	if ((rv = coord_config_load(config, &cfg, &err)) != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	coffer_log_init("coffer-coordinator", cfg->log_level);
	coord_audit_key key;
	if ((rv = coord_audit_key_load(cfg->audit_key, &key, &err)) == 0) {
		rv = check_role(cfg, &err);
		if (rv == 0) {
			rv = coord_audit_mark_setup(cfg->state_dir, true, &err);
		}
		if (rv == 0) {
			rv = coord_server_run(cfg, &key, &err);
		}
		coord_audit_key_clear(&key);
	}
	coord_config_free(cfg);
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	return (0);
}
