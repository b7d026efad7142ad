/*
 * A growing string with a ceiling: appends never fail one by one; the
 * first allocation failure (or going past max) marks the builder failed,
 * later appends do nothing, and the caller checks once at the end. So a
 * renderer reads as the text it writes, with one error path.
 *
 * Start from COFFER_STRBUF_INIT(max) (max 0: no ceiling beyond memory); the
 * text is always NUL-terminated once anything was appended ("" before).
 */
#ifndef COFFER_COMMON_BASE_STRBUF_H
#define COFFER_COMMON_BASE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct coffer_strbuf {
	char *buf;
	size_t len, cap;
	size_t max; /* bytes of text at most; 0: unbounded */
	bool failed;
} coffer_strbuf;

#define COFFER_STRBUF_INIT(limit)                                                \
	{                                                                        \
		.buf = NULL, .len = 0, .cap = 0, .max = (limit), .failed = false \
	}

void coffer_strbuf_putn(coffer_strbuf *b, const char *s, size_t n);
void coffer_strbuf_put(coffer_strbuf *b, const char *s);
void coffer_strbuf_putc(coffer_strbuf *b, char c);
void coffer_strbuf_printf(coffer_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The text so far ("" when empty); valid until the next append or free. */
const char *coffer_strbuf_text(const coffer_strbuf *b);

/* Hands the malloc'd text to the caller (NULL if failed or empty) and
 * resets b. */
char *coffer_strbuf_take(coffer_strbuf *b);

/* Empties b, keeping its memory and its ceiling; clears failed. */
void coffer_strbuf_reset(coffer_strbuf *b);

void coffer_strbuf_free(coffer_strbuf *b);

#endif
