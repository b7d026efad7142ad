/*
 * A check command's report; see common/base/checklist.h.
 *
 * JSON is written here by hand (common/base links no JSON library): four
 * string fields per object, escaped as RFC 8259 requires; every field is
 * cleaned to valid UTF-8 without control characters first.
 */
#include "common/base/checklist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/utf8.h"

static const char *const status_names[] = { "ok", "warning", "critical" };

const char *
coffer_check_status_name(coffer_check_status status)
{
	if ((unsigned)status > COFFER_CHECK_CRITICAL) {
		return ("critical");
	}
	return (status_names[status]);
}

void
coffer_checklist_init(coffer_checklist *cl, bool json)
{
	memset(cl, 0, sizeof(*cl));
	cl->json = json;
	cl->worst = COFFER_CHECK_OK;
}

/* Text from a check may hold what a server or a file said: one line, valid
 * UTF-8, so neither a terminal nor a JSON reader is confused by it. */
static void
clean_line(char *s, size_t size)
{
	char *c = coffer_utf8_clean(s, size - 1);
	if (c != NULL) {
		snprintf(s, size, "%s", c);
		free(c);
	}
}

void
coffer_checklist_add(coffer_checklist *cl, const char *name, coffer_check_status status,
    const char *fix, const char *fmt, ...)
{
	if ((unsigned)status > COFFER_CHECK_CRITICAL) {
		status = COFFER_CHECK_CRITICAL;
	}
	if (status > cl->worst) {
		cl->worst = status;
	}
	cl->counts[status]++;
	coffer_check_result spare;
	coffer_check_result *r = cl->n < COFFER_CHECKLIST_MAX ? &cl->results[cl->n++] : &spare;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->status = status;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
	va_end(ap);
	snprintf(r->fix, sizeof(r->fix), "%s", fix != NULL ? fix : "");
	clean_line(r->name, sizeof(r->name));
	clean_line(r->detail, sizeof(r->detail));
	clean_line(r->fix, sizeof(r->fix));
	if (!cl->json) {
		static const char *const words[] = { "OK", "WARNING", "CRITICAL" };
		printf("%-8s %-16s %s%s%s\n", words[status], r->name, r->detail,
		    r->fix[0] != '\0' ? "; fix: " : "", r->fix);
		fflush(stdout);
	}
}

char *
coffer_checklist_duration(char *buf, size_t size, long long ms)
{
	unsigned long long m =
	    ms < 0 ? (unsigned long long)0 - (unsigned long long)ms : (unsigned long long)ms;
	unsigned long long s = m / 1000;
	if (m < 1000) {
		snprintf(buf, size, "%llums", m);
	} else if (s < 60) {
		snprintf(buf, size, "%llu.%llus", s, (m % 1000) / 100);
	} else if (s < 3600) {
		snprintf(buf, size, "%llum %llus", s / 60, s % 60);
	} else if (s < 86400) {
		snprintf(buf, size, "%lluh %llum", s / 3600, (s % 3600) / 60);
	} else {
		snprintf(buf, size, "%llud %lluh", s / 86400, (s % 86400) / 3600);
	}
	return (buf);
}

static void
put_json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			putchar('\\');
			putchar(*p);
		} else if (*p < 0x20) {
			printf("\\u%04x", *p);
		} else {
			putchar(*p);
		}
	}
	putchar('"');
}

int
coffer_checklist_end(coffer_checklist *cl)
{
	if (cl->json) {
		putchar('[');
		for (size_t i = 0; i < cl->n; i++) {
			const coffer_check_result *r = &cl->results[i];
			fputs(i == 0 ? "{\"check\":" : ",{\"check\":", stdout);
			put_json_string(r->name);
			fputs(",\"status\":", stdout);
			put_json_string(coffer_check_status_name(r->status));
			fputs(",\"detail\":", stdout);
			put_json_string(r->detail);
			fputs(",\"fix\":", stdout);
			put_json_string(r->fix);
			putchar('}');
		}
		fputs("]\n", stdout);
	} else {
		printf("%zu checks: %zu ok, %zu warning, %zu critical\n",
		    cl->counts[0] + cl->counts[1] + cl->counts[2], cl->counts[0], cl->counts[1],
		    cl->counts[2]);
	}
	if (fflush(stdout) != 0 && cl->worst == COFFER_CHECK_OK) {
		return (1);
	}
	return ((int)cl->worst);
}
