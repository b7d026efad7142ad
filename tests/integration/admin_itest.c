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
 *   admin_itest serve -c COORDINATOR_CONF --url URL --ca F --cert F --key F
 *	--port-file F [--seconds N]
 *	a stand-in admin listener until `coffer-coordinator run` serves
 *	[coordinator] admin_listen: the real wire server (common/wire/net.h, mutual
 *	TLS) whose requests go to coord_admin_handle on the libuv thread pool,
 *	one at a time (one catalog connection), as the coordinator's catalog
 *	worker would. Writes the port to --port-file once listening; stops on
 *	SIGTERM or after --seconds (default 120).
 *
 *   admin_itest append-big -c COORDINATOR_CONF N
 *	appends N properly chained audit rows with about 60 KiB of details
 *	each, to push a listing past its size budget.
 *
 * call exits 0 when every reply decoded, 1 otherwise; 2 on usage.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "common/wire/adminmsg.h"
#include "common/wire/net.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/serve/admin.h"

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

/* ---- serve ---- */

typedef struct serve_state {
	uv_loop_t loop;
	uv_signal_t sigterm;
	uv_timer_t deadline;
	coffer_net_server *srv;
	pthread_mutex_t lock; /* one catalog connection: one request at a time */
	coord_catalog *cat;
	coord_config *cfg;
	coord_audit_key key;
	bool stopped;
	unsigned long served;
} serve_state;

typedef struct job {
	uv_work_t work;
	serve_state *st;
	coffer_net_reply *reply;
	uint8_t *req, *rep;
	size_t req_len, rep_len;
	int rv;
} job;

static void
job_work(uv_work_t *w)
{
	job *j = w->data;
	pthread_mutex_lock(&j->st->lock);
	j->rv = coord_admin_handle(
	    j->st->cat, j->st->cfg, &j->st->key, j->req, j->req_len, &j->rep, &j->rep_len);
	pthread_mutex_unlock(&j->st->lock);
}

static void
job_done(uv_work_t *w, int status)
{
	job *j = w->data;
	(void)status;
	coffer_err err;
	coffer_err_clear(&err);
	if (j->rv != 0) {
		coffer_net_reply_drop(j->reply);
	} else if (coffer_net_reply_send(j->reply, j->rep, j->rep_len, &err) == 0) {
		j->st->served++;
	}
	free(j->req);
	free(j->rep);
	free(j);
}

static void
on_request(
    void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len, const coffer_net_peer *peer)
{
	serve_state *st = arg;
	(void)peer;
	job *j = calloc(1, sizeof(*j));
	uint8_t *copy = malloc(len > 0 ? len : 1);
	if (j == NULL || copy == NULL) {
		free(j);
		free(copy);
		coffer_net_reply_drop(reply);
		return;
	}
	memcpy(copy, req, len);
	j->work.data = j;
	j->st = st;
	j->reply = reply;
	j->req = copy;
	j->req_len = len;
	uv_queue_work(&st->loop, &j->work, job_work, job_done);
}

static void
serve_stop(serve_state *st)
{
	if (st->stopped) {
		return;
	}
	st->stopped = true;
	coffer_net_server_stop(st->srv);
	uv_unref((uv_handle_t *)&st->sigterm);
	uv_close((uv_handle_t *)&st->deadline, NULL);
}

static void
on_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	serve_stop(h->data);
}

static void
on_deadline(uv_timer_t *h)
{
	serve_stop(h->data);
}

static int
serve(int argc, char **argv)
{
	const char *conf = NULL, *port_file = NULL;
	coffer_net_server_config ncfg;
	memset(&ncfg, 0, sizeof(ncfg));
	long seconds = 120;
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (strcmp(a, "-c") == 0) {
			conf = v;
		} else if (strcmp(a, "--url") == 0) {
			ncfg.url = v;
		} else if (strcmp(a, "--ca") == 0) {
			ncfg.tls.ca = v;
		} else if (strcmp(a, "--cert") == 0) {
			ncfg.tls.cert = v;
		} else if (strcmp(a, "--key") == 0) {
			ncfg.tls.key = v;
		} else if (strcmp(a, "--port-file") == 0) {
			port_file = v;
		} else if (strcmp(a, "--seconds") == 0) {
			seconds = strtol(v, NULL, 10);
		} else {
			return (usage(a));
		}
	}
	if (conf == NULL || ncfg.url == NULL || port_file == NULL || seconds < 1) {
		return (usage("serve needs -c, --url and --port-file"));
	}
	serve_state st;
	memset(&st, 0, sizeof(st));
	pthread_mutex_init(&st.lock, NULL);
	coffer_err err;
	coffer_err_clear(&err);
	if (coord_config_load(conf, &st.cfg, &err) != 0 ||
	    coord_audit_key_load(st.cfg->audit_key, &st.key, &err) != 0 ||
	    (st.cat = coord_catalog_open(st.cfg->catalog, &err)) == NULL) {
		return (die(&err));
	}
	uv_loop_init(&st.loop);
	if (coffer_net_server_start(&st.loop, &ncfg, on_request, &st, &st.srv, &err) != 0) {
		uv_run(&st.loop, UV_RUN_DEFAULT);
		uv_loop_close(&st.loop);
		return (die(&err));
	}
	uv_signal_init(&st.loop, &st.sigterm);
	uv_timer_init(&st.loop, &st.deadline);
	st.sigterm.data = st.deadline.data = &st;
	uv_signal_start(&st.sigterm, on_signal, SIGTERM);
	uv_timer_start(&st.deadline, on_deadline, (uint64_t)seconds * 1000u, 0);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	FILE *f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", coffer_net_server_port(st.srv)) < 0 || fclose(f) != 0 ||
	    rename(tmp, port_file) != 0) {
		perror("admin_itest serve: port file");
		return (1);
	}
	uv_run(&st.loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&st.sigterm, NULL);
	uv_run(&st.loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&st.loop);
	printf("served %lu\n", st.served);
	coord_catalog_close(st.cat);
	coord_audit_key_clear(&st.key);
	coord_config_free(st.cfg);
	pthread_mutex_destroy(&st.lock);
	return (rc == 0 ? 0 : 1);
}

static int
append_big(int argc, char **argv)
{
	if (argc != 5 || strcmp(argv[2], "-c") != 0) {
		return (usage("append-big -c CONF N"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_config *cfg = NULL;
	coord_audit_key key;
	coord_catalog *cat = NULL;
	if (coord_config_load(argv[3], &cfg, &err) != 0 ||
	    coord_audit_key_load(cfg->audit_key, &key, &err) != 0 ||
	    (cat = coord_catalog_open(cfg->catalog, &err)) == NULL) {
		return (die(&err));
	}
	size_t fill = 60 * 1024;
	char *details = malloc(fill + 32);
	if (details == NULL) {
		return (1);
	}
	memcpy(details, "{\"fill\": \"", 10);
	memset(details + 10, 'x', fill);
	memcpy(details + 10 + fill, "\"}", 3);
	int rc = 0;
	for (long i = 0; i < strtol(argv[4], NULL, 10) && rc == 0; i++) {
		if (coord_audit_append(
		        cat, &key, "admin_itest", "test.big", "", details, NULL, &err) != 0) {
			rc = die(&err);
		}
	}
	free(details);
	coord_catalog_close(cat);
	coord_audit_key_clear(&key);
	coord_config_free(cfg);
	return (rc);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "append-big") == 0) {
		return (append_big(argc, argv));
	}
	if (argc >= 2 && strcmp(argv[1], "serve") == 0) {
		return (serve(argc, argv));
	}
	if (argc < 2 || strcmp(argv[1], "call") != 0) {
		return (
		    usage("usage: admin_itest call -c CONF --key F --operator NAME --command C"));
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
	if (coffer_adminmsg_build(skey, op, command, args, nargs, coffer_clock_now(NULL) + skew,
	        NULL, &req, &req_len, &err) != 0) {
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
		printf("status=%s\terror=%s\tjson=%s\n", coffer_adminmsg_status_name(r.status),
		    r.error, r.json);
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
