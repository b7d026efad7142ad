/* A growing string: see strbuf.h. */
#include "common/base/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL. */
static bool
reserve(coffer_strbuf *b, size_t n)
{
	if (b->failed) {
		return (false);
	}
	if ((b->max != 0 && n > b->max - b->len) || n > ((size_t)-1) / 2 - b->len) {
		b->failed = true;
		return (false);
	}
	if (b->len + n + 1 <= b->cap) {
		return (true);
	}
	size_t cap = b->cap != 0 ? b->cap : 256;
	while (cap < b->len + n + 1) {
		cap *= 2;
	}
	char *p = realloc(b->buf, cap);
	if (p == NULL) {
		b->failed = true;
		return (false);
	}
	b->buf = p;
	b->cap = cap;
	return (true);
}

void
coffer_strbuf_putn(coffer_strbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n)) {
		return;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

void
coffer_strbuf_put(coffer_strbuf *b, const char *s)
{
	coffer_strbuf_putn(b, s, strlen(s));
}

void
coffer_strbuf_putc(coffer_strbuf *b, char c)
{
	coffer_strbuf_putn(b, &c, 1);
}

void
coffer_strbuf_printf(coffer_strbuf *b, const char *fmt, ...)
{
	if (b->failed) {
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, (size_t)n)) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *
coffer_strbuf_text(const coffer_strbuf *b)
{
	return (b->buf != NULL ? b->buf : "");
}

char *
coffer_strbuf_take(coffer_strbuf *b)
{
	char *text = b->failed ? NULL : b->buf;
	if (b->failed) {
		free(b->buf);
	}
	size_t max = b->max;
	*b = (coffer_strbuf)COFFER_STRBUF_INIT(max);
	return (text);
}

void
coffer_strbuf_reset(coffer_strbuf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->buf != NULL) {
		b->buf[0] = '\0';
	}
}

void
coffer_strbuf_free(coffer_strbuf *b)
{
	free(b->buf);
	size_t max = b->max;
	*b = (coffer_strbuf)COFFER_STRBUF_INIT(max);
}
