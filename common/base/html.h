/*
 * HTML text: the one escape for text that goes into an HTML page, in
 * element content or in a quoted attribute value. Service and agent names,
 * alert summaries and legal-hold reasons reach the coordinator's status
 * page from operators and agents; a hold reason "<script>" must show as
 * those eight characters, never become an element.
 *
 * What it promises: & < > " ' become entities; every ASCII control
 * character but tab and newline, and every byte that is not part of a
 * valid UTF-8 sequence, becomes U+FFFD; the output is valid UTF-8 and
 * opens no tag, entity or attribute whatever the input.
 */
#ifndef COFFER_COMMON_BASE_HTML_H
#define COFFER_COMMON_BASE_HTML_H

#include <stddef.h>

#include "common/base/strbuf.h"

/* Appends text (NULL reads as "") to b, escaped as above. */
void coffer_html_escape(coffer_strbuf *b, const char *text);

/* The same for the first n bytes of text. */
void coffer_html_escape_n(coffer_strbuf *b, const char *text, size_t n);

#endif
