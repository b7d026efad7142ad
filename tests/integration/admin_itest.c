/*
 * Driver for tests/integration/admin.sh: plays an operator against
 * coord_admin_handle directly, with the real catalog, audit key and
 * [operator.*] sections named by a coordinator.conf.
 *
 *   admin_itest call -c COORDINATOR_CONF --key KEYFILE --operator NAME
 *	--command CMD [--arg K=V]... [--skew-ms N] [--repeat N]
 *	[--garbage | --truncate]
 *	builds one AdminEnvelope signed with KEYFILE (sent_at = now + N ms),
 *	hands it to coord_admin_handle --repeat times (the very same bytes:
 *	a replay), and prints one line per reply:
 *	  status=<word>\terror=<text>\tjson=<json>
 *	--garbage sends bytes that are no protobuf; --truncate cuts the
 *	envelope in half.
 *
 * Exits 0 when every reply decoded, 1 otherwise, 2 on usage.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adminmsg.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/sign.h"
#include "coordinator/admin.h"
#include "coordinator/audit.h"
#include "coordinator/catalog.h"
#include "coordinator/coord_config.h"

static int
usage(const char *why)
{
	fprintf(stderr, "admin_itest: %s\n", why);
	return (2);
}

static int
die(const coffer_err *err)
{
	coffer_err_print("admin_itest", err);
	return (1);
}

int
main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "call") != 0) {
		return (usage("usage: admin_itest call -c CONF --key F --operator NAME --command C"));
	}
	const char *conf = NULL, *keyfile = NULL, *op = NULL, *command = NULL;
	coffer_adminmsg_arg args[COFFER_ADMINMSG_MAX_ARGS];
	size_t nargs = 0;
	long long skew = 0;
	int repeat = 1;
	bool garbage = false, truncate = false;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--garbage") == 0) {
			garbage = true;
			continue;
		}
		if (strcmp(a, "--truncate") == 0) {
			truncate = true;
			continue;
		}
		if (v == NULL) {
			return (usage("option without a value"));
		}
		i++;
		if (strcmp(a, "-c") == 0) {
			conf = v;
		} else if (strcmp(a, "--key") == 0) {
			keyfile = v;
		} else if (strcmp(a, "--operator") == 0) {
			op = v;
		} else if (strcmp(a, "--command") == 0) {
			command = v;
		} else if (strcmp(a, "--skew-ms") == 0) {
			skew = strtoll(v, NULL, 10);
		} else if (strcmp(a, "--repeat") == 0) {
			repeat = atoi(v);
		} else if (strcmp(a, "--arg") == 0) {
			char *eq = strchr(v, '=');
			if (eq == NULL || nargs == COFFER_ADMINMSG_MAX_ARGS) {
				return (usage("--arg K=V"));
			}
			*eq = '\0';
			args[nargs++] = (coffer_adminmsg_arg) { v, eq + 1 };
		} else {
			return (usage(a));
		}
	}
	if (conf == NULL || keyfile == NULL || op == NULL || command == NULL || repeat < 1) {
		return (usage("-c, --key, --operator and --command are required"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_config *cfg = NULL;
	coord_audit_key akey;
	coffer_sign_key *skey = NULL;
	if (coord_config_load(conf, &cfg, &err) != 0 ||
	    coord_audit_key_load(cfg->audit_key, &akey, &err) != 0 ||
	    coffer_sign_key_load(keyfile, &skey, &err) != 0) {
		return (die(&err));
	}
	coord_catalog *cat = coord_catalog_open(cfg->catalog, &err);
	if (cat == NULL) {
		return (die(&err));
	}
	uint8_t *req = NULL;
	size_t req_len = 0;
	if (coffer_adminmsg_build(skey, op, command, args, nargs, coffer_clock_now(NULL) + skew, NULL,
		&req, &req_len, &err) != 0) {
		return (die(&err));
	}
	if (garbage) {
		for (size_t i = 0; i < req_len; i++) {
			req[i] = (uint8_t)(0xff - i * 13);
		}
	}
	if (truncate) {
		req_len /= 2;
	}
	int rc = 0;
	for (int i = 0; i < repeat; i++) {
		uint8_t *rep = NULL;
		size_t rep_len = 0;
		if (coord_admin_handle(cat, cfg, &akey, req, req_len, &rep, &rep_len) != 0) {
			fprintf(stderr, "admin_itest: no reply\n");
			rc = 1;
			continue;
		}
		coffer_adminmsg_reply r;
		if (coffer_adminmsg_reply_decode(rep, rep_len, &r, &err) != 0) {
			free(rep);
			rc = die(&err);
			continue;
		}
		printf("status=%s\terror=%s\tjson=%s\n", coffer_adminmsg_status_name(r.status), r.error,
		    r.json);
		coffer_adminmsg_reply_fini(&r);
		free(rep);
	}
	free(req);
	coord_catalog_close(cat);
	coffer_sign_key_free(skey);
	coord_audit_key_clear(&akey);
	coord_config_free(cfg);
	return (rc);
}
