/* One name rule everywhere: every name at the rule's boundaries is accepted
 * by agent.conf ([agent] name and service) and by coordinator.conf (an
 * [operator.NAME] section) exactly when coffer_name_valid accepts it -- the
 * function enrollment, the intake, the admin endpoint and manifests call
 * too. Before, agent.conf took "_billing"
 * and a 63-byte name that enrollment then refused or that a manifest could
 * not carry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/context/agent_config.h"
#include "common/base/name.h"
#include "coordinator/policy/coord_config.h"

static const char *const names[] = {
	"billing", "b", "9lives", "billing-db-1.eu_west", "_billing", ".billing", "-billing",
	"bil ling", "bil/ling", "bil:ling", "caf\xc3\xa9",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",  /* 63 */
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 64 */
};

static bool
agent_accepts(const char *name)
{
	char text[1024];
	snprintf(text, sizeof(text),
	    "[agent]\nname = %s\nservice = %s\nstate_dir = /var/lib/coffer-agent\n"
	    "signing_key = /etc/coffer/agent.key\nkey_ring = /etc/coffer/billing.keys\n"
	    "[postgres]\nconninfo = dbname=billing\n"
	    "[schedule]\nlogical = 0 2 * * *\n"
	    "[repository.primary]\ntype = posix\npath = /srv/coffer\n",
	    name, name);
	agent_config *c = NULL;
	coffer_err err = { 0 };
	int rc = agent_config_load_string(text, "agent.conf", &c, &err);
	agent_config_free(c);
	/* Refused for the name, not for something else in the file. */
	if (rc != 0 && strstr(err.msg, "is not a valid") == NULL) {
		fail_msg("agent.conf refused name %s for another reason: %s", name, err.msg);
	}
	return (rc == 0);
}

static bool
coordinator_accepts(const char *name)
{
	char text[1024];
	snprintf(text, sizeof(text),
	    "[coordinator]\nlisten = tcp://127.0.0.1:7443\ncatalog = dbname=coffer\n"
	    "audit_key = /tmp/audit.key\n"
	    "[operator.%s]\npublic_key = /etc/coffer/operators/x.pub\nrole = auditor\n",
	    name);
	coord_config *c = NULL;
	coffer_err err = { 0 };
	int rc = coord_config_load_string(text, "coordinator.conf", &c, &err);
	/* The INI reader refuses some bytes in any section name first. */
	if (rc != 0 && strstr(err.msg, "is not a valid") == NULL &&
	    strstr(err.msg, "bad section name") == NULL) {
		fail_msg(
		    "coordinator.conf refused [operator.%s] for another reason: %s", name, err.msg);
	}
	coord_config_free(c);
	return (rc == 0);
}

static void
test_every_config_agrees_with_the_rule(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		bool rule = coffer_name_valid(names[i]);
		if (agent_accepts(names[i]) != rule || coordinator_accepts(names[i]) != rule) {
			fail_msg("'%s': the rule says %s, a config disagrees", names[i],
			    rule ? "valid" : "invalid");
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_config_agrees_with_the_rule),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
