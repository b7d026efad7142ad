#include "common/base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"

static const char *log_prog = "coffer";
static coffer_log_level log_min = COFFER_LOG_INFO;
static FILE *log_stream;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };

void
coffer_log_init(const char *prog, coffer_log_level min_level)
{
	log_prog = prog;
	log_min = min_level;
}

void
coffer_log_set_stream(FILE *stream)
{
	log_stream = stream;
}

int
coffer_log_level_parse(const char *text, coffer_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(text, log_level_names[i]) == 0) {
			*out = (coffer_log_level)i;
			return (0);
		}
	}
	return (COFFER_EINVAL);
}

const char *
coffer_log_quote(char *buf, size_t size, const char *value)
{
	bool bare = value[0] != '\0';
	for (const char *p = value; *p != '\0'; p++) {
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\') {
			bare = false;
			break;
		}
	}
	if (bare) {
		snprintf(buf, size, "%s", value);
		return (buf);
	}
	size_t n = 0;
	if (size < 3) {
		buf[0] = '\0';
		return (buf);
	}
	buf[n++] = '"';
	for (const char *p = value; *p != '\0' && n + 3 < size; p++) {
		char c = *p;
		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = c;
		} else if (c == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else if ((unsigned char)c < ' ') {
			buf[n++] = ' ';
		} else {
			buf[n++] = c;
		}
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return (buf);
}

void
coffer_log(coffer_log_level level, const char *msg, const char *fields, ...)
{
	if (level < log_min) {
		return;
	}
	char line[4096];
	char quoted[512];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
	    "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s prog=%s msg=%s", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	    log_level_names[level], log_prog, coffer_log_quote(quoted, sizeof(quoted), msg));
	if (fields != NULL && fields[0] != '\0' && n > 0 && (size_t)n < sizeof(line) - 2) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, fields);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fields, ap);
		va_end(ap);
		if (m > 0) {
			n += m;
		}
	}
	if (n < 0) {
		return;
	}
	if ((size_t)n > sizeof(line) - 2) {
		n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	FILE *out = log_stream != NULL ? log_stream : stderr;
	pthread_mutex_lock(&log_lock);
	fwrite(line, 1, (size_t)n, out);
	fflush(out);
	pthread_mutex_unlock(&log_lock);
}
