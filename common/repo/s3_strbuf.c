/*
 * Growing strings for the S3 client: request paths and URLs, canonical
 * requests, header lines, and the small XML documents we send.
 *
 * Why a builder that remembers failure instead of returning it: a request
 * is assembled from dozens of appends, and checking each one would bury the
 * assembly. An allocation failure sets oom, later appends do nothing, and
 * the caller checks once at the end; s3_sb_printf marks oom too rather than
 * truncate, so a string that did not fit is never sent cut short.
 *
 * The encoders are the ones S3 needs: URI encoding exactly as SigV4
 * canonicalises it, so the URL we send and the path we sign agree byte for
 * byte, and XML escaping for the ETags we echo back to the store.
 */
#include "common/repo/s3_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- growing strings (bounded by their inputs, which are bounded) ---- */

void
s3_sb_putn(struct s3_sb *b, const char *s, size_t n)
{
	if (b->oom) {
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 256;
		while (cap < b->len + n + 1) {
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
s3_sb_put(struct s3_sb *b, const char *s)
{
	s3_sb_putn(b, s, strlen(s));
}

void
s3_sb_printf(struct s3_sb *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = true;
		return;
	}
	s3_sb_putn(b, tmp, (size_t)n);
}

void
s3_sb_free(struct s3_sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* RFC 3986 encoding as SigV4 wants it: unreserved kept, '/' kept only when
 * asked (paths), everything else %XX with upper-case hex. */
void
s3_sb_uri_encode(struct s3_sb *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
		    (keep_slash && *p == '/')) {
			s3_sb_putn(b, (const char *)p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			s3_sb_putn(b, e, 3);
		}
	}
}

void
s3_sb_xml_escape(struct s3_sb *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			s3_sb_put(b, "&amp;");
			break;
		case '<':
			s3_sb_put(b, "&lt;");
			break;
		case '>':
			s3_sb_put(b, "&gt;");
			break;
		case '"':
			s3_sb_put(b, "&quot;");
			break;
		default:
			s3_sb_putn(b, s, 1);
			break;
		}
	}
}
