/* coordinator.conf: the example from DESIGN.md loads with the values and
 * defaults the commands read; then the mistakes an operator makes, each
 * refused naming the line and key. The coordinator's modules are linked into
 * its executable, not a library, so the source is compiled in here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "coordinator/coord_config.c" /* white-box: uses its unit constants */

static const char full_conf[] =
    "[coordinator]\n"
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
    "retention.yearly = forever\n"
    "retention.min_redundancy = 2\n"
    "pitr.window = 7d\n"
    "dr.copy = weekly\n"
    "dr.lock = compliance\n"
    "dr.retention = 365d\n"
    "compliance = gdpr\n"
    "compliance.max_retention = 400d\n"
    "drill.schedule = 0 4 1 */3 *\n"
    "drill.rto = 60m\n";

static const char minimal_conf[] =
    "[coordinator]\n"
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
	assert_string_equal(coffer_config_str(c->ini, "service.billing", "retention.yearly"),
	    "forever");
	assert_int_equal(coffer_config_duration_ms(c->ini, "service.billing", "pitr.window"),
	    7 * DAYS);
	assert_int_equal(coffer_config_duration_ms(c->ini, "service.billing", "drill.rto"),
	    60 * MINS);
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
	refused("[service.bill/ing]\nowner = x\nschedule = 0 2 * * *\n", "section name",
	    NULL);
	refused("[service..hidden]\nowner = x\nschedule = 0 2 * * *\n", "not a valid service name",
	    NULL);
	refused("[operator.carol]\npublic_key = /k\nrole = admin\n", "role", NULL);
	refused("[operator.carol]\npublic_key = /k\n", "role", NULL);
	refused("[tls]\nca = /ca\n", "cert", NULL);
	refused("[alerts]\nwebhook_url = ftp://x\n", "http", NULL);
	refused("[metrics]\nlisten = 1\n", "metrics", NULL);

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_example),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_refusals),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
