/*
 * UTF-8 for text that crosses a trust boundary or a size limit: messages
 * from agents and drill runners, a child's stderr, alert summaries. The
 * catalog stores such text in jsonb and text columns, which refuse invalid
 * UTF-8 (and jsonb refuses NUL), and PagerDuty bounds a summary in bytes: a
 * cut in the middle of a character would make a valid value invalid.
 */
#ifndef COFFER_COMMON_BASE_UTF8_H
#define COFFER_COMMON_BASE_UTF8_H

#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence at s, n bytes available, or 0
 * for an invalid one: a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate, or a value past U+10FFFF. */
size_t coffer_utf8_seq_len(const unsigned char *s, size_t n);

/* A malloc'd copy of at most max bytes of in (NULL reads as ""), valid
 * UTF-8, with every invalid byte and every ASCII control character
 * (including tab and newline) replaced by '?'. NULL on out of memory. */
char *coffer_utf8_clean(const char *in, size_t max);

/* Copies in (NULL reads as "") into out (size bytes, NUL-terminated, cut
 * to fit) as printable ASCII: every byte outside 0x20..0x7e becomes '?'.
 * For names that go into log keys and refusal rows before they are known
 * to be valid. */
void coffer_utf8_printable_ascii(char *out, size_t size, const char *in);

/* Cuts s in place to at most max bytes without splitting a character. */
void coffer_utf8_cut(char *s, size_t max);

/* The first character boundary at or after pos in s (len bytes), so a
 * tail s + result starts on a whole character. */
size_t coffer_utf8_boundary_after(const char *s, size_t len, size_t pos);

#endif
