/*
 * coffer-coordinator check -c FILE [--max-skew 120s] [--output json]: every
 * prerequisite of a working coordinator tested for real, where check-config
 * only parses: the config; the catalog reached as the runtime role
 * ([coordinator] catalog); its schema at this binary's migrations; the
 * runtime role least-privileged (docs/CATALOG.md "Two roles"); this host's
 * clock against the catalog server's; the audit key; the TLS certificate,
 * key and CA (loaded as the listener loads them) and their expiry; each
 * listen address bindable, or held by a running coordinator; the primary
 * repository (a probe written, read back, compared and deleted); the DR
 * repository as far as the coordinator may look at it (it is write-only
 * by design: reachable, object lock enabled); alert delivery configured
 * (validated, never sent).
 *
 * It goes on after a failure so one run names every problem; each check is
 * bounded (libpq's connect_timeout, statement_timeout, S3's own retry
 * budget). One line per check with the fix (common/base/checklist.h); exit
 * 0 all ok, 1 a warning, 2 critical. Nothing printed holds the catalog's
 * conninfo, an S3 secret or a routing key.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <openssl/rand.h>

#include "common/base/checklist.h"
#include "common/base/clock.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/repo/repo.h"
#include "common/repo/s3.h"
#include "common/stream/sink.h"
#include "common/wire/tlsconf.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/policy/coord_config.h"

#define CERT_WARN_MS (30LL * 24 * 3600 * 1000)

typedef struct coord_check_run {
	coffer_checklist cl;
	const char *config_path;
	coord_config *cfg;
	int64_t max_skew_ms;
	char host[128];
} coord_check_run;

static void add(coord_check_run *r, const char *name, coffer_check_status st, const char *fix,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
add(coord_check_run *r, const char *name, coffer_check_status st, const char *fix, const char *fmt,
    ...)
{
	char detail[COFFER_CHECKLIST_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	coffer_checklist_add(&r->cl, name, st, fix, "%s", detail);
}

static void
add_err(coord_check_run *r, const char *name, coffer_check_status st, const coffer_err *err,
    const char *fix)
{
	add(r, name, st, fix != NULL ? fix : err->hint, "%s", err->msg);
}

/* ---- catalog ---- */

static void
check_catalog(coord_check_run *r)
{
	coffer_err err = { 0 };
	char fix[COFFER_CHECKLIST_FIX_MAX];
	coord_catalog *cat = coord_catalog_open(r->cfg->catalog, &err);
	if (cat == NULL) {
		add(r, "catalog", COFFER_CHECK_CRITICAL,
		    err.hint[0] != '\0' ? err.hint
		                        : "check [coordinator] catalog and that the catalog's "
		                          "PostgreSQL runs",
		    "%s", err.msg);
		add(r, "migrations", COFFER_CHECK_CRITICAL, "fix the catalog check first",
		    "not checked: no catalog connection");
		return;
	}
	PGconn *conn = coord_catalog_conn(cat);
	PGresult *res = PQexec(conn, "SET statement_timeout = '10s'");
	PQclear(res);
	char who[256] = "";
	res = PQexec(conn,
	    "SELECT current_user, current_database(), "
	    "current_setting('server_version')");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		snprintf(who, sizeof(who), "database %s as role %s (PostgreSQL %s)",
		    PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	add(r, "catalog", COFFER_CHECK_OK, NULL, "connected to %s", who);

	int version = 0;
	int known = coord_catalog_known_version();
	snprintf(fix, sizeof(fix),
	    "coffer-coordinator migrate -c FILE (with [coordinator] catalog_owner, "
	    "docs/CATALOG.md), then restart the coordinator");
	int rc = coord_catalog_version(cat, &version, &err);
	if (rc != 0) {
		add_err(r, "migrations", COFFER_CHECK_CRITICAL, &err, NULL);
	} else if (version < known) {
		add(r, "migrations", COFFER_CHECK_CRITICAL, fix,
		    "the catalog's schema is at migration %d; this binary's is %d: %d pending",
		    version, known, known - version);
	} else if (coord_catalog_check(cat, &err) != 0) {
		add_err(r, "migrations", COFFER_CHECK_CRITICAL, &err, NULL);
	} else {
		add(r, "migrations", COFFER_CHECK_OK, NULL,
		    "the catalog's schema is at migration %d, this binary's", version);
	}

	/* Least privilege: the daemon refuses to start as a superuser or a
	 * member of the tables' owner; beyond that, the runtime role must not
	 * be able to rewrite the audit table (migrate's grants). */
	rc = coord_catalog_check_role(cat, false, &err);
	if (rc == COFFER_EREFUSED && r->cfg->development) {
		add(r, "catalog_role", COFFER_CHECK_WARNING,
		    "for production, create a runtime role and point [coordinator] catalog at it, "
		    "with the owner in catalog_owner for migrate (docs/CATALOG.md \"Two roles\")",
		    "allowed by development = true: %s", err.msg);
	} else if (rc == COFFER_EREFUSED) {
		add_err(r, "catalog_role", COFFER_CHECK_CRITICAL, &err, NULL);
	} else if (rc != 0) {
		add_err(r, "catalog_role", COFFER_CHECK_CRITICAL, &err, NULL);
	} else {
		res = PQexec(conn,
		    "SELECT to_regclass('audit') IS NULL OR NOT ("
		    "  has_table_privilege('audit', 'UPDATE') OR "
		    "  has_table_privilege('audit', 'DELETE') OR "
		    "  has_table_privilege('audit', 'TRUNCATE') OR "
		    "  has_table_privilege('audit', 'TRIGGER'))");
		bool least = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		if (least) {
			add(r, "catalog_role", COFFER_CHECK_OK, NULL,
			    "the runtime role is neither superuser nor the tables' owner and cannot "
			    "change or remove audit rows");
		} else {
			add(r, "catalog_role", COFFER_CHECK_CRITICAL,
			    "REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON audit FROM the runtime role "
			    "(migrate grants exactly what it needs, docs/CATALOG.md \"Two roles\")",
			    "the runtime role may update, delete or truncate audit rows");
		}
	}

	/* The clock: alerts, retention and "latest" read this host's clock,
	 * the catalog's rows carry the server's now(). */
	int64_t sent = coffer_clock_now(NULL);
	int64_t mono = coffer_clock_monotonic_ms();
	res = PQexec(conn, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint");
	int64_t rtt = coffer_clock_monotonic_ms() - mono;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		add(r, "clock", COFFER_CHECK_WARNING, NULL,
		    "could not read the catalog server's clock");
	} else {
		int64_t server = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		int64_t skew = sent + rtt / 2 - server;
		int64_t mag = skew < 0 ? -skew : skew;
		char skewtext[40], bound[40];
		coffer_checklist_duration(skewtext, sizeof(skewtext), mag);
		coffer_checklist_duration(bound, sizeof(bound), r->max_skew_ms);
		char phrase[64];
		snprintf(
		    phrase, sizeof(phrase), "%s %s", skewtext, skew > 0 ? "ahead of" : "behind");
		if (mag < 1000) {
			snprintf(phrase, sizeof(phrase), "within 1s of");
		}
		coffer_check_status st = mag > r->max_skew_ms ? COFFER_CHECK_CRITICAL
		    : mag > r->max_skew_ms / 2                ? COFFER_CHECK_WARNING
		                                              : COFFER_CHECK_OK;
		add(r, "clock", st,
		    st == COFFER_CHECK_OK ? NULL
		                          : "synchronise both hosts' clocks (timedatectl, chronyc "
		                            "tracking)",
		    "this host\'s clock is %s the catalog server's now() (+/- %" PRId64
		    " ms; bound %s)",
		    phrase, rtt / 2 + 1, bound);
	}
	PQclear(res);
	coord_catalog_close(cat);
}

static void
check_audit_key(coord_check_run *r)
{
	coord_audit_key key;
	coffer_err err = { 0 };
	if (coord_audit_key_load(r->cfg->audit_key, &key, &err) != 0) {
		add_err(r, "audit_key", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	coord_audit_key_clear(&key);
	add(r, "audit_key", COFFER_CHECK_OK, NULL, "%s loads (mode 0600)", r->cfg->audit_key);
}

/* ---- TLS and listeners ---- */

static void
check_tls(coord_check_run *r)
{
	coffer_tls_files files = {
		.ca = coffer_config_str(r->cfg->ini, "tls", "ca"),
		.cert = coffer_config_str(r->cfg->ini, "tls", "cert"),
		.key = coffer_config_str(r->cfg->ini, "tls", "key"),
		.crl = r->cfg->crl,
	};
	if (files.cert == NULL) {
		add(r, "tls", COFFER_CHECK_WARNING,
		    "add [tls] ca, cert and key (deploy/certs.sh); plain TCP is for loopback and "
		    "tests",
		    "no [tls] certificate: agents and operators talk in plain TCP");
		return;
	}
	coffer_err err = { 0 };
	nng_tls_config *tc = NULL;
	if (coffer_tlsconf_server_new(&files, &tc, &err) != 0) {
		add_err(r, "tls", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	nng_tls_config_free(tc);
	int64_t not_after = 0;
	char which[512] = "";
	if (coffer_tlsconf_expiry(&files, &not_after, which, sizeof(which), &err) != 0) {
		add_err(r, "tls", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	int64_t left = not_after - coffer_clock_now(NULL);
	char at[40], in[40];
	coffer_time_format(at, sizeof(at), not_after);
	coffer_checklist_duration(in, sizeof(in), left > 0 ? left : -left);
	if (left <= 0) {
		add(r, "tls", COFFER_CHECK_CRITICAL,
		    "issue a new certificate (deploy/certs.sh) and send the coordinator SIGHUP or "
		    "restart it",
		    "the %s expired at %s (%s ago)", which, at, in);
	} else if (left < CERT_WARN_MS) {
		add(r, "tls", COFFER_CHECK_WARNING,
		    "issue a new certificate (deploy/certs.sh) before it expires",
		    "the %s expires at %s, in %s", which, at, in);
	} else {
		add(r, "tls", COFFER_CHECK_OK, NULL,
		    "certificate, key and CA load%s; the first to expire is the %s, at %s",
		    files.crl != NULL ? " with the CRL" : "", which, at);
	}
}

/* The process that listens on a TCP port, from /proc (only processes this
 * user may look into are found). */
static bool
port_holder(int port, char *who, size_t size)
{
	static const char *const tables[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	unsigned long inode = 0;
	for (size_t t = 0; t < 2 && inode == 0; t++) {
		FILE *f = fopen(tables[t], "re");
		if (f == NULL) {
			continue;
		}
		char line[512];
		while (fgets(line, sizeof(line), f) != NULL) {
			char local[128];
			unsigned st = 0;
			unsigned long ino = 0;
			if (sscanf(line, " %*d: %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &st,
			        &ino) != 3) {
				continue;
			}
			const char *colon = strrchr(local, ':');
			if (colon != NULL && st == 0x0A &&
			    (int)strtol(colon + 1, NULL, 16) == port) {
				inode = ino;
				break;
			}
		}
		fclose(f);
	}
	if (inode == 0) {
		return (false);
	}
	char want[64];
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	DIR *proc = opendir("/proc");
	bool found = false;
	for (struct dirent *p = proc != NULL ? readdir(proc) : NULL; p != NULL && !found;
	     p = readdir(proc)) {
		if (p->d_name[0] < '0' || p->d_name[0] > '9') {
			continue;
		}
		char fddir[300];
		snprintf(fddir, sizeof(fddir), "/proc/%s/fd", p->d_name);
		DIR *fds = opendir(fddir);
		for (struct dirent *fd = fds != NULL ? readdir(fds) : NULL; fd != NULL && !found;
		     fd = readdir(fds)) {
			char link[600], target[128];
			snprintf(link, sizeof(link), "%s/%s", fddir, fd->d_name);
			ssize_t n = readlink(link, target, sizeof(target) - 1);
			if (n <= 0) {
				continue;
			}
			target[n] = '\0';
			if (strcmp(target, want) != 0) {
				continue;
			}
			char comm_path[300], comm[64] = "?";
			snprintf(comm_path, sizeof(comm_path), "/proc/%s/comm", p->d_name);
			FILE *c = fopen(comm_path, "re");
			if (c != NULL) {
				if (fgets(comm, sizeof(comm), c) != NULL) {
					comm[strcspn(comm, "\n")] = '\0';
				}
				fclose(c);
			}
			snprintf(who, size, "%.63s (pid %.20s)", comm, p->d_name);
			found = true;
		}
		if (fds != NULL) {
			closedir(fds);
		}
	}
	if (proc != NULL) {
		closedir(proc);
	}
	return (found);
}

static void
check_listen(coord_check_run *r, const char *key, const char *url)
{
	if (url == NULL) {
		return;
	}
	char name[40];
	snprintf(name, sizeof(name), "%s", key);
	/* "tls+tcp://host:port", "tcp://host:port", or metrics' "host:port". */
	const char *hp = strstr(url, "://");
	hp = hp != NULL ? hp + 3 : url;
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0) {
		add(r, name, COFFER_CHECK_OK, NULL, "%s is local (%s): nothing to bind", key, url);
		return;
	}
	const char *colon = strrchr(hp, ':');
	if (colon == NULL) {
		add(r, name, COFFER_CHECK_CRITICAL, "write it as host:port", "%s = %s has no port",
		    key, url);
		return;
	}
	char host[256];
	size_t hl = (size_t)(colon - hp);
	if (hl >= sizeof(host)) {
		hl = sizeof(host) - 1;
	}
	memcpy(host, hp, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	int port = atoi(colon + 1);
	if (port == 0) {
		add(r, name, COFFER_CHECK_OK, NULL, "%s = %s: any free port", key, url);
		return;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	int grc = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &ai);
	if (grc != 0 || ai == NULL) {
		add(r, name, COFFER_CHECK_CRITICAL, "use an address of this host",
		    "%s = %s: cannot resolve %s: %s", key, url, host, gai_strerror(grc));
		return;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	int brc = -1, berr = 0;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		brc = bind(fd, ai->ai_addr, ai->ai_addrlen);
		berr = errno;
		close(fd);
	} else {
		berr = errno;
	}
	freeaddrinfo(ai);
	if (brc == 0) {
		add(r, name, COFFER_CHECK_OK, NULL, "%s = %s can be bound", key, url);
		return;
	}
	char who[128];
	if (berr == EADDRINUSE) {
		if (port_holder(port, who, sizeof(who))) {
			bool ours = strncmp(who, "coffer-coordina", 15) == 0;
			add(r, name, ours ? COFFER_CHECK_OK : COFFER_CHECK_CRITICAL,
			    ours ? NULL : "stop that process or choose another port",
			    "%s = %s is in use by %s%s", key, url, who,
			    ours ? ", a running coordinator" : "");
		} else {
			add(r, name, COFFER_CHECK_WARNING,
			    "if no coordinator runs here, find the holder (ss -ltnp) or choose another "
			    "port",
			    "%s = %s is in use by a process this user cannot see", key, url);
		}
		return;
	}
	add(r, name, COFFER_CHECK_CRITICAL,
	    berr == EACCES ? "use a port above 1023 or give the binary CAP_NET_BIND_SERVICE"
	                   : "use an address of this host",
	    "%s = %s cannot be bound: %s", key, url, strerror(berr));
}

/* ---- repositories ---- */

static void
check_primary(coord_check_run *r)
{
	coffer_repo_config rc;
	coffer_err err = { 0 };
	if (!coffer_config_has_section(r->cfg->ini, "repository.primary")) {
		add(r, "repository", COFFER_CHECK_WARNING,
		    "add [repository.primary] (docs/CONFIGURATION.md): retention, verification "
		    "and the integrity sweep read it",
		    "no [repository.primary]: backups are neither verified nor pruned");
		return;
	}
	coffer_repo *repo = NULL;
	int rv = coord_config_repo(r->cfg, "primary", &rc, &err);
	if (rv == 0) {
		rv = coffer_repo_open(
		    &rc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, &repo, &err);
	}
	if (rv != 0) {
		add_err(r, "repository", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	uint8_t rnd[16];
	char hex[33];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		memset(rnd, 0, sizeof(rnd));
	}
	coffer_hex_encode(rnd, sizeof(rnd), hex);
	char key[COFFER_REPO_KEY_MAX];
	snprintf(key, sizeof(key), "check/%s-%" PRId64 "-%.8s", r->host,
	    coffer_clock_now(NULL) / 1000, hex);
	char body[128];
	int blen = snprintf(body, sizeof(body), "coffer-coordinator check probe %s\n", hex);
	const char *type = coffer_repo_type(repo);
	coffer_filter *sink = NULL;
	rv = coffer_repo_write_begin(repo, key, &sink, &err);
	if (rv == 0) {
		rv = coffer_filter_write(sink, body, (size_t)blen, &err);
	}
	if (rv == 0) {
		rv = coffer_filter_finish(sink, &err);
	}
	if (rv == 0) {
		rv = coffer_repo_write_commit(sink, &err);
	}
	coffer_filter_free(sink);
	if (rv != 0) {
		add(r, "repository", COFFER_CHECK_CRITICAL,
		    err.hint[0] != '\0' ? err.hint
		                        : "check [repository.primary] and its credentials",
		    "%s repository: cannot write the probe %s: %s", type, key, err.msg);
		coffer_repo_close(repo);
		return;
	}
	coffer_filter *back = coffer_buffer_sink_new(4096, &err);
	rv = back != NULL ? coffer_repo_read(repo, key, back, &err) : err.code;
	size_t len = 0;
	const uint8_t *got = rv == 0 ? coffer_buffer_sink_data(back, &len) : NULL;
	bool same = rv == 0 && len == (size_t)blen && memcmp(got, body, len) == 0;
	coffer_filter_free(back);
	if (rv != 0 || !same) {
		add(r, "repository", COFFER_CHECK_CRITICAL,
		    "the coordinator's credentials must read the whole bucket (docs/S3.md)",
		    "%s repository: the probe %s %s%s", type, key,
		    rv != 0 ? "cannot be read back: " : "read back differs from what was written",
		    rv != 0 ? err.msg : "");
		coffer_repo_close(repo);
		return;
	}
	coffer_repo_versioning ver = COFFER_REPO_VERSIONING_NONE;
	coffer_err verr = { 0 };
	(void)coffer_repo_versioning_get(repo, &ver, &verr);
	rv = coffer_repo_delete(repo, key, &err);
	if (rv == COFFER_EPERM) {
		add(r, "repository", COFFER_CHECK_WARNING,
		    "allow DeleteObject to the coordinator's principal (retention needs it, "
		    "docs/S3.md)",
		    "%s repository: probe %s written and read back, but the coordinator may not "
		    "delete it: %s",
		    type, key, err.msg);
	} else if (rv != 0) {
		add_err(r, "repository", COFFER_CHECK_CRITICAL, &err, NULL);
	} else {
		add(r, "repository", COFFER_CHECK_OK, NULL,
		    "%s repository: probe %s written, read back, compared and deleted%s", type, key,
		    ver == COFFER_REPO_VERSIONING_ENABLED
		        ? " (a delete marker: the versioned bucket keeps the version until its "
		          "lifecycle expires it)"
		        : "");
	}
	coffer_repo_close(repo);
}

static void
check_dr(coord_check_run *r)
{
	if (!coffer_config_has_section(r->cfg->ini, "repository.dr")) {
		add(r, "repository_dr", COFFER_CHECK_WARNING,
		    "configure [repository.dr], an object-locked bucket in another account "
		    "(docs/S3.md, \"DR repository\")",
		    "no [repository.dr]: no DR copies, and the audit chain's head is exported "
		    "nowhere");
		return;
	}
	coffer_repo_config rc;
	coffer_err err = { 0 };
	if (coord_config_repo(r->cfg, "dr", &rc, &err) != 0) {
		add_err(r, "repository_dr", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	if (rc.type == NULL || strcmp(rc.type, "s3") != 0) {
		add(r, "repository_dr", COFFER_CHECK_CRITICAL,
		    "point [repository.dr] at an S3 bucket created with object lock (docs/S3.md)",
		    "[repository.dr] is type %s: DR must be an object-locked S3 bucket",
		    rc.type != NULL ? rc.type : "posix");
		return;
	}
	coffer_s3_config sc = {
		.endpoint = rc.endpoint,
		.region = rc.region,
		.bucket = rc.bucket,
		.access_key = rc.access_key,
		.secret_key = rc.secret_key,
		.session_token = rc.session_token,
		.path_style = rc.path_style,
		.insecure_http = rc.insecure_http,
	};
	coffer_s3 *s3 = NULL;
	if (coffer_s3_new(&sc, &s3, &err) != 0) {
		add_err(r, "repository_dr", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	/* Write-only by design: the coordinator's DR user writes and checks
	 * locks; what can be checked without writing is the bucket's lock. */
	coffer_s3_lock_config lc;
	memset(&lc, 0, sizeof(lc));
	int rv = coffer_s3_object_lock_get(s3, &lc, &err);
	coffer_s3_free(s3);
	if (rv != 0) {
		add(r, "repository_dr", COFFER_CHECK_CRITICAL,
		    rv == COFFER_EPERM
		        ? "allow s3:GetBucketObjectLockConfiguration on the DR bucket "
		          "for the coordinator's DR user (docs/S3.md)"
		        : (err.hint[0] != '\0' ? err.hint : "check [repository.dr]"),
		    "DR bucket %s: cannot read its object lock configuration: %s", rc.bucket,
		    err.msg);
	} else if (!lc.enabled) {
		add(r, "repository_dr", COFFER_CHECK_CRITICAL,
		    "create the DR bucket with object lock (aws s3api create-bucket "
		    "--object-lock-enabled-for-bucket)",
		    "DR bucket %s answers but has no object lock (copies must be immutable)",
		    rc.bucket);
	} else {
		add(r, "repository_dr", COFFER_CHECK_OK, NULL,
		    "DR bucket %s reachable; object lock enabled (so versioned)%s%s", rc.bucket,
		    lc.mode[0] != '\0' ? ", default retention " : "", lc.mode);
	}
}

/* ---- alert delivery ---- */

static bool
routing_key_shaped(const char *k)
{
	size_t n = strlen(k);
	if (n != 32) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
			return (false);
		}
	}
	return (true);
}

static void
check_alerts(coord_check_run *r)
{
	const char *rk = coffer_config_str(r->cfg->ini, "alerts", "routing_key");
	const char *url = coffer_config_str(r->cfg->ini, "alerts", "pagerduty_url");
	const char *hook = coffer_config_str(r->cfg->ini, "alerts", "webhook_url");
	size_t per_service = 0;
	for (size_t i = 0; i < r->cfg->n_services; i++) {
		char sec[200];
		snprintf(sec, sizeof(sec), "service.%s", r->cfg->services[i].name);
		const char *srk = coffer_config_str(r->cfg->ini, sec, "alerts.routing_key");
		if (srk != NULL) {
			per_service++;
			if (!routing_key_shaped(srk)) {
				add(r, "alerts", COFFER_CHECK_WARNING,
				    "copy the 32-character integration key from the PagerDuty service",
				    "[%s] alerts.routing_key is not 32 letters and digits, as PagerDuty's "
				    "integration keys are",
				    sec);
				return;
			}
		}
	}
	if (rk == NULL && hook == NULL && per_service == 0) {
		add(r, "alerts", COFFER_CHECK_WARNING,
		    "set [alerts] routing_key (PagerDuty) or webhook_url (docs/CONFIGURATION.md)",
		    "no alert destination: failed backups, WAL gaps and drills page nobody");
		return;
	}
	if (rk != NULL && !routing_key_shaped(rk)) {
		add(r, "alerts", COFFER_CHECK_WARNING,
		    "copy the 32-character integration key from the PagerDuty service",
		    "[alerts] routing_key is not 32 letters and digits, as PagerDuty's integration "
		    "keys are");
		return;
	}
	add(r, "alerts", COFFER_CHECK_OK, NULL, "alerts go to %s%s%s%s (validated, nothing sent)",
	    rk != NULL || per_service > 0 ? "PagerDuty at " : "",
	    rk != NULL || per_service > 0 ? (url != NULL ? url : "the default endpoint") : "",
	    hook != NULL && (rk != NULL || per_service > 0) ? " and " : "",
	    hook != NULL ? "the webhook" : "");
}

int
coord_cmd_check(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *output = NULL, *max_skew = "120s";
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "output", 0, &output, NULL },
		{ "max-skew", 0, &max_skew, NULL },
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
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not %s", output));
	}
	coord_check_run r;
	memset(&r, 0, sizeof(r));
	if (coffer_duration_parse(max_skew, 0, &r.max_skew_ms) != 0 || r.max_skew_ms <= 0) {
		return (coffer_cli_usage_error(
		    cmd, "--max-skew must be a duration like 120s, not '%s'", max_skew));
	}
	coffer_log_init("coffer-coordinator", COFFER_LOG_ERROR);
	coffer_checklist_init(&r.cl, output != NULL && strcmp(output, "json") == 0);
	r.config_path = config;
	if (gethostname(r.host, sizeof(r.host) - 1) != 0 || r.host[0] == '\0') {
		snprintf(r.host, sizeof(r.host), "host");
	}
	for (char *p = r.host; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) {
			*p = '_';
		}
	}
	coffer_err err = { 0 };
	if (coord_config_load(config, &r.cfg, &err) != 0) {
		add_err(&r, "config", COFFER_CHECK_CRITICAL, &err, NULL);
		return (coffer_checklist_end(&r.cl));
	}
	add(&r, "config", COFFER_CHECK_OK, NULL, "%s loaded: %zu service%s", config,
	    r.cfg->n_services, r.cfg->n_services == 1 ? "" : "s");
	check_catalog(&r);
	check_audit_key(&r);
	check_tls(&r);
	check_listen(&r, "listen", r.cfg->listen);
	check_listen(&r, "admin_listen", r.cfg->admin_listen);
	check_listen(&r, "metrics_listen", r.cfg->metrics_listen);
	check_primary(&r);
	check_dr(&r);
	check_alerts(&r);
	coord_config_free(r.cfg);
	return (coffer_checklist_end(&r.cl));
}
