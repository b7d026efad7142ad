/* Agent configuration: a full file and a minimal one read from real files,
 * the shipped example, and every cross-key rule an operator can break, each
 * refused at the right line with a hint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "agent/context/agent_config.h"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];
	char path[600];
};

#define AGENT_MIN                               \
	"[agent]\n"                             \
	"name = billing-db-1\n"                 \
	"service = billing\n"                   \
	"state_dir = /var/lib/coffer-agent\n"   \
	"signing_key = /etc/coffer/agent.key\n" \
	"key_ring = /etc/coffer/billing.keys\n"
#define POSTGRES_MIN   \
	"[postgres]\n" \
	"conninfo = host=/run/postgresql dbname=billing user=coffer\n"
#define SCHEDULE_MIN   \
	"[schedule]\n" \
	"logical = 0 2 * * *\n"
#define REPO_MIN                 \
	"[repository.primary]\n" \
	"type = posix\n"         \
	"path = /srv/coffer\n"
/* 6 + 2 + 2 + 3 lines: the first line after the minimal file. */
#define NEXT_LINE 14

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("agent-config-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->path, sizeof(f->path), "%s/agent.conf", f->dir);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static void
write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
	/* As an operator is told to: some cases hold secrets. */
	assert_int_equal(chmod(path, 0600), 0);
}

static agent_config *
load_ok(struct fixture *f, const char *text)
{
	write_text(f->path, text);
	agent_config *cfg = NULL;
	coffer_err err = { 0 };
	int rc = agent_config_load(f->path, &cfg, &err);
	if (rc != 0) {
		print_error("unexpected: %s (hint: %s)\n", err.msg, err.hint);
	}
	assert_int_equal(rc, 0);
	assert_non_null(cfg);
	return (cfg);
}

static char last_hint[COFFER_ERR_HINT_MAX];

/* Expects text to be refused with COFFER_EINVAL by a message that starts
 * with "<path>:<line>: " (line 0: "<path>: ") and holds every fragment. */
static void
expect_fail(struct fixture *f, const char *text, int line, ...)
{
	write_text(f->path, text);
	agent_config *cfg = (agent_config *)0x1;
	coffer_err err = { 0 };
	int rc = agent_config_load(f->path, &cfg, &err);
	if (rc != COFFER_EINVAL) {
		print_error("rc %d, message: %s\n", rc, err.msg);
	}
	assert_int_equal(rc, COFFER_EINVAL);
	assert_null(cfg);
	char prefix[700];
	if (line > 0) {
		snprintf(prefix, sizeof(prefix), "%s:%d: ", f->path, line);
	} else {
		snprintf(prefix, sizeof(prefix), "%s: ", f->path);
	}
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0) {
		print_error("message '%s' does not start with '%s'\n", err.msg, prefix);
		fail();
	}
	va_list ap;
	va_start(ap, line);
	const char *frag;
	while ((frag = va_arg(ap, const char *)) != NULL) {
		if (strstr(err.msg, frag) == NULL) {
			print_error("message '%s' lacks '%s'\n", err.msg, frag);
			fail();
		}
	}
	va_end(ap);
	if (strlen(err.hint) == 0) {
		print_error("no hint for '%s'\n", err.msg);
		fail();
	}
	snprintf(last_hint, sizeof(last_hint), "%s", err.hint);
}

static void
test_minimal_defaults(void **state)
{
	struct fixture *f = *state;
	agent_config *c = load_ok(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN);
	assert_string_equal(c->name, "billing-db-1");
	assert_string_equal(c->service, "billing");
	assert_string_equal(c->state_dir, "/var/lib/coffer-agent");
	assert_string_equal(c->signing_key, "/etc/coffer/agent.key");
	assert_string_equal(c->key_ring, "/etc/coffer/billing.keys");
	assert_string_equal(c->timezone, "UTC");
	assert_int_equal(c->log_level, COFFER_LOG_INFO);
	assert_string_equal(c->conninfo, "host=/run/postgresql dbname=billing user=coffer");
	assert_string_equal(c->pg_dump, "pg_dump");
	assert_string_equal(c->pg_restore, "pg_restore");
	assert_string_equal(c->psql, "psql");
	assert_string_equal(c->dump_options, "");
	assert_null(c->bin_dir);
	assert_string_equal(c->schedule_logical, "0 2 * * *");
	assert_null(c->schedule_physical);
	assert_int_equal(c->completion_window_ms, 2 * 3600 * 1000);
	assert_int_equal(c->compress_level, 3);
	assert_int_equal(c->compress_workers, 2);
	assert_int_equal(c->chunk_size, 1 << 20);
	assert_true(c->repo_primary.present);
	assert_int_equal(c->repo_primary.type, AGENT_REPO_POSIX);
	assert_string_equal(c->repo_primary.path, "/srv/coffer");
	assert_null(c->repo_primary.bucket);
	assert_false(c->repo_dr.present);
	assert_false(c->coordinator_present);
	assert_null(c->coordinator_url);
	assert_false(c->coordinator_insecure);
	assert_int_equal(c->heartbeat_ms, 60 * 1000);
	assert_int_equal(c->retry_max_ms, 5 * 60 * 1000);
	assert_non_null(c->ini);
	agent_config_free(c);
}

static void
test_full_file(void **state)
{
	struct fixture *f = *state;
	agent_config *c = load_ok(f,
	    "[agent]\n"
	    "name = billing-db-1\n"
	    "service = billing\n"
	    "state_dir = /var/lib/coffer-agent   # outbox, locks\n"
	    "signing_key = /etc/coffer/agent.key\n"
	    "key_ring = /etc/coffer/billing.keys\n"
	    "timezone = UTC\n"
	    "log_level = debug\n"
	    "[postgres]\n"
	    "conninfo = host=db port=5433 dbname=billing user=coffer sslmode=verify-full\n"
	    "bin_dir = /usr/lib/postgresql/15/bin/\n"
	    "pg_restore = /opt/pg/bin/pg_restore\n"
	    "dump_options = --no-owner --no-comments\n"
	    "[schedule]\n"
	    "logical = 30 1 * * *\n"
	    "physical = 0 3 * * sun\n"
	    "completion_window = 90m\n"
	    "[backup]\n"
	    "compress_level = 19\n"
	    "compress_workers = 0\n"
	    "chunk_size = 16MiB\n"
	    "[repository.primary]\n"
	    "type = s3\n"
	    "endpoint = https://s3.eu-south-1.amazonaws.com\n"
	    "region = eu-south-1\n"
	    "bucket = coffer-prod\n"
	    "prefix = billing/\n"
	    "access_key = AKIAEXAMPLE\n"
	    "secret_key = c2VjcmV0\n"
	    "session_token = tok\n"
	    "path_style = true\n"
	    "[repository.dr]\n"
	    "type = posix\n"
	    "path = /mnt/dr\n"
	    "[coordinator]\n"
	    "url = tls+tcp://coordinator.internal:7443\n"
	    "ca = /etc/coffer/ca.crt\n"
	    "cert = /etc/coffer/agent.crt\n"
	    "key = /etc/coffer/agent.tls.key\n"
	    "heartbeat = 15s\n"
	    "retry_max = 1h\n");
	assert_int_equal(c->log_level, COFFER_LOG_DEBUG);
	assert_string_equal(
	    c->conninfo, "host=db port=5433 dbname=billing user=coffer sslmode=verify-full");
	assert_string_equal(c->bin_dir, "/usr/lib/postgresql/15/bin/");
	assert_string_equal(c->pg_dump, "/usr/lib/postgresql/15/bin/pg_dump");
	assert_string_equal(c->pg_restore, "/opt/pg/bin/pg_restore");
	assert_string_equal(c->psql, "/usr/lib/postgresql/15/bin/psql");
	assert_string_equal(c->dump_options, "--no-owner --no-comments");
	assert_string_equal(c->schedule_physical, "0 3 * * sun");
	assert_int_equal(c->completion_window_ms, 90 * 60 * 1000);
	assert_int_equal(c->compress_level, 19);
	assert_int_equal(c->compress_workers, 0);
	assert_int_equal(c->chunk_size, 16 << 20);
	const agent_repo_config *p = &c->repo_primary;
	assert_int_equal(p->type, AGENT_REPO_S3);
	assert_null(p->path);
	assert_string_equal(p->endpoint, "https://s3.eu-south-1.amazonaws.com");
	assert_string_equal(p->region, "eu-south-1");
	assert_string_equal(p->bucket, "coffer-prod");
	assert_string_equal(p->prefix, "billing/");
	assert_string_equal(p->access_key, "AKIAEXAMPLE");
	assert_string_equal(p->secret_key, "c2VjcmV0");
	assert_string_equal(p->session_token, "tok");
	assert_true(p->path_style);
	assert_true(c->repo_dr.present);
	assert_int_equal(c->repo_dr.type, AGENT_REPO_POSIX);
	assert_string_equal(c->repo_dr.path, "/mnt/dr");
	assert_string_equal(c->repo_dr.prefix, "");
	assert_true(c->coordinator_present);
	assert_string_equal(c->coordinator_url, "tls+tcp://coordinator.internal:7443");
	assert_string_equal(c->coordinator_ca, "/etc/coffer/ca.crt");
	assert_string_equal(c->coordinator_cert, "/etc/coffer/agent.crt");
	assert_string_equal(c->coordinator_key, "/etc/coffer/agent.tls.key");
	assert_int_equal(c->heartbeat_ms, 15 * 1000);
	assert_int_equal(c->retry_max_ms, 3600 * 1000);
	/* Callers report their own findings at the right line. */
	coffer_err err = { 0 };
	coffer_config_err_at(c->ini, "repository.primary", "bucket", &err, "no such bucket");
	assert_non_null(strstr(err.msg, ":26: [repository.primary] bucket: no such bucket"));
	agent_config_free(c);
}

static void
test_example_loads(void **state)
{
	(void)state;
	/* __FILE__ is absolute under CMake; the example ships beside the tests. */
	char path[1024];
	snprintf(path, sizeof(path), "%s", __FILE__);
	char *slash = strstr(path, "/tests/unit/");
	assert_non_null(slash);
	snprintf(slash, sizeof(path) - (size_t)(slash - path), "/deploy/examples/agent.conf");
	agent_config *c = NULL;
	coffer_err err = { 0 };
	int rc = agent_config_load(path, &c, &err);
	if (rc != 0) {
		print_error("%s (hint: %s)\n", err.msg, err.hint);
	}
	assert_int_equal(rc, 0);
	assert_string_equal(c->service, "billing");
	agent_config_free(c);
	snprintf(slash, sizeof(path) - (size_t)(slash - path), "/deploy/examples/runner.conf");
	rc = agent_config_load(path, &c, &err);
	if (rc != 0) {
		print_error("%s (hint: %s)\n", err.msg, err.hint);
	}
	assert_int_equal(rc, 0);
	assert_true(c->drill_runner);
	agent_config_free(c);
}

static void
test_missing_file(void **state)
{
	struct fixture *f = *state;
	agent_config *c = (agent_config *)0x1;
	coffer_err err = { 0 };
	assert_int_equal(agent_config_load(f->path, &c, &err), COFFER_ENOENT);
	assert_null(c);
	assert_non_null(strstr(err.msg, f->path));
	assert_true(strlen(err.hint) > 0);
}

static void
test_schedule_rules(void **state)
{
	struct fixture *f = *state;
	/* Manual-only backups are refused. */
	expect_fail(f, AGENT_MIN POSTGRES_MIN REPO_MIN, 0, "missing required section [schedule]",
	    "logical", NULL);
	assert_non_null(strstr(last_hint, "manual-only backups are not allowed"));
	expect_fail(f, AGENT_MIN POSTGRES_MIN "[schedule]\ncompletion_window = 1h\n" REPO_MIN, 9,
	    "[schedule] missing required key 'logical'", NULL);
	assert_non_null(strstr(last_hint, "manual-only backups are not allowed"));
	expect_fail(f, AGENT_MIN POSTGRES_MIN "[schedule]\nlogical = 0 25 * * *\n" REPO_MIN, 10,
	    "[schedule] logical = '0 25 * * *'", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN "[schedule]\nlogical = 0 2 * *\n" REPO_MIN, 10,
	    "[schedule] logical = '0 2 * *'", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN "[schedule]\nlogical = 0 2 * * *\nphysical = @reboot\n" REPO_MIN,
	    11, "[schedule] physical = '@reboot'", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN
	    "[schedule]\nlogical = 0 2 * * *\ncompletion_window = 0s\n" REPO_MIN,
	    11, "completion_window = '0s'", "from 1s to 7d", NULL);
}

static void
test_agent_rules(void **state)
{
	struct fixture *f = *state;
	expect_fail(f,
	    "[agent]\nname = a\nservice = ../etc\nstate_dir = /s\nsigning_key = /k\nkey_ring = /r\n" POSTGRES_MIN
	        SCHEDULE_MIN REPO_MIN,
	    3, "[agent] service: '../etc' is not a valid name", NULL);
	expect_fail(f,
	    "[agent]\nname = -x\nservice = s\nstate_dir = /s\nsigning_key = /k\nkey_ring = /r\n" POSTGRES_MIN
	        SCHEDULE_MIN REPO_MIN,
	    2, "[agent] name:", NULL);
	expect_fail(f,
	    AGENT_MIN "timezone = Mars/Olympus_Mons\n" POSTGRES_MIN SCHEDULE_MIN REPO_MIN, 7,
	    "[agent] timezone:", NULL);
	expect_fail(f, AGENT_MIN "log_level = verbose\n" POSTGRES_MIN SCHEDULE_MIN REPO_MIN, 7,
	    "log_level = 'verbose': expected one of debug, info, warn, error", NULL);
	expect_fail(f, AGENT_MIN "nme = x\n" POSTGRES_MIN SCHEDULE_MIN REPO_MIN, 7,
	    "[agent] unknown key 'nme'", "allowed: name, service, state_dir", NULL);
	expect_fail(f, "[agent]\nname = a\nservice = s\n" POSTGRES_MIN SCHEDULE_MIN REPO_MIN, 1,
	    "[agent] missing required key 'state_dir'", NULL);
	expect_fail(f, AGENT_MIN "[postgres]\nconninfo =\n" SCHEDULE_MIN REPO_MIN, 8,
	    "[postgres] conninfo = ''", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN "dump_options = --no-owner -Fp\n" SCHEDULE_MIN REPO_MIN, 9,
	    "[postgres] dump_options: -Fp is not allowed", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN "dump_options = --file=/tmp/x\n" SCHEDULE_MIN REPO_MIN, 9,
	    "--file=/tmp/x is not allowed", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[backup]\ncompress_level = 20\n",
	    NEXT_LINE + 1, "compress_level = '20': expected an integer from 1 to 19", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[backup]\ncompress_workers = 65\n",
	    NEXT_LINE + 1, "from 0 to 64", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[backup]\nchunk_size = 32KiB\n",
	    NEXT_LINE + 1, "chunk_size = '32KiB'", "from 64KiB to 16MiB", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[backups]\n", NEXT_LINE,
	    "unknown section [backups]", NULL);
}

/* A file that sets a secret is refused while group or others may open it,
 * naming the file, its mode, the key and the chmod; one without secrets
 * may stay 0644. */
static void
test_secret_file_mode(void **state)
{
	struct fixture *f = *state;
	static const char s3_secret[] = AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = https://h\nbucket = b\nregion = r\n"
	    "access_key = AK\nsecret_key = SK-dont-print\n";
	static const char pg_password[] = AGENT_MIN
	    "[postgres]\nconninfo = host=db user=app password=pw-dont-print\n" SCHEDULE_MIN
	        REPO_MIN;
	static const char pg_uri[] = AGENT_MIN
	    "[postgres]\nconninfo = postgresql://app:pw-dont-print@db/shop\n" SCHEDULE_MIN REPO_MIN;
	const char *texts[] = { s3_secret, pg_password, pg_uri };
	const char *keys[] = { "[repository.primary] secret_key", "[postgres] conninfo",
		"[postgres] conninfo" };
	const mode_t modes[] = { 0644, 0640, 0604, 0620 };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		agent_config_free(load_ok(f, texts[i]));
		for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
			assert_int_equal(chmod(f->path, modes[m]), 0);
			agent_config *cfg = NULL;
			coffer_err err = { 0 };
			assert_int_equal(agent_config_load(f->path, &cfg, &err), COFFER_EPERM);
			assert_null(cfg);
			char want[64];
			snprintf(
			    want, sizeof(want), "(mode %04o) and it holds", (unsigned)modes[m]);
			assert_non_null(strstr(err.msg, want));
			assert_non_null(strstr(err.msg, keys[i]));
			assert_non_null(strstr(err.msg, f->path));
			assert_non_null(strstr(err.hint, "chmod 600"));
			assert_null(strstr(err.msg, "dont-print"));
			assert_null(strstr(err.hint, "dont-print"));
		}
	}
	/* No secret in it: the mode is the operator's business. */
	write_text(f->path, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN);
	assert_int_equal(chmod(f->path, 0644), 0);
	agent_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(agent_config_load(f->path, &cfg, &err), 0);
	agent_config_free(cfg);
	assert_true(coffer_config_conninfo_has_password("dbname=x PASSWORD = y"));
	assert_true(coffer_config_conninfo_has_password("postgres://u:p@h/db"));
	assert_false(coffer_config_conninfo_has_password("postgres://u@h/db"));
	assert_false(coffer_config_conninfo_has_password("host=/run/postgresql dbname=x"));
}

static void
test_repository_rules(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN, 0,
	    "missing required section [repository.primary]", "type", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN "[repository.primary]\ntype = posix\n",
	    12, "[repository.primary] type: type = posix needs 'path'", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN "[repository.primary]\ntype = nfs\n", 12,
	    "type = 'nfs': expected one of posix, s3", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "bucket = b\n", NEXT_LINE,
	    "[repository.primary] bucket: applies only to type = s3", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = https://h\nbucket = b\n",
	    12, "type = s3 needs 'region'", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = h:9000\nbucket = b\nregion = r\n",
	    13, "[repository.primary] endpoint: 'h:9000' is not an http(s) URL", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = https://h\nbucket = b\nregion = r\n"
	    "path = /x\n",
	    16, "[repository.primary] path: applies only to type = posix", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = https://h\nbucket = b\nregion = r\n"
	    "access_key = AK\n",
	    16, "[repository.primary] access_key: access_key and secret_key must be set together",
	    NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = https://h\nbucket = b\nregion = r\n"
	    "session_token = t\n",
	    16, "session_token needs access_key", NULL);
	/* Plain http to another host needs the operator's explicit, named
	 * choice; to this host it does not. */
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = http://example.com\nbucket = b\n"
	    "region = r\n",
	    13, "[repository.primary] endpoint: http://example.com is plain http",
	    "insecure_http = true", NULL);
	const char *ok_eps[] = { "http://127.0.0.1:7480", "http://localhost:7480",
		"http://[::1]:7480" };
	for (size_t i = 0; i < sizeof(ok_eps) / sizeof(ok_eps[0]); i++) {
		char text[2048];
		snprintf(text, sizeof(text),
		    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
		    "[repository.primary]\ntype = s3\nendpoint = %s\nbucket = b\nregion = r\n",
		    ok_eps[i]);
		agent_config *cfg = load_ok(f, text);
		assert_false(cfg->repo_primary.insecure_http);
		agent_config_free(cfg);
	}
	agent_config *insecure = load_ok(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN
	    "[repository.primary]\ntype = s3\nendpoint = http://example.com\nbucket = b\n"
	    "region = r\ninsecure_http = true\n");
	assert_true(insecure->repo_primary.insecure_http);
	agent_config_free(insecure);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "insecure_http = true\n",
	    NEXT_LINE, "insecure_http: applies only to type = s3", NULL);
	/* An empty [repository.dr] is not "no DR": it lacks its type. */
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[repository.dr]\n", NEXT_LINE,
	    "[repository.dr] missing required key 'type'", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[repository.backup]\n",
	    NEXT_LINE, "unknown section [repository.backup]", "[repository.dr]", NULL);
}

static void
test_coordinator_rules(void **state)
{
	struct fixture *f = *state;
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[coordinator]\nca = /ca\n",
	    NEXT_LINE, "[coordinator] missing required key 'url'", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[coordinator]\nurl = http://c:1\n",
	    NEXT_LINE + 1, "[coordinator] url: 'http://c:1' is not a coordinator address", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN
	    "[coordinator]\nurl = tls+tcp://c:7443\nca = /ca\nkey = /k\n",
	    NEXT_LINE + 1, "[coordinator] url: a tls+tcp:// coordinator needs 'cert'", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN
	    "[coordinator]\nurl = tls+tcp://c:7443\ncert = /c\nkey = /k\n",
	    NEXT_LINE + 1, "needs 'ca'", NULL);
	expect_fail(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[coordinator]\nurl = tcp://c:1\n"
	                                                 "heartbeat = forever\n",
	    NEXT_LINE + 2, "heartbeat = 'forever'", "from 1s to 1h", NULL);

	/* insecure drops only the CA; plain tcp needs no TLS files. */
	agent_config *c = load_ok(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN
	    "[coordinator]\nurl = tls+tcp://c:7443\ncert = /c\nkey = /k\ninsecure = yes\n");
	assert_true(c->coordinator_insecure);
	assert_null(c->coordinator_ca);
	agent_config_free(c);
	c = load_ok(f,
	    AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN
	    "[coordinator]\nurl = tcp://127.0.0.1:7443\n");
	assert_true(c->coordinator_present);
	assert_string_equal(c->coordinator_url, "tcp://127.0.0.1:7443");
	agent_config_free(c);
}

static void
test_load_string(void **state)
{
	(void)state;
	agent_config *c = NULL;
	coffer_err err = { 0 };
	assert_int_equal(agent_config_load_string(
	                     AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN, "inline", &c, &err),
	    0);
	assert_string_equal(coffer_config_path(c->ini), "inline");
	agent_config_free(c);
	assert_int_equal(agent_config_load_string(AGENT_MIN, "inline", &c, &err), COFFER_EINVAL);
	assert_null(c);
	assert_non_null(strstr(err.msg, "inline: missing required section [postgres]"));
	assert_non_null(agent_config_schema()->sections);
}

#define RUNNER_MIN                             \
	"[agent]\n"                            \
	"name = drill-1\n"                     \
	"role = drill_runner\n"                \
	"state_dir = /var/lib/coffer-runner\n" \
	"signing_key = /etc/coffer/runner.key\n"

/* A drill runner: no service, key ring, database or schedule of its own;
 * a sandbox it must have; a service agent may not have one. */
static void
test_runner_rules(void **state)
{
	struct fixture *f = *state;
	write_text(f->path,
	    RUNNER_MIN REPO_MIN "[drill]\nsandbox = host=/tmp port=5999\n"
	                        "[drill.billing]\nkey_ring = /k\nverify_key = /v\n");
	agent_config *c = NULL;
	coffer_err err = { 0 };
	assert_int_equal(agent_config_load(f->path, &c, &err), 0);
	assert_true(c->drill_runner);
	assert_string_equal(c->service, "");
	assert_string_equal(c->drill_sandbox, "host=/tmp port=5999");
	assert_int_equal(c->drill_jobs, 2);
	agent_config_free(c);
	expect_fail(f, RUNNER_MIN REPO_MIN, 3, "role = drill_runner needs a [drill] section", NULL);
	assert_non_null(strstr(last_hint, "sandbox"));
	expect_fail(f, RUNNER_MIN "service = billing\n" REPO_MIN "[drill]\nsandbox = x\n", 6,
	    "a drill runner has no service of its own", NULL);
	expect_fail(f, RUNNER_MIN REPO_MIN SCHEDULE_MIN "[drill]\nsandbox = x\n", 10,
	    "a drill runner has no backup schedule of its own", NULL);
	expect_fail(f, RUNNER_MIN REPO_MIN "[drill]\njobs = 2\n", 9,
	    "[drill] missing required key 'sandbox'", NULL);
	expect_fail(f, RUNNER_MIN REPO_MIN "[drill]\nsandbox = x\n[drill.billing]\nkey_ring = /k\n",
	    11, "[drill.billing] missing required key 'verify_key'", NULL);
	expect_fail(f, AGENT_MIN POSTGRES_MIN SCHEDULE_MIN REPO_MIN "[drill]\nsandbox = x\n",
	    NEXT_LINE, "[drill] is for drill runners", NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_minimal_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_example_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schedule_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_file_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repository_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coordinator_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_string, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runner_rules, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
