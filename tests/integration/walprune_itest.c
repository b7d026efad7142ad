/*
 * Driver for tests/integration/wal_e2e.sh: one WAL retention pass
 * (coordinator/wal/walprune.c) against the real catalog and the primary
 * repository of a coordinator config, at an injected time, so the script
 * need not wait out a PITR window. Prints "deleted=N failed=N services=N
 * purged=N".
 *
 *   walprune_itest CONF NOW_MS
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/conf/config.h"
#include "common/repo/repo.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/wal/walprune.h"

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: walprune_itest CONF NOW_MS\n");
		return (2);
	}
	coffer_err err = { 0 };
	coord_config *cfg = NULL;
	coord_catalog *cat = NULL;
	coffer_repo *repo = NULL;
	coord_audit_key key;
	if (coord_config_load(argv[1], &cfg, &err) != 0) {
		fprintf(stderr, "walprune_itest: config: %s\n", err.msg);
		return (1);
	}
	coffer_repo_config rc = { .type = "posix",
		.path = coffer_config_str(cfg->ini, "repository.primary", "path") };
	if (coord_audit_key_load(cfg->audit_key, &key, &err) != 0 ||
	    (cat = coord_catalog_open(cfg->catalog, &err)) == NULL ||
	    coffer_repo_open(
	        &rc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, &repo, &err) != 0) {
		fprintf(stderr, "walprune_itest: setup: %s\n", err.msg);
		return (1);
	}
	coord_walprune_stats st;
	int rc2 = coord_walprune_pass(cat, &key, cfg, repo, strtoll(argv[2], NULL, 10), &st, &err);
	printf("deleted=%" PRId64 " failed=%" PRId64 " services=%d purged=%" PRId64 "\n",
	    st.deleted, st.failed, st.services, st.purged);
	if (rc2 != 0) {
		fprintf(stderr, "walprune_itest: %s\n", err.msg);
	}
	coffer_repo_close(repo);
	coord_catalog_close(cat);
	coord_config_free(cfg);
	coord_audit_key_clear(&key);
	return (rc2 == 0 ? 0 : 1);
}
