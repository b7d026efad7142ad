/* coordinator.conf: the design's example loads with the values and defaults
 * the commands read; then the mistakes an operator makes, each refused
 * naming the line and key. The source is compiled in here (white-box) for
 * its unit constants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "coordinator/policy/coord_config.c" /* white-box: uses its unit constants */

static const char full_conf[] = "[coordinator]\n"
                                "listen = tls+tcp://0.0.0.0:7443\n"
                                "admin_listen = tls+tcp://0.0.0.0:7444\n"
                                "catalog = host=/run/postgresql dbname=coffer user=coffer\n"
                                "audit_key = /etc/coffer/audit.key\n"
                                "state_dir = /var/lib/coffer-coordinator\n"
                                "metrics_listen = 127.0.0.1:9187\n"
                                "[tls]\n"
                                "ca = /etc/coffer/ca.crt\n"
                                "cert = /etc/coffer/coord.crt\n"
                                "key = /etc/coffer/coord.key\n"
                                "[repository.primary]\n"
                                "type = posix\n"
                                "path = /srv/coffer\n"
                                "[repository.dr]\n"
                                "type = s3\n"
                                "endpoint = https://s3.example.net\n"
                                "region = eu-south-1\n"
                                "bucket = coffer-dr\n"
                                "[alerts]\n"
                                "routing_key = abc123\n"
                                "webhook_url = https://chat.example.net/hook\n"
                                "[operator.alice]\n"
                                "public_key = /etc/coffer/operators/alice.pub\n"
                                "role = operator\n"
                                "[operator.bob]\n"
                                "public_key = /etc/coffer/operators/bob.pub\n"
                                "role = auditor\n"
                                "[service.billing]\n"
                                "owner = team-payments\n"
                                "schedule = 0 2 * * *\n"
                                "timezone = UTC\n"
                                "retention.daily = 7\n"
                                "retention.weekly = 4\n"
                                "retention.monthly = 12\n"
                                "retention.yearly = 1\n"
                                "retention.min_redundancy = 2\n"
                                "pitr.window = 7d\n"
                                "dr.copy = weekly\n"
                                "dr.lock = compliance\n"
                                "dr.retention = 365d\n"
                                "compliance = gdpr\n"
                                "compliance.max_retention = 400d\n"
                                "drill.schedule = 0 4 1 */3 *\n"
                                "drill.runner = drill-1\n"
                                "drill.rto = 60m\n";

static const char minimal_conf[] = "[coordinator]\n"
                                   "listen = tcp://127.0.0.1:7443\n"
                                   "catalog = dbname=coffer\n"
                                   "audit_key = /tmp/audit.key\n";

static void
test_full_example(void **state)
{
	(void)state;
	coord_config *c = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coord_config_load_string(full_conf, "coordinator.conf", &c, &err), 0);
	assert_string_equal(c->listen, "tls+tcp://0.0.0.0:7443");
	assert_string_equal(c->admin_listen, "tls+tcp://0.0.0.0:7444");
	assert_string_equal(c->catalog, "host=/run/postgresql dbname=coffer user=coffer");
	assert_string_equal(c->audit_key, "/etc/coffer/audit.key");
	assert_string_equal(c->metrics_listen, "127.0.0.1:9187");
	assert_false(c->insecure);
	assert_int_equal(c->log_level, COFFER_LOG_INFO);
	const char *const *names;
	size_t n = 0;
	assert_int_equal(coffer_config_sections(c->ini, "service", &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "billing");
	assert_int_equal(coffer_config_sections(c->ini, "operator", &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(coffer_config_str(c->ini, "operator.bob", "role"), "auditor");
	assert_string_equal(coffer_config_str(c->ini, "service.billing", "retention.yearly"), "1");
	/* The policy as the retention job reads it. */
	assert_int_equal(c->n_services, 1);
	const coord_service_policy *p = coord_config_service(c, "billing");
	assert_non_null(p);
	assert_null(coord_config_service(c, "ledger"));
	assert_string_equal(p->owner, "team-payments");
	assert_string_equal(p->schedule, "0 2 * * *");
	assert_string_equal(p->timezone, "UTC");
	assert_int_equal(p->retention.tiers[COORD_TIER_DAILY], 7);
	assert_int_equal(p->retention.tiers[COORD_TIER_WEEKLY], 4);
	assert_int_equal(p->retention.tiers[COORD_TIER_MONTHLY], 12);
	assert_int_equal(p->retention.tiers[COORD_TIER_YEARLY], 1);
	assert_int_equal(p->retention.min_redundancy, 2);
	assert_int_equal(p->retention.grace_ms, 7 * DAYS);
	assert_int_equal(p->pitr_window_ms, 7 * DAYS);
	assert_int_equal(p->compliance, COORD_COMPLIANCE_GDPR);
	assert_int_equal(p->max_retention_ms, 400 * DAYS);
	assert_int_equal(p->longest_ms, 12 * 31 * DAYS);
	assert_int_equal(strlen(p->version), 64);
	assert_int_equal(
	    coffer_config_duration_ms(c->ini, "service.billing", "pitr.window"), 7 * DAYS);
	assert_int_equal(
	    coffer_config_duration_ms(c->ini, "service.billing", "drill.rto"), 60 * MINS);
	coord_config_free(c);
}

static void
test_minimal_defaults(void **state)
{
	(void)state;
	coord_config *c = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coord_config_load_string(minimal_conf, "min.conf", &c, &err), 0);
	assert_null(c->admin_listen);
	assert_null(c->metrics_listen);
	assert_string_equal(c->state_dir, "/var/lib/coffer-coordinator");
	assert_false(coffer_config_has_section(c->ini, "tls"));
	coord_config_free(c);
}

/* Loads minimal_conf + extra and expects refusal with all of the needles
 * in the message or hint. */
static void
refused(const char *extra, const char *needle1, const char *needle2)
{
	char text[4096];
	snprintf(text, sizeof(text), "%s%s", minimal_conf, extra);
	coord_config *c = NULL;
	coffer_err err = { 0 };
	int rc = coord_config_load_string(text, "bad.conf", &c, &err);
	if (rc == 0) {
		coord_config_free(c);
		fail_msg("accepted: %s", extra);
	}
	char both[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 4];
	snprintf(both, sizeof(both), "%s | %s", err.msg, err.hint);
	if (strstr(both, needle1) == NULL || (needle2 != NULL && strstr(both, needle2) == NULL)) {
		fail_msg("for '%s' want '%s' and '%s' in: %s", extra, needle1,
		    needle2 != NULL ? needle2 : "", both);
	}
}

static coord_config *accepted(const char *extra);

static void
test_refusals(void **state)
{
	(void)state;
	refused("colour = blue\n", "bad.conf:5", "colour");
	refused("[service.billing]\nowner = x\nschedule = 0 2 * * *\nretention.hourly = 3\n",
	    "retention.hourly", NULL);
	refused("[service.billing]\nowner = x\n", "schedule", NULL);
	refused("[service.billing]\nowner = x\nschedule = 0 25 * * *\n", "bad.conf:7", NULL);
	refused("[service.billing]\nowner = x\nschedule = 0 2 * * *\nretention.yearly = lots\n",
	    "not a count", "forever");
	refused("[service.billing]\nowner = x\nschedule = 0 2 * * *\ntimezone = Mars/Olympus\n",
	    "bad.conf:8", NULL);
	refused("[service.billing]\nowner = x\nschedule = 0 2 * * *\ndr.copy = sometimes\n",
	    "dr.copy", NULL);
	refused("[service.bill/ing]\nowner = x\nschedule = 0 2 * * *\n", "section name", NULL);
	refused("[service..hidden]\nowner = x\nschedule = 0 2 * * *\n", "not a valid service name",
	    NULL);
	refused("[operator.carol]\npublic_key = /k\nrole = admin\n", "role", NULL);
	refused("[operator.carol]\npublic_key = /k\n", "role", NULL);
	refused("[tls]\nca = /ca\n", "cert", NULL);
	refused("[alerts]\nwebhook_url = ftp://x\n", "http", NULL);
	refused("[metrics]\nlisten = 1\n", "metrics", NULL);
	refused("[repository.dr]\ntype = s3\nendpoint = http://example.com\nregion = r\n"
	        "bucket = b\n",
	    "bad.conf:7: [repository.dr] endpoint: http://example.com is plain http",
	    "insecure_http = true");
	coord_config *loop =
	    accepted("[repository.dr]\ntype = s3\nendpoint = http://127.0.0.1:7480\n"
	             "region = r\nbucket = b\n");
	coord_config_free(loop);
	coord_config *insecure = accepted("[repository.dr]\ntype = s3\n"
	                                  "endpoint = http://example.com\nregion = r\nbucket = b\n"
	                                  "insecure_http = true\n");
	coffer_repo_config rc;
	coffer_err e = { 0 };
	assert_int_equal(coord_config_repo(insecure, "dr", &rc, &e), 0);
	assert_int_equal(rc.insecure_http, 1);
	coord_config_free(insecure);

	coord_config *c = NULL;
	coffer_err err = { 0 };
	assert_int_not_equal(coord_config_load_string("[coordinator]\nlisten = tcp://a:1\n"
	                                              "audit_key = /k\n",
	                         "nocat.conf", &c, &err),
	    0);
	assert_non_null(strstr(err.msg, "catalog"));
	assert_int_not_equal(coord_config_load_string("[coordinator]\nlisten = http://a:1\n"
	                                              "catalog = x\naudit_key = /k\n",
	                         "listen.conf", &c, &err),
	    0);
	assert_non_null(strstr(err.msg, "listen address"));
	assert_int_not_equal(coord_config_load("/nonexistent/coordinator.conf", &c, &err), 0);
	assert_int_equal(err.code, COFFER_ENOENT);
}

/* Loads minimal_conf + extra and expects refusal with every needle (a
 * NULL-terminated list) in the message or hint. */
static void
refused_all(const char *extra, ...)
{
	char text[4096];
	snprintf(text, sizeof(text), "%s%s", minimal_conf, extra);
	coord_config *c = NULL;
	coffer_err err = { 0 };
	int rc = coord_config_load_string(text, "bad.conf", &c, &err);
	if (rc == 0) {
		coord_config_free(c);
		fail_msg("accepted: %s", extra);
	}
	assert_int_equal(rc, COFFER_EINVAL);
	char both[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 4];
	snprintf(both, sizeof(both), "%s | %s", err.msg, err.hint);
	assert_true(err.hint[0] != '\0');
	va_list ap;
	va_start(ap, extra);
	for (const char *n = va_arg(ap, const char *); n != NULL; n = va_arg(ap, const char *)) {
		if (strstr(both, n) == NULL) {
			va_end(ap);
			fail_msg("for '%s' want '%s' in: %s", extra, n, both);
		}
	}
	va_end(ap);
}

static coord_config *
accepted(const char *extra)
{
	char text[4096];
	snprintf(text, sizeof(text), "%s%s", minimal_conf, extra);
	coord_config *c = NULL;
	coffer_err err = { 0 };
	if (coord_config_load_string(text, "good.conf", &c, &err) != 0) {
		fail_msg("refused '%s': %s (hint: %s)", extra, err.msg, err.hint);
	}
	return (c);
}

/* Lines 5-7 of every case: the section, owner and schedule. */
#define SVC "[service.billing]\nowner = x\nschedule = 0 2 * * *\n"

/* Each policy rule refused naming file:line, the service, the key and the
 * rule, with a hint that says what to write instead. */
static void
test_policy_refusals(void **state)
{
	(void)state;
	/* schedule: manual-only, in words or as a cron that never fires */
	refused_all("[service.billing]\nowner = x\nschedule = manual\nretention.daily = 7\n",
	    "bad.conf:7", "[service.billing] schedule", "manual-only", "0 2 * * *", NULL);
	refused_all("[service.billing]\nowner = x\nschedule = 0 0 30 2 *\nretention.daily = 7\n",
	    "bad.conf:7", "never fires", "manual-only", NULL);
	refused_all("[service.billing]\nowner = x\nretention.daily = 7\n", "schedule",
	    "backed up on a schedule", NULL);
	/* no retention at all: named at the section */
	refused_all(SVC, "bad.conf:5", "[service.billing]", "keeps no backups",
	    "rule: a service must have retention", "retention.daily = 7", NULL);
	refused_all(SVC "retention.daily = 0\nretention.yearly = 0\n", "keeps no backups", NULL);
	/* counts */
	refused_all(SVC "retention.daily = -1\n", "bad.conf:8", "retention.daily", "not a count",
	    "forever", NULL);
	refused_all(SVC "retention.weekly = 10001\n", "retention.weekly", "not a count", NULL);
	refused_all(SVC "retention.monthly = 3x\n", "retention.monthly", NULL);
	refused_all(SVC "retention.daily = 7\nretention.min_redundancy = 0\n", "bad.conf:9",
	    "retention.min_redundancy", NULL);
	refused_all(SVC "retention.daily = 7\nretention.grace = 30m\n", "bad.conf:9",
	    "retention.grace", NULL);
	refused_all(SVC "retention.daily = 7\nretention.hourly = 24\n", "bad.conf:9",
	    "retention.hourly", NULL);
	/* gdpr: a declared maximum, not forever, and nothing longer than it */
	refused_all(SVC "retention.daily = 7\ncompliance = gdpr\n", "bad.conf:9",
	    "[service.billing] compliance", "requires compliance.max_retention", "400d", NULL);
	refused_all(SVC "retention.daily = 7\ncompliance = gdpr\ncompliance.max_retention = "
	                "forever\n",
	    "bad.conf:10", "compliance.max_retention", "not a maximum", NULL);
	refused_all(SVC "retention.daily = 7\nretention.yearly = forever\ncompliance = gdpr\n"
	                "compliance.max_retention = 400d\n",
	    "bad.conf:9", "[service.billing] retention.yearly", "forever", "rule: gdpr", "400d",
	    NULL);
	refused_all(SVC "retention.monthly = 13\ncompliance = gdpr\n"
	                "compliance.max_retention = 400d\n",
	    "bad.conf:8", "retention.monthly", "403d", "at most 12", NULL);
	refused_all(SVC "retention.daily = 7\npitr.window = 30d\ncompliance = gdpr\n"
	                "compliance.max_retention = 14d\n",
	    "bad.conf:9", "pitr.window", "rule: gdpr", "14d", NULL);
	refused_all(SVC "retention.daily = 7\ndr.copy = all\ndr.retention = 365d\n"
	                "compliance = gdpr\ncompliance.max_retention = 30d\n",
	    "bad.conf:10", "dr.retention", "object lock", NULL);
	/* a declared maximum binds whatever the mode */
	refused_all(SVC "retention.weekly = 10\ncompliance.max_retention = 30d\n", "bad.conf:8",
	    "retention.weekly", "rule: policy", NULL);
	/* hipaa: six years, reached by the longest tier */
	refused_all(SVC "retention.monthly = 12\nretention.yearly = 5\ncompliance = hipaa\n",
	    "bad.conf:9", "retention.yearly", "1830d", "2190d", "rule: hipaa",
	    "retention.yearly = 6", NULL);
	refused_all(SVC "retention.monthly = 60\ncompliance = hipaa\n", "bad.conf:8",
	    "retention.monthly", "rule: hipaa", NULL);
	refused_all(SVC "retention.yearly = 10\ncompliance = hipaa\n"
	                "compliance.min_retention = 365d\n",
	    "bad.conf:10", "compliance.min_retention", "six years", NULL);
	refused_all(SVC "retention.yearly = 10\ncompliance.min_retention = 400d\n"
	                "compliance.max_retention = 300d\n",
	    "bad.conf:9", "compliance.min_retention", "cannot exceed", NULL);
	/* the first bad service is the one named */
	refused_all(SVC "retention.daily = 7\n[service.ledger]\nowner = y\nschedule = @daily\n",
	    "bad.conf:9", "[service.ledger]", "keeps no backups", NULL);
}

static void
test_policy_accepted(void **state)
{
	(void)state;
	coord_config *c = accepted(SVC "retention.yearly = 6\ncompliance = hipaa\n");
	const coord_service_policy *p = coord_config_service(c, "billing");
	assert_int_equal(p->compliance, COORD_COMPLIANCE_HIPAA);
	assert_int_equal(p->min_retention_ms, COORD_HIPAA_MIN_RETENTION_MS);
	assert_int_equal(p->longest_ms, 6 * 366 * DAYS);
	assert_int_equal(p->retention.min_redundancy, 1);
	coord_config_free(c);
	c = accepted(SVC "retention.daily = forever\ncompliance = hipaa\n");
	p = coord_config_service(c, "billing");
	assert_int_equal(p->retention.tiers[COORD_TIER_DAILY], COORD_RETENTION_FOREVER);
	assert_int_equal(p->longest_ms, -1);
	coord_config_free(c);
	/* gdpr at exactly the bound: 13 weeks = 91d */
	c = accepted(
	    SVC "retention.weekly = 13\ncompliance = gdpr\ncompliance.max_retention = 91d\n"
	        "retention.grace = 1h\n");
	p = coord_config_service(c, "billing");
	assert_int_equal(p->retention.grace_ms, 1 * HOURS);
	assert_int_equal(p->max_retention_ms, 91 * DAYS);
	coord_config_free(c);
	/* dr.retention is only bound when copies are made */
	c = accepted(SVC "retention.daily = 7\ndr.retention = 365d\ncompliance = gdpr\n"
	                 "compliance.max_retention = 30d\n");
	coord_config_free(c);
	c = accepted("[service.a]\nowner = x\nschedule = @daily\nretention.daily = 1\n"
	             "[service.b]\nowner = y\nschedule = 0 3 * * 1\nretention.weekly = 1\n");
	assert_int_equal(c->n_services, 2);
	assert_string_equal(c->services[1].name, "b");
	coord_config_free(c);
}

static void
version_of(const char *extra, char out[COORD_POLICY_VERSION_HEX])
{
	coord_config *c = accepted(extra);
	const coord_service_policy *p = coord_config_service(c, "billing");
	assert_non_null(p);
	/* (the branch tells gcc -O2 what assert_non_null already checked) */
	if (p != NULL) {
		memcpy(out, p->version, COORD_POLICY_VERSION_HEX);
	}
	coord_config_free(c);
}

/* The policy version: the same for the same meaning, different for any
 * change of meaning; and the canonical text it hashes. */
static void
test_policy_version(void **state)
{
	(void)state;
	char v1[COORD_POLICY_VERSION_HEX], v2[COORD_POLICY_VERSION_HEX];
	version_of(SVC "retention.daily = 7\npitr.window = 7d\n", v1);
	/* spacing, comments, key order, defaults spelled out, units */
	version_of("[service.billing]\n# the billing db\npitr.window = 1w\n"
	           "retention.daily = 007\nschedule =  0  2 * * *\nowner = x\ntimezone = UTC\n"
	           "retention.grace = 168h\nretention.min_redundancy = 1\n",
	    v2);
	assert_string_equal(v1, v2);
	const char *changes[] = {
		SVC "retention.daily = 8\npitr.window = 7d\n",
		SVC "retention.daily = 7\npitr.window = 6d\n",
		SVC "retention.daily = 7\npitr.window = 7d\nretention.grace = 6d\n",
		SVC "retention.daily = 7\npitr.window = 7d\ntimezone = Europe/Rome\n",
		SVC "retention.daily = 7\npitr.window = 7d\nretention.weekly = 1\n",
		("[service.billing]\nowner = x\nschedule = 0 3 * * *\nretention.daily = 7\n"
		 "pitr.window = 7d\n"),
	};
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		version_of(changes[i], v2);
		if (strcmp(v1, v2) == 0) {
			fail_msg("same version for a different policy: %s", changes[i]);
		}
	}
	coord_config *c = accepted(SVC "retention.daily = 7\nretention.yearly = forever\n");
	char text[2048];
	int n = coord_config_policy_text(c->ini, "billing", text, sizeof(text));
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(text));
	assert_non_null(strstr(text,
	    "coffer-policy=1\nservice=billing\nowner=x\n"
	    "schedule=0 2 * * *\ntimezone=UTC\nretention.daily=7\n"
	    "retention.yearly=forever\nretention.min_redundancy=1\n"
	    "retention.grace=7d\n"));
	assert_null(strstr(text, "pitr.window"));
	assert_int_equal(coord_config_policy_text(c->ini, "billing", text, 20), COFFER_ETOOBIG);
	assert_int_equal(
	    coord_config_policy_text(c->ini, "ledger", text, sizeof(text)), COFFER_ENOENT);
	coord_config_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_example),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_policy_refusals),
		cmocka_unit_test(test_policy_accepted),
		cmocka_unit_test(test_policy_version),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
