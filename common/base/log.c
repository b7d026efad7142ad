#include "common/base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/utf8.h"

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

/* One byte of a value inside quotes: \" \\ \n \r \t, \xNN for any other
 * control byte and for a byte that is not part of valid UTF-8, itself
 * otherwise. Returns how many input bytes it consumed (a whole UTF-8
 * sequence is copied at once); writes nothing past end. */
static size_t
log_escape_one(char **out, const char *end, const unsigned char *p, size_t avail)
{
	char tmp[8];
	size_t len = 0, used = 1;
	unsigned char c = p[0];
	if (c == '"' || c == '\\') {
		tmp[len++] = '\\';
		tmp[len++] = (char)c;
	} else if (c == '\n' || c == '\r' || c == '\t') {
		tmp[len++] = '\\';
		tmp[len++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
	} else if (c < 0x20 || c == 0x7f) {
		len = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
	} else if (c < 0x80) {
		tmp[len++] = (char)c;
	} else {
		size_t seq = coffer_utf8_seq_len(p, avail);
		if (seq == 0) {
			len = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
		} else {
			memcpy(tmp, p, seq);
			len = seq;
			used = seq;
		}
	}
	if ((size_t)(end - *out) < len) {
		return (0);
	}
	memcpy(*out, tmp, len);
	*out += len;
	return (used);
}

/* Does value (n bytes) need quotes to stay one logfmt value? */
static bool
log_needs_quotes(const char *value, size_t n)
{
	if (n == 0) {
		return (true);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
			return (true);
		}
		if (c >= 0x80) {
			size_t seq = coffer_utf8_seq_len((const unsigned char *)value + i, n - i);
			if (seq == 0) {
				return (true);
			}
			i += seq - 1;
		}
	}
	return (false);
}

/* Appends n bytes of value at *out (up to end), escaped for the inside of a
 * quoted value, and with the quotes around it when quote is set. */
static void
log_put_value(char **out, const char *end, const char *value, size_t n, bool quote)
{
	if (quote && *out < end) {
		*(*out)++ = '"';
	}
	const unsigned char *p = (const unsigned char *)value;
	size_t i = 0;
	/* Leave room for the closing quote. */
	const char *stop = quote ? end - 1 : end;
	while (i < n) {
		size_t used = log_escape_one(out, stop, p + i, n - i);
		if (used == 0) {
			break;
		}
		i += used;
	}
	if (quote && *out < end) {
		*(*out)++ = '"';
	}
}

const char *
coffer_log_quote(char *buf, size_t size, const char *value)
{
	if (size == 0) {
		return (buf);
	}
	size_t n = strlen(value);
	char *out = buf;
	log_put_value(&out, buf + size - 1, value, n, log_needs_quotes(value, n));
	*out = '\0';
	return (buf);
}

/* The length modifier and conversion of one printf directive, enough to
 * take its argument off ap with the right type. */
typedef enum log_arg {
	LOG_ARG_INT,
	LOG_ARG_LONG,
	LOG_ARG_LLONG,
	LOG_ARG_SIZE,
	LOG_ARG_INTMAX,
	LOG_ARG_PTRDIFF,
	LOG_ARG_DOUBLE,
	LOG_ARG_LDOUBLE,
	LOG_ARG_PTR,
	LOG_ARG_STR,
	LOG_ARG_NONE, /* %% */
} log_arg;

/* Formats fields into [*out, end): every %s argument is a value and is
 * escaped where it lands. After "key=" it becomes a whole logfmt value
 * (quoted when it has to be); inside a quoted value the format opened
 * ("error=\"%s\"") its quotes, backslashes, newlines, control bytes and
 * invalid UTF-8 are escaped. Numbers need neither. So no argument, whatever
 * it holds, can end a value early, start a field or break the line. */
static void
log_format_fields(char **out, const char *end, const char *fmt, va_list ap)
{
	bool in_quotes = false;
	const char *f = fmt;
	while (*f != '\0' && *out < end) {
		if (*f != '%') {
			if (*f == '"' && (f == fmt || f[-1] != '\\')) {
				in_quotes = !in_quotes;
			}
			*(*out)++ = *f++;
			continue;
		}
		const char *spec = f++;
		bool star_width = false, star_prec = false, zero_pad = false;
		int precision = -1, width = 0;
		while (*f != '\0' && strchr("-+ #0", *f) != NULL) {
			zero_pad = zero_pad || *f == '0';
			f++;
		}
		if (*f == '*') {
			star_width = true;
			f++;
		}
		while (*f >= '0' && *f <= '9') {
			width = width * 10 + (*f++ - '0');
		}
		if (*f == '.') {
			f++;
			if (*f == '*') {
				star_prec = true;
				f++;
			} else {
				precision = 0;
				while (*f >= '0' && *f <= '9') {
					precision = precision * 10 + (*f++ - '0');
				}
			}
		}
		log_arg kind = LOG_ARG_INT;
		if (f[0] == 'h') {
			f += f[1] == 'h' ? 2 : 1;
		} else if (f[0] == 'l' && f[1] == 'l') {
			kind = LOG_ARG_LLONG;
			f += 2;
		} else if (f[0] == 'l') {
			kind = LOG_ARG_LONG;
			f++;
		} else if (f[0] == 'z') {
			kind = LOG_ARG_SIZE;
			f++;
		} else if (f[0] == 'j') {
			kind = LOG_ARG_INTMAX;
			f++;
		} else if (f[0] == 't') {
			kind = LOG_ARG_PTRDIFF;
			f++;
		} else if (f[0] == 'L') {
			kind = LOG_ARG_LDOUBLE;
			f++;
		}
		char conv = *f;
		if (conv == '\0') {
			break;
		}
		f++;
		if (strchr("eEfFgGaA", conv) != NULL) {
			kind = kind == LOG_ARG_LDOUBLE ? LOG_ARG_LDOUBLE : LOG_ARG_DOUBLE;
		} else if (conv == 's') {
			kind = LOG_ARG_STR;
		} else if (conv == 'p') {
			kind = LOG_ARG_PTR;
		} else if (conv == '%') {
			kind = LOG_ARG_NONE;
		}
		if (star_width) {
			width = va_arg(ap, int);
		}
		if (star_prec) {
			precision = va_arg(ap, int);
		}
		if (kind == LOG_ARG_STR) {
			const char *v = va_arg(ap, const char *);
			if (v == NULL) {
				v = "-";
			}
			size_t n = strlen(v);
			if (precision >= 0 && (size_t)precision < n) {
				n = (size_t)precision;
			}
			bool value_start = spec > fmt && spec[-1] == '=' && !in_quotes;
			log_put_value(out, end, v, n, value_start && log_needs_quotes(v, n));
			continue;
		}
		/* Everything else goes through printf with a literal format: the
		 * argument widened to intmax_t, uintmax_t or long double by its
		 * length modifier, its width and precision kept. */
		char num[128];
		int m = 0;
		if (kind == LOG_ARG_NONE) {
			m = snprintf(num, sizeof(num), "%%");
		} else if (kind == LOG_ARG_PTR) {
			m = snprintf(num, sizeof(num), "%p", va_arg(ap, void *));
		} else if (kind == LOG_ARG_DOUBLE || kind == LOG_ARG_LDOUBLE) {
			long double d = kind == LOG_ARG_DOUBLE ? (long double)va_arg(ap, double)
			                                       : va_arg(ap, long double);
			int prec = precision >= 0 ? precision : 6;
			if (conv == 'g' || conv == 'G') {
				m = snprintf(num, sizeof(num), "%*.*Lg", width, prec, d);
			} else if (conv == 'e' || conv == 'E') {
				m = snprintf(num, sizeof(num), "%*.*Le", width, prec, d);
			} else {
				m = snprintf(num, sizeof(num), "%*.*Lf", width, prec, d);
			}
		} else if (conv == 'd' || conv == 'i') {
			intmax_t v = kind == LOG_ARG_LONG ? va_arg(ap, long)
			    : kind == LOG_ARG_LLONG       ? va_arg(ap, long long)
			    : kind == LOG_ARG_SIZE        ? (intmax_t)va_arg(ap, size_t)
			    : kind == LOG_ARG_INTMAX      ? va_arg(ap, intmax_t)
			    : kind == LOG_ARG_PTRDIFF     ? va_arg(ap, ptrdiff_t)
			                                  : va_arg(ap, int);
			m = snprintf(num, sizeof(num), zero_pad ? "%0*jd" : "%*jd", width, v);
		} else if (conv == 'c') {
			m = snprintf(num, sizeof(num), "%c", va_arg(ap, int));
		} else {
			uintmax_t v = kind == LOG_ARG_LONG ? va_arg(ap, unsigned long)
			    : kind == LOG_ARG_LLONG        ? va_arg(ap, unsigned long long)
			    : kind == LOG_ARG_SIZE         ? va_arg(ap, size_t)
			    : kind == LOG_ARG_INTMAX       ? va_arg(ap, uintmax_t)
			    : kind == LOG_ARG_PTRDIFF      ? (uintmax_t)va_arg(ap, ptrdiff_t)
			                                   : va_arg(ap, unsigned int);
			if (conv == 'x') {
				m = snprintf(
				    num, sizeof(num), zero_pad ? "%0*jx" : "%*jx", width, v);
			} else if (conv == 'X') {
				m = snprintf(
				    num, sizeof(num), zero_pad ? "%0*jX" : "%*jX", width, v);
			} else if (conv == 'o') {
				m = snprintf(
				    num, sizeof(num), zero_pad ? "%0*jo" : "%*jo", width, v);
			} else {
				m = snprintf(
				    num, sizeof(num), zero_pad ? "%0*ju" : "%*ju", width, v);
			}
		}
		if (m < 0) {
			continue;
		}
		size_t len = (size_t)m < sizeof(num) ? (size_t)m : sizeof(num) - 1;
		/* A %c or a wide number never holds a quote or newline worth
		 * keeping: escape it like text all the same. */
		log_put_value(out, end, num, len, false);
	}
}

/* A record cut at the end of its buffer still parses: close a quoted value
 * left open and give a bare "key=" an empty value. Needs 2 bytes at *out. */
static void
log_close_quotes(const char *start, char **out)
{
	bool in_quotes = false;
	for (const char *p = start; p < *out; p++) {
		if (in_quotes && *p == '\\') {
			p++;
		} else if (*p == '"') {
			in_quotes = !in_quotes;
		}
	}
	if (in_quotes) {
		*(*out)++ = '"';
	} else if (*out > start && (*out)[-1] == '=') {
		*(*out)++ = '"';
		*(*out)++ = '"';
	}
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
	if (n < 0) {
		return;
	}
	if ((size_t)n > sizeof(line) - 4) {
		n = (int)sizeof(line) - 4;
	}
	char *out = line + n;
	/* Three bytes kept back: the newline, and what a cut record needs to
	 * close its last value. */
	const char *end = line + sizeof(line) - 3;
	if (fields != NULL && fields[0] != '\0' && out < end) {
		*out++ = ' ';
		va_list ap;
		va_start(ap, fields);
		log_format_fields(&out, end, fields, ap);
		va_end(ap);
		log_close_quotes(line + n, &out);
	}
	*out++ = '\n';
	FILE *stream = log_stream != NULL ? log_stream : stderr;
	pthread_mutex_lock(&log_lock);
	fwrite(line, 1, (size_t)(out - line), stream);
	fflush(stream);
	pthread_mutex_unlock(&log_lock);
}
