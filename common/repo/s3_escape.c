/*
 * The encodings the S3 client needs, appended to a coffer_strbuf (request
 * paths and URLs, canonical requests, header lines and the small XML
 * documents we send are all built there, checked once at the end): URI encoding exactly as SigV4
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

/* RFC 3986 encoding as SigV4 wants it: unreserved kept, '/' kept only when
 * asked (paths), everything else %XX with upper-case hex. */
void
s3_uri_encode(coffer_strbuf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
		    (keep_slash && *p == '/')) {
			coffer_strbuf_putn(b, (const char *)p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			coffer_strbuf_putn(b, e, 3);
		}
	}
}

void
s3_xml_escape(coffer_strbuf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			coffer_strbuf_put(b, "&amp;");
			break;
		case '<':
			coffer_strbuf_put(b, "&lt;");
			break;
		case '>':
			coffer_strbuf_put(b, "&gt;");
			break;
		case '"':
			coffer_strbuf_put(b, "&quot;");
			break;
		default:
			coffer_strbuf_putn(b, s, 1);
			break;
		}
	}
}
