/*
 * HTML escaping. See common/base/html.h.
 *
 * Why U+FFFD for control characters and broken UTF-8 rather than dropping
 * them: the reader sees that something was there (a hold reason with a
 * stray byte is not silently a different reason), and the page stays
 * valid UTF-8, which the browser is told it is.
 */
#include "common/base/html.h"

#include <string.h>

#include "common/base/utf8.h"

#define REPLACEMENT "\xef\xbf\xbd"

void
coffer_html_escape_n(coffer_strbuf *b, const char *text, size_t n)
{
	if (text == NULL) {
		return;
	}
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		const char *rep = NULL;
		switch (c) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			break;
		}
		if (rep != NULL) {
			coffer_strbuf_put(b, rep);
			i++;
			continue;
		}
		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f) {
				coffer_strbuf_put(b, REPLACEMENT);
			} else {
				coffer_strbuf_putc(b, (char)c);
			}
			i++;
			continue;
		}
		size_t len = coffer_utf8_seq_len(s + i, n - i);
		if (len == 0) {
			coffer_strbuf_put(b, REPLACEMENT);
			i++;
			continue;
		}
		coffer_strbuf_putn(b, text + i, len);
		i += len;
	}
}

void
coffer_html_escape(coffer_strbuf *b, const char *text)
{
	if (text != NULL) {
		coffer_html_escape_n(b, text, strlen(text));
	}
}
