/*
 * coordinator/serve/metrics.c without a catalog: the page a scrape gets
 * from what the coordinator keeps in memory (coord_metrics_compose) when
 * the catalog was never read, was read long ago, or was read just now; the
 * list of family names; and the services' freshness bounds from real
 * schedules and time zones (coord_metrics_bounds). The catalog's families
 * themselves are tests/integration/alerts_itest.c and the real scrapes of
 * tests/integration/catalog_outage.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/policy/coord_config.h"
#include "coordinator/serve/metrics.h"

/* Whether text has a line that starts with line (a sample with its value,
 * or a comment). */
static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p != NULL && *p != '\0';
	     p = strchr(p, '\n'), p = p ? p + 1 : p) {
		if (strncmp(p, line, n) == 0) {
			return (true);
		}
	}
	return (false);
}

static coord_metrics_live
live_at(int64_t now_ms)
{
	coord_metrics_live live;
	memset(&live, 0, sizeof(live));
	live.now_ms = now_ms;
	live.started_ms = now_ms - 60000;
	live.catalog_up = true;
	live.services_configured = 2;
	live.intake[COORD_METRICS_INTAKE_OK] = 7;
	live.intake[COORD_METRICS_INTAKE_UNAVAILABLE] = 3;
	return (live);
}

static void
test_never_read(void **state)
{
	(void)state;
	coord_metrics_live live = live_at(1800000000000);
	live.catalog_up = false;
	live.outage_since_ms = live.now_ms - 12500;
	live.catalog_outages = 1;
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(coord_metrics_compose(&live, NULL, 0, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_true(has_line(text, "coffer_catalog_up 0\n"));
	assert_true(has_line(text, "coffer_catalog_outage_seconds 12.500\n"));
	assert_true(has_line(text, "coffer_catalog_outages_total 1\n"));
	assert_true(has_line(text, "coffer_intake_requests_total{result=\"ok\"} 7\n"));
	assert_true(has_line(text, "coffer_intake_requests_total{result=\"unavailable\"} 3\n"));
	assert_true(has_line(text, "coffer_intake_requests_total{result=\"dropped\"} 0\n"));
	assert_true(has_line(text, "coffer_coordinator_start_time_seconds 1799999940.000\n"));
	assert_true(has_line(text, "coffer_build_info{version=\"" COFFER_VERSION "\",commit=\""));
	/* Never read: no age sample, and every catalog family named without
	 * samples. */
	assert_true(has_line(text, "# TYPE coffer_metrics_catalog_age_seconds gauge\n"));
	assert_false(has_line(text, "coffer_metrics_catalog_age_seconds "));
	assert_true(has_line(text, "# TYPE coffer_wal_archive_failures_total counter\n"));
	assert_false(has_line(text, "coffer_wal_archive_failures_total{"));
	free(text);
}

static void
test_stale_and_fresh(void **state)
{
	(void)state;
	const char catalog[] = "# HELP coffer_backups Backups.\n# TYPE coffer_backups gauge\n"
	                       "coffer_backups{service=\"billing\",status=\"completed\"} 4\n";
	coord_metrics_live live = live_at(1800000000000);
	live.catalog_up = false;
	live.catalog_read_ms = live.now_ms - 90250;
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(coord_metrics_compose(&live, catalog, strlen(catalog), &text, &len), 0);
	assert_true(has_line(text, "coffer_catalog_up 0\n"));
	assert_true(has_line(text, "coffer_metrics_catalog_age_seconds 90.250\n"));
	assert_true(has_line(text, "coffer_backups{service=\"billing\",status=\"completed\"} 4\n"));
	/* The catalog part follows the coordinator's own, as given. */
	assert_non_null(strstr(text, catalog));
	assert_int_equal(strlen(text), len);
	free(text);

	live.catalog_up = true;
	live.catalog_read_ms = live.now_ms;
	assert_int_equal(coord_metrics_compose(&live, catalog, strlen(catalog), &text, &len), 0);
	assert_true(has_line(text, "coffer_catalog_up 1\n"));
	assert_true(has_line(text, "coffer_metrics_catalog_age_seconds 0.000\n"));
	assert_true(has_line(text, "coffer_catalog_outage_seconds 0.000\n"));
	free(text);
}

static void
test_family_names(void **state)
{
	(void)state;
	size_t n = 0;
	for (const char *name; (name = coord_metrics_family_name(n)) != NULL; n++) {
		assert_int_equal(strncmp(name, "coffer_", 7), 0);
		for (size_t k = 0; k < n; k++) {
			assert_string_not_equal(name, coord_metrics_family_name(k));
		}
	}
	assert_true(n >= 40);
	assert_string_equal(coord_metrics_family_name(0), "coffer_catalog_up");
}

static void
test_bounds(void **state)
{
	(void)state;
	/* Weekdays at 02:00 in Paris: the longest gap is Friday to Monday
	 * over the October weekend the clocks go back (73 h), plus
	 * completion_window; drills at 04:00 on the 1st of every third month:
	 * 1 October (summer time) to 1 January (winter time), 92 days and an
	 * hour, plus drill.rto and overdue_after. */
	static const char conf[] = "[coordinator]\n"
	                           "listen = tcp://127.0.0.1:7443\n"
	                           "catalog = dbname=coffer\n"
	                           "audit_key = /tmp/audit.key\n"
	                           "[alerts]\n"
	                           "completion_window = 2h\n"
	                           "[service.billing]\n"
	                           "owner = team-payments\n"
	                           "schedule = 0 2 * * 1-5\n"
	                           "timezone = Europe/Paris\n"
	                           "retention.daily = 7\n"
	                           "drill.schedule = 0 4 1 */3 *\n"
	                           "drill.runner = drill-1\n"
	                           "drill.rto = 60m\n"
	                           "drill.overdue_after = 30m\n"
	                           "[service.ledger]\n"
	                           "owner = team-payments\n"
	                           "schedule = */15 * * * *\n"
	                           "retention.daily = 7\n";
	coord_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coord_config_load_string(conf, "coordinator.conf", &cfg, &err), 0);
	coord_metrics_bound *b = NULL;
	assert_int_equal(coord_metrics_bounds(cfg, 1800000000000, &b, &err), 0);
	assert_int_equal(cfg->n_services, 2);
	for (size_t i = 0; i < 2; i++) {
		if (strcmp(b[i].service, "billing") == 0) {
			assert_int_equal(b[i].backup_max_age_ms, (73 + 2) * 3600000LL);
			assert_int_equal(
			    b[i].drill_max_age_ms, 92 * 86400000LL + 3600000LL + 90 * 60000LL);
		} else {
			assert_string_equal(b[i].service, "ledger");
			assert_int_equal(b[i].backup_max_age_ms, (15 + 120) * 60000LL);
			assert_int_equal(b[i].drill_max_age_ms, 0);
		}
	}
	coord_metrics_live live = live_at(1800000000000);
	live.bounds = b;
	/* The alert bounds: as set, or the schema's defaults (no [dr] here). */
	coord_metrics_alert_bounds(cfg, live.alert_bounds);
	static const struct {
		const char *name;
		int64_t ms;
	} want[COORD_METRICS_ALERT_BOUNDS] = { { "agent_quiet", 600000 },
		{ "agent_clock_skew_max", 120000 }, { "completion_window", 7200000 },
		{ "dr_copy_lag", 21600000 } };
	for (int i = 0; i < COORD_METRICS_ALERT_BOUNDS; i++) {
		assert_string_equal(live.alert_bounds[i].name, want[i].name);
		assert_int_equal(live.alert_bounds[i].ms, want[i].ms);
	}
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(coord_metrics_compose(&live, NULL, 0, &text, &len), 0);
	assert_true(has_line(text, "coffer_backup_max_age_seconds{service=\"ledger\"} 8100.000\n"));
	assert_false(has_line(text, "coffer_drill_max_age_seconds{service=\"ledger\"}"));
	assert_true(
	    has_line(text, "coffer_alert_bound_seconds{bound=\"dr_copy_lag\"} 21600.000\n"));
	free(text);
	free(b);
	coord_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_never_read),
		cmocka_unit_test(test_stale_and_fresh),
		cmocka_unit_test(test_family_names),
		cmocka_unit_test(test_bounds),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
