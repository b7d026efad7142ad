/*
 * Driver for tests/integration/settle.sh: one retention pass (which syncs
 * the policies and sweeps orphans) and one alert evaluation (which abandons
 * backups that never reported) against the real catalog and the primary
 * repository of a coordinator config, at an injected time. Prints
 * "orphans=N orphan_objects=N orphan_bytes=N marked=N deleted=N
 * triggered=N resolved=N".
 *
 *   settle_itest CONF NOW_MS
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/conf/config.h"
#include "common/repo/repo.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/policy/prune.h"
#include "coordinator/watch/alerts.h"

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: settle_itest CONF NOW_MS\n");
		return (2);
	}
	coffer_err err = { 0 };
	coord_config *cfg = NULL;
	coord_catalog *cat = NULL;
	coffer_repo *repo = NULL;
	coord_audit_key key;
	if (coord_config_load(argv[1], &cfg, &err) != 0) {
		fprintf(stderr, "settle_itest: config: %s\n", err.msg);
		return (1);
	}
	coffer_repo_config rc = { .type = "posix",
		.path = coffer_config_str(cfg->ini, "repository.primary", "path") };
	if (coord_audit_key_load(cfg->audit_key, &key, &err) != 0 ||
	    (cat = coord_catalog_open(cfg->catalog, &err)) == NULL ||
	    coffer_repo_open(
	        &rc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, &repo, &err) != 0) {
		fprintf(stderr, "settle_itest: setup: %s\n", err.msg);
		return (1);
	}
	int64_t now = strtoll(argv[2], NULL, 10);
	coord_prune_stats st;
	coord_alerts_stats ast = { 0 };
	int rv = coord_retention_pass(cat, &key, cfg, repo, now, &st, &err);
	if (rv == 0) {
		rv = coord_alerts_evaluate(cat, &key, cfg, NULL, now, &ast, &err);
	}
	printf("orphans=%zu orphan_objects=%zu orphan_bytes=%" PRIu64
	       " marked=%zu deleted=%zu triggered=%d resolved=%d\n",
	    st.orphans, st.orphan_objects, st.orphan_bytes, st.marked, st.deleted, ast.triggered,
	    ast.resolved);
	if (rv != 0) {
		fprintf(stderr, "settle_itest: %s (hint: %s)\n", err.msg, err.hint);
	}
	coffer_repo_close(repo);
	coord_catalog_close(cat);
	coord_config_free(cfg);
	coord_audit_key_clear(&key);
	return (rv == 0 ? 0 : 1);
}
