/* UTF-8: see utf8.h. */
#include "common/base/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int
continuation(unsigned char c)
{
	return ((c & 0xc0) == 0x80);
}

size_t
coffer_utf8_seq_len(const unsigned char *s, size_t n)
{
	if (n == 0) {
		return (0);
	}
	unsigned char c = s[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80) {
		return (1);
	} else if ((c & 0xe0) == 0xc0) {
		len = 2;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		cp = c & 0x07;
	} else {
		return (0);
	}
	if (len > n) {
		return (0);
	}
	for (size_t i = 1; i < len; i++) {
		if (!continuation(s[i])) {
			return (0);
		}
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past Unicode are invalid. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
		return (0);
	}
	return (len);
}

char *
coffer_utf8_clean(const char *in, size_t max)
{
	if (in == NULL) {
		in = "";
	}
	size_t n = strnlen(in, max);
	char *out = malloc(n + 1);
	if (out == NULL) {
		return (NULL);
	}
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t l = coffer_utf8_seq_len(s + i, n - i);
		if (l == 0 || (l == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return (out);
}

void
coffer_utf8_printable_ascii(char *out, size_t size, const char *in)
{
	if (size == 0) {
		return;
	}
	size_t o = 0;
	for (const char *p = in != NULL ? in : ""; *p != '\0' && o + 1 < size; p++) {
		unsigned char c = (unsigned char)*p;
		out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[o] = '\0';
}

void
coffer_utf8_cut(char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n <= max) {
		return;
	}
	n = max;
	while (n > 0 && continuation((unsigned char)s[n])) {
		n--;
	}
	s[n] = '\0';
}

size_t
coffer_utf8_boundary_after(const char *s, size_t len, size_t pos)
{
	while (pos < len && continuation((unsigned char)s[pos])) {
		pos++;
	}
	return (pos);
}
