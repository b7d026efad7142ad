/* The status page's renderer (coordinator/serve/statuspage.h) fed
 * hand-made snapshots, no catalog: every section is there; hostile text
 * from operators and agents (hold reasons, alert summaries, names) comes
 * out as text and the page holds no element but the renderer's own; the
 * RPO state is red past the RPO and green within it, worst first; sections
 * are capped with "N more"; without the catalog the banner says since when
 * and what is shown. And coord_config_rpo: set, or derived from the
 * schedule's longest gap plus [alerts] completion_window. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/clock.h"
#include "common/base/strbuf.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/serve/statuspage.h"

#define HOUR_MS (3600LL * 1000)
#define DAY_MS  (24 * HOUR_MS)

static const char conf_text[] = "[coordinator]\n"
                                "listen = tcp://127.0.0.1:7443\n"
                                "catalog = dbname=coffer\n"
                                "audit_key = /tmp/audit.key\n"
                                "[service.billing]\n"
                                "owner = team-payments\n"
                                "schedule = 0 2 * * *\n"
                                "retention.daily = 7\n"
                                "[service.Shop.EU-west_2]\n"
                                "owner = team-shop\n"
                                "schedule = 0 * * * *\n"
                                "rpo = 1h\n"
                                "retention.daily = 7\n"
                                "drill.runner = runner-1\n"
                                "drill.rto = 30m\n"
                                "[service.weekdays]\n"
                                "owner = team-x\n"
                                "schedule = 0 2 * * 1-5\n"
                                "retention.daily = 7\n";

/* 2026-12-07T12:00:00Z, a Monday. */
static const int64_t now = 1796644800000LL;

static coord_config *
load(void)
{
	coord_config *c = NULL;
	coffer_err err = { 0 };
	int rv = coord_config_load_string(conf_text, "s.conf", &c, &err);
	if (rv != 0) {
		fail_msg("config: %s", err.msg);
	}
	return (c);
}

static char *
iso(int64_t ms)
{
	static char buf[8][40];
	static int i;
	i = (i + 1) % 8;
	return (coffer_time_format(buf[i], sizeof(buf[i]), ms));
}

/* A snapshot as coord_statuspage_collect makes it. */
static cJSON *
snapshot(int holds, int holds_active)
{
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	coffer_strbuf_printf(&b,
	    "{\"services\":["
	    "{\"service\":\"billing\",\"last_backup\":{\"id\":\"b-1\",\"kind\":\"logical\","
	    "\"settled_at\":\"%s\"},"
	    "\"last_drill\":null,\"dr\":{\"copy\":\"none\"}},"
	    "{\"service\":\"Shop.EU-west_2\",\"last_backup\":{\"id\":\"s-1\",\"kind\":\"physical\","
	    "\"settled_at\":\"%s\"},"
	    "\"last_drill\":{\"status\":\"passed\",\"started_at\":\"%s\",\"restore_ms\":2400000,"
	    "\"rto_ms\":1800000,\"failure_reason\":null},"
	    "\"dr\":{\"copy\":\"all\",\"pending\":2,\"failed\":0,\"pending_bytes\":3145728,"
	    "\"oldest_pending_backup\":\"s-0\",\"oldest_pending_since\":\"%s\","
	    "\"last_verified_at\":null}},"
	    "{\"service\":\"weekdays\",\"last_backup\":null,\"last_drill\":null,"
	    "\"dr\":{\"copy\":\"none\"}}"
	    "],"
	    "\"alerts_open\":1,\"alerts\":[{\"dedup_key\":\"coffer/Shop.EU-west_2/agent_quiet/"
	    "shop-db-1\",\"service\":\"Shop.EU-west_2\",\"check\":\"agent_quiet\",\"state\":"
	    "\"triggered\",\"severity\":\"error\",\"summary\":\"</td><script>alert('s')</script> "
	    "\\\"quoted\\\" & co\",\"last_changed_at\":\"%s\"}],"
	    "\"holds_active\":%d,\"holds\":[",
	    iso(now - 3 * HOUR_MS), iso(now - 2 * HOUR_MS), iso(now - DAY_MS), iso(now - HOUR_MS),
	    iso(now - 600000), holds_active);
	for (int i = 0; i < holds; i++) {
		coffer_strbuf_printf(&b,
		    "%s{\"backup_id\":\"b-%d\",\"service\":\"billing\",\"reason\":\"%s\","
		    "\"placed_by\":\"operator:alice\",\"placed_at\":\"%s\"}",
		    i == 0 ? "" : ",", i,
		    i == 0 ? "<img src=x onerror=alert(1)>" : "litigation <b>2026</b>",
		    iso(now - 5 * DAY_MS));
	}
	coffer_strbuf_put(&b, "]}");
	assert_false(b.failed);
	cJSON *j = cJSON_Parse(coffer_strbuf_text(&b));
	coffer_strbuf_free(&b);
	assert_non_null(j);
	return (j);
}

static char *
render(const coord_config *cfg, const cJSON *snap, bool up, int64_t down_since)
{
	int64_t rpo[3];
	bool derived[3];
	assert_int_equal(cfg->n_services, 3);
	for (size_t i = 0; i < 3; i++) {
		coffer_err err = { 0 };
		assert_int_equal(
		    coord_config_rpo(cfg, &cfg->services[i], now, &rpo[i], &derived[i], &err), 0);
	}
	coord_statuspage_input in = {
		.now_ms = now,
		.snap = snap,
		.snap_at_ms = now - 120000,
		.catalog_up = up,
		.down_since_ms = down_since,
		.rpo_ms = rpo,
		.rpo_derived = derived,
	};
	char *html = NULL;
	size_t len = 0;
	assert_int_equal(coord_statuspage_html(cfg, &in, &html, &len), 0);
	assert_non_null(html);
	assert_int_equal(strlen(html), len);
	return (html);
}

/* Every tag in the page is one the renderer writes: nothing from the
 * snapshot became markup. */
static void
assert_only_own_tags(const char *html)
{
	static const char *const allowed[] = { "!DOCTYPE", "html", "head", "meta", "title", "style",
		"body", "header", "h1", "h2", "p", "span", "section", "table", "thead", "tbody",
		"tr", "th", "td", "br", "strong", "div", NULL };
	for (const char *p = strchr(html, '<'); p != NULL; p = strchr(p + 1, '<')) {
		const char *n = p + 1 + (p[1] == '/');
		size_t len = 0;
		while (n[len] != '\0' && (isalnum((unsigned char)n[len]) || n[len] == '!')) {
			len++;
		}
		bool ok = false;
		for (size_t i = 0; allowed[i] != NULL && !ok; i++) {
			ok = strlen(allowed[i]) == len && strncmp(allowed[i], n, len) == 0;
		}
		if (!ok) {
			fail_msg("unexpected tag at: %.40s", p);
		}
	}
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
		n++;
	}
	return (n);
}

/* The text of the section with this id. */
static char *
section(const char *html, const char *id)
{
	char open[64];
	snprintf(open, sizeof(open), "<section id=\"%s\">", id);
	const char *s = strstr(html, open);
	assert_non_null(s);
	const char *e = strstr(s, "</section>");
	assert_non_null(e);
	return (strndup(s, (size_t)(e - s)));
}

static void
test_rpo(void **state)
{
	(void)state;
	coord_config *cfg = load();
	int64_t rpo = 0;
	bool derived = false;
	coffer_err err = { 0 };
	/* Daily: one day between runs plus completion_window (2h). */
	assert_int_equal(coord_config_rpo(cfg, &cfg->services[0], now, &rpo, &derived, &err), 0);
	assert_true(derived);
	assert_int_equal(rpo, DAY_MS + 2 * HOUR_MS);
	/* Set in the file: taken as it is. */
	assert_int_equal(coord_config_rpo(cfg, &cfg->services[1], now, &rpo, &derived, &err), 0);
	assert_false(derived);
	assert_int_equal(rpo, HOUR_MS);
	/* Weekdays only: the weekend's gap (Friday to Monday). */
	assert_int_equal(coord_config_rpo(cfg, &cfg->services[2], now, &rpo, &derived, &err), 0);
	assert_true(derived);
	assert_int_equal(rpo, 3 * DAY_MS + 2 * HOUR_MS);
	coord_config_free(cfg);

	/* Out of range is refused at load, naming the key. */
	coord_config *bad = NULL;
	char text[2048];
	snprintf(text, sizeof(text), "%s%s", conf_text, "rpo = 10s\n");
	assert_int_not_equal(coord_config_load_string(text, "s.conf", &bad, &err), 0);
	assert_non_null(strstr(err.msg, "rpo"));
}

static void
test_sections_and_escaping(void **state)
{
	(void)state;
	coord_config *cfg = load();
	cJSON *snap = snapshot(2, 2);
	char *html = render(cfg, snap, true, 0);
	/* STATUSPAGE_DUMP=FILE keeps the page, to look at in a browser. */
	const char *dump = getenv("STATUSPAGE_DUMP");
	FILE *f = dump != NULL ? fopen(dump, "w") : NULL;
	if (f != NULL) {
		fputs(html, f);
		fclose(f);
	}
	assert_only_own_tags(html);
	for (const char *id = "services"; id != NULL;) {
		char *s = section(html, id);
		free(s);
		id = strcmp(id, "services") == 0 ? "alerts"
		    : strcmp(id, "alerts") == 0  ? "drills"
		    : strcmp(id, "drills") == 0  ? "dr"
		    : strcmp(id, "dr") == 0      ? "holds"
		                                 : NULL;
	}
	/* Hostile text shows as text. */
	assert_non_null(strstr(html, "&lt;img src=x onerror=alert(1)&gt;"));
	assert_non_null(strstr(html,
	    "&lt;/td&gt;&lt;script&gt;alert(&#39;s&#39;)&lt;/script&gt; "
	    "&quot;quoted&quot; &amp; co"));
	assert_non_null(strstr(html, "litigation &lt;b&gt;2026&lt;/b&gt;"));
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<img"));
	assert_null(strstr(html, "<b>"));
	assert_non_null(strstr(html, "Shop.EU-west_2"));

	/* Services: Shop (2h old, RPO 1h) missed its RPO and comes first;
	 * billing (3h, RPO 26h derived) is within it; weekdays has no backup. */
	char *svc = section(html, "services");
	const char *shop = strstr(svc, "Shop.EU-west_2");
	const char *bill = strstr(svc, ">billing<");
	assert_non_null(shop);
	assert_non_null(bill);
	assert_true(shop < bill);
	assert_non_null(strstr(shop, "state bad\">RPO missed"));
	assert_non_null(strstr(bill, "state ok\">within RPO"));
	assert_non_null(strstr(bill, "1d 2h <span class=\"note\">(from the schedule)"));
	assert_non_null(strstr(bill, "logical"));
	assert_non_null(strstr(svc, "2 past their RPO"));
	/* The next run of billing: today 02:00 has passed, tomorrow's is next. */
	assert_non_null(strstr(bill, "2026-12-08 02:00:00Z"));
	free(svc);

	char *al = section(html, "alerts");
	assert_non_null(strstr(al, "1 open"));
	assert_non_null(strstr(al, "agent_quiet"));
	assert_non_null(strstr(al, ">shop-db-1<"));
	assert_non_null(strstr(al, "coffer/Shop.EU-west_2/agent_quiet/shop-db-1"));
	assert_non_null(strstr(al, "10m ago"));
	free(al);

	char *dr = section(html, "drills");
	assert_non_null(strstr(dr, "state bad\">over RTO")); /* 40m against 30m */
	assert_non_null(strstr(dr, "40m"));
	assert_non_null(strstr(dr, "not drilled (no drill.runner)"));
	free(dr);

	char *d = section(html, "dr");
	assert_non_null(strstr(d, "3.0 MiB"));
	assert_non_null(strstr(d, "s-0"));
	assert_non_null(strstr(d, "no DR copy"));
	free(d);

	char *h = section(html, "holds");
	assert_non_null(strstr(h, "operator:alice"));
	assert_null(strstr(h, "more"));
	free(h);
	assert_null(strstr(html, "Catalog unreachable"));
	free(html);
	cJSON_Delete(snap);
	coord_config_free(cfg);
}

static void
test_bounded(void **state)
{
	(void)state;
	coord_config *cfg = load();
	cJSON *snap = snapshot(COORD_STATUSPAGE_MAX_ROWS + 50, COORD_STATUSPAGE_MAX_ROWS + 100);
	char *html = render(cfg, snap, true, 0);
	char *h = section(html, "holds");
	/* The header row and MAX_ROWS rows; the rest counted. */
	assert_int_equal(count(h, "<tr>"), COORD_STATUSPAGE_MAX_ROWS + 1);
	assert_non_null(strstr(h, "100 more holds"));
	assert_non_null(strstr(h, "300 active"));
	free(h);
	free(html);
	cJSON_Delete(snap);
	coord_config_free(cfg);
}

static void
test_catalog_down(void **state)
{
	(void)state;
	coord_config *cfg = load();
	/* Never read: the configuration alone, and the banner. */
	char *html = render(cfg, NULL, false, now - 300000);
	assert_only_own_tags(html);
	assert_non_null(strstr(html, "Catalog unreachable since"));
	assert_non_null(strstr(html, "5m ago"));
	assert_non_null(strstr(html, "Nothing has been read"));
	char *svc = section(html, "services");
	assert_non_null(strstr(svc, "Shop.EU-west_2"));
	assert_non_null(strstr(svc, "state unknown"));
	assert_null(strstr(svc, "state ok"));
	free(svc);
	free(html);
	/* With an older snapshot: shown, and labelled with its age. */
	cJSON *snap = snapshot(1, 1);
	html = render(cfg, snap, false, now - 60000);
	assert_non_null(strstr(html, "read 2m ago and may be out of date"));
	assert_non_null(strstr(html, "&lt;img src=x onerror=alert(1)&gt;"));
	free(html);
	cJSON_Delete(snap);
	coord_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rpo),
		cmocka_unit_test(test_sections_and_escaping),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_catalog_down),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
