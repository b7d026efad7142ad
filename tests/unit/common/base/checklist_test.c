/* A check command's report (common/base/checklist.h): the exit status is
 * the worst result in the Nagios convention; JSON escapes what a server or
 * a file said and stays one valid array; text is one line per result;
 * results past the cap still count; durations read as people read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/base/checklist.h"

/* Runs fn with stdout sent to a file and returns what it printed
 * (malloc'd); *status gets fn's return. */
static char *
capture(int (*fn)(void *), void *arg, int *status)
{
	fflush(stdout);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	int saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
	*status = fn(arg);
	fflush(stdout);
	assert_true(dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	long n = ftell(tmp);
	if (n < 0) {
		n = 0;
	}
	char *out = calloc(1, (size_t)n + 1);
	assert_non_null(out);
	rewind(tmp);
	size_t got = fread(out, 1, (size_t)n, tmp);
	out[got] = '\0';
	fclose(tmp);
	return (out);
}

typedef struct scenario {
	bool json;
	coffer_check_status statuses[3];
	size_t n;
	size_t extra; /* results past the cap */
} scenario;

static int
run_scenario(void *arg)
{
	scenario *s = arg;
	static coffer_checklist cl;
	coffer_checklist_init(&cl, s->json);
	for (size_t i = 0; i < s->n; i++) {
		coffer_checklist_add(&cl, "thing", s->statuses[i],
		    s->statuses[i] == COFFER_CHECK_OK ? NULL : "do \"this\"", "detail %zu", i);
	}
	for (size_t i = 0; i < s->extra; i++) {
		coffer_checklist_add(&cl, "more", COFFER_CHECK_OK, NULL, "x");
	}
	return (coffer_checklist_end(&cl));
}

static void
test_exit_status_is_the_worst(void **state)
{
	(void)state;
	int st;
	scenario ok = { false, { COFFER_CHECK_OK, COFFER_CHECK_OK }, 2, 0 };
	free(capture(run_scenario, &ok, &st));
	assert_int_equal(st, 0);
	scenario warn = { false, { COFFER_CHECK_OK, COFFER_CHECK_WARNING, COFFER_CHECK_OK }, 3, 0 };
	free(capture(run_scenario, &warn, &st));
	assert_int_equal(st, 1);
	scenario crit = { false, { COFFER_CHECK_CRITICAL, COFFER_CHECK_WARNING, COFFER_CHECK_OK },
		3, 0 };
	free(capture(run_scenario, &crit, &st));
	assert_int_equal(st, 2);
	scenario none = { true, { COFFER_CHECK_OK }, 0, 0 };
	char *out = capture(run_scenario, &none, &st);
	assert_int_equal(st, 0);
	assert_string_equal(out, "[]\n");
	free(out);
}

static void
test_text_one_line_each(void **state)
{
	(void)state;
	int st;
	scenario s = { false, { COFFER_CHECK_OK, COFFER_CHECK_CRITICAL }, 2, 0 };
	char *out = capture(run_scenario, &s, &st);
	assert_string_equal(out,
	    "OK       thing            detail 0\n"
	    "CRITICAL thing            detail 1; fix: do \"this\"\n"
	    "2 checks: 1 ok, 0 warning, 1 critical\n");
	free(out);
}

static int
run_hostile(void *arg)
{
	(void)arg;
	static coffer_checklist cl;
	coffer_checklist_init(&cl, true);
	/* What a server may say: quotes, backslashes, a newline, a tab, a
	 * byte that is not UTF-8. */
	coffer_checklist_add(&cl, "pg", COFFER_CHECK_WARNING, "a\\b", "say \"hi\"\nthen\t\xff!");
	return (coffer_checklist_end(&cl));
}

static void
test_json_escapes(void **state)
{
	(void)state;
	int st;
	char *out = capture(run_hostile, NULL, &st);
	assert_int_equal(st, 1);
	assert_string_equal(out,
	    "[{\"check\":\"pg\",\"status\":\"warning\",\"detail\":\"say "
	    "\\\"hi\\\"?then?\?!\",\"fix\":\"a\\\\b\"}]\n");
	free(out);
}

static void
test_past_the_cap_still_counts(void **state)
{
	(void)state;
	int st;
	scenario s = { true, { COFFER_CHECK_CRITICAL }, 1, COFFER_CHECKLIST_MAX + 3 };
	char *out = capture(run_scenario, &s, &st);
	assert_int_equal(st, 2);
	size_t objects = 0;
	for (const char *p = out; (p = strstr(p, "{\"check\"")) != NULL; p++) {
		objects++;
	}
	assert_int_equal(objects, COFFER_CHECKLIST_MAX);
	free(out);
	s.json = false;
	out = capture(run_scenario, &s, &st);
	assert_non_null(strstr(out, "68 checks: 67 ok, 0 warning, 1 critical\n"));
	free(out);
}

static void
test_durations(void **state)
{
	(void)state;
	char b[40];
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 0), "0ms");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 999), "999ms");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 1000), "1.0s");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 12345), "12.3s");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 303000), "5m 3s");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 7199975), "1h 59m");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), -7200000), "2h 0m");
	assert_string_equal(coffer_checklist_duration(b, sizeof(b), 100800000), "1d 4h");
	assert_string_equal(coffer_check_status_name(COFFER_CHECK_WARNING), "warning");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_status_is_the_worst),
		cmocka_unit_test(test_text_one_line_each),
		cmocka_unit_test(test_json_escapes),
		cmocka_unit_test(test_past_the_cap_still_counts),
		cmocka_unit_test(test_durations),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
