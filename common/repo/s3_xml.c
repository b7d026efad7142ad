/*
 * The S3 client's reader of the store's XML answers: <Error> documents,
 * ListObjectsV2 pages, InitiateMultipartUpload and CompleteMultipartUpload
 * results and the bucket's object lock configuration. It is the only file
 * of the client that parses XML, so one set of rules covers every answer.
 *
 * These bodies come from the network, so everything here refuses rather
 * than crashes or guesses: a document with a DOCTYPE is refused before
 * its DTD is read (no entity is ever declared, expanded or fetched);
 * libxml2 reads without network access; elements are matched by local name only (radosgw
 * omits the namespace AWS sends); every copy out is bounded by the caller's
 * buffer; and a page that cannot be trusted (an oversized or badly encoded
 * key, a size that is not a number, a truncated page without a token) fails
 * with a message instead of being half used. tests/fuzz/s3xml_fuzz.c holds
 * it to that.
 */
#include "common/repo/s3_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "common/base/clock.h"

/* ---- XML ---- */

static bool
xml_is(const xmlNode *n, const char *name)
{
	/* Local names only: radosgw omits the S3 namespace that AWS sends. */
	return (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0);
}

static void
xml_text(const xmlNode *n, char *out, size_t size)
{
	xmlChar *t = xmlNodeGetContent(n);
	snprintf(out, size, "%s", t != NULL ? (const char *)t : "");
	xmlFree(t);
}

/* The SAX hook libxml2 calls as soon as it has read "<!DOCTYPE name ...",
 * before the internal subset's declarations: the parse stops there, so no
 * entity of a hostile document is ever declared, let alone expanded. */
static void
xml_refuse_doctype(
    void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
	(void)name;
	(void)external_id;
	(void)system_id;
	xmlParserCtxtPtr ctxt = ctx;
	*(bool *)ctxt->_private = true;
	xmlStopParser(ctxt);
}

/* body as a document, or NULL for one that is not XML or that declares a
 * DTD (*doctype then says so). S3 never sends a DOCTYPE, and a DTD is the
 * only way to entity expansion ("billion laughs") and external entities,
 * so any DOCTYPE is refused outright rather than parsed carefully. NONET,
 * and neither NOENT nor DTDLOAD nor DTDATTR: nothing is fetched, expanded
 * or defaulted even if the hook were bypassed. No HUGE: libxml2's own
 * limits on depth and text sizes stay on. */
static xmlDoc *
xml_parse(const char *body, size_t len, bool *doctype)
{
	*doctype = false;
	if (body == NULL || len == 0 || len > INT32_MAX) {
		return (NULL);
	}
	xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
	if (ctxt == NULL) {
		return (NULL);
	}
	ctxt->sax->internalSubset = xml_refuse_doctype;
	ctxt->_private = doctype;
	xmlDoc *doc = xmlCtxtReadMemory(ctxt, body, (int)len, "s3.xml", NULL,
	    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (*doctype || (doc != NULL && (doc->intSubset != NULL || doc->extSubset != NULL))) {
		*doctype = true;
		xmlFreeDoc(doc);
		doc = NULL;
	}
	xmlFreeParserCtxt(ctxt);
	return (doc);
}

static xmlDoc *
xml_read(const char *body, size_t len)
{
	bool doctype = false;
	return (xml_parse(body, len, &doctype));
}

bool
s3_xml_doctype(const char *body, size_t len)
{
	bool doctype = false;
	xmlDoc *doc = xml_parse(body, len, &doctype);
	xmlFreeDoc(doc);
	return (doctype);
}

int
coffer_s3_error_parse(
    const char *body, size_t len, char *code, size_t code_size, char *message, size_t message_size)
{
	if (code_size > 0) {
		code[0] = '\0';
	}
	if (message_size > 0) {
		message[0] = '\0';
	}
	xmlDoc *doc = xml_read(body, len);
	if (doc == NULL) {
		return (0);
	}
	xmlNode *root = xmlDocGetRootElement(doc);
	int found = 0;
	if (root != NULL && xml_is(root, "Error")) {
		found = 1;
		for (xmlNode *c = root->children; c != NULL; c = c->next) {
			if (xml_is(c, "Code")) {
				xml_text(c, code, code_size);
			} else if (xml_is(c, "Message")) {
				xml_text(c, message, message_size);
			}
		}
	}
	xmlFreeDoc(doc);
	return (found);
}

int64_t
s3_iso_ms(const char *text)
{
	int64_t ms = 0;
	return (coffer_time_parse(text, &ms) == 0 ? ms : 0);
}

/* Undoes encoding-type=url in place: %XX, and '+' for a space (S3 encodes
 * list keys as form data). Returns false on a malformed escape or a NUL. */
static bool
url_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r != '\0'; r++) {
		if (*r == '+') {
			*w++ = ' ';
		} else if (*r == '%') {
			if (!isxdigit((unsigned char)r[1]) || !isxdigit((unsigned char)r[2])) {
				return (false);
			}
			char hx[3] = { r[1], r[2], '\0' };
			char c = (char)strtol(hx, NULL, 16);
			if (c == '\0') {
				return (false);
			}
			*w++ = c;
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return (true);
}

int
coffer_s3_list_parse(const char *body, size_t len, coffer_s3_list_cb cb, void *arg, int *truncated,
    char *token, size_t token_size, coffer_err *err)
{
	*truncated = 0;
	if (token_size > 0) {
		token[0] = '\0';
	}
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !xml_is(root, "ListBucketResult")) {
		xmlFreeDoc(doc);
		coffer_err_set(err, COFFER_EPROTO,
		    "s3 list response is not a ListBucketResult "
		    "document");
		coffer_err_hint(err,
		    "check that endpoint points at an S3 API, not a web site or "
		    "proxy page");
		return (COFFER_EPROTO);
	}
	int rc = 0;
	/* S3 keys are at most 1024 bytes; url-encoded, three times that. */
	char key[3 * 1024 + 8];
	char num[32];
	char when[64];
	/* The token and flag come after the keys in the document; read them
	 * first so a callback that stops early still leaves them set. */
	bool url = false;
	for (xmlNode *c = root->children; c != NULL; c = c->next) {
		if (xml_is(c, "EncodingType")) {
			xml_text(c, num, sizeof(num));
			url = strcmp(num, "url") == 0;
		} else if (xml_is(c, "IsTruncated")) {
			xml_text(c, num, sizeof(num));
			*truncated = strcmp(num, "true") == 0;
		} else if (xml_is(c, "NextContinuationToken")) {
			xmlChar *t = xmlNodeGetContent(c);
			size_t n = t != NULL ? strlen((const char *)t) : 0;
			if (n >= token_size) {
				rc = coffer_err_set(err, COFFER_EPROTO,
				    "s3 continuation token of %zu "
				    "bytes is longer than %zu",
				    n, token_size - 1);
			} else {
				snprintf(token, token_size, "%s", t != NULL ? (const char *)t : "");
			}
			xmlFree(t);
		}
	}
	for (xmlNode *c = root->children; c != NULL && rc == 0; c = c->next) {
		if (!xml_is(c, "Contents")) {
			continue;
		}
		key[0] = '\0';
		num[0] = '\0';
		when[0] = '\0';
		bool have_key = false;
		for (xmlNode *f = c->children; f != NULL; f = f->next) {
			if (xml_is(f, "Key")) {
				xmlChar *t = xmlNodeGetContent(f);
				size_t n = t != NULL ? strlen((const char *)t) : 0;
				if (n < sizeof(key)) {
					memcpy(key, t != NULL ? (const char *)t : "", n + 1);
					have_key = true;
				} else {
					rc = coffer_err_set(err, COFFER_EPROTO,
					    "s3 list response has a key "
					    "of %zu bytes",
					    n);
				}
				xmlFree(t);
			} else if (xml_is(f, "Size")) {
				xml_text(f, num, sizeof(num));
			} else if (xml_is(f, "LastModified")) {
				xml_text(f, when, sizeof(when));
			}
		}
		if (rc != 0) {
			break;
		}
		if (url && have_key && !url_decode(key)) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 list response has a badly "
			    "url-encoded key \"%.200s\"",
			    key);
			break;
		}
		if (!have_key || key[0] == '\0') {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 list response has an entry "
			    "without a key");
			break;
		}
		char *end = NULL;
		errno = 0;
		unsigned long long size = strtoull(num, &end, 10);
		if (num[0] == '\0' || *end != '\0' || errno != 0) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 list response gives object "
			    "%.200s the size \"%.30s\"",
			    key, num);
			break;
		}
		rc = cb(key, (uint64_t)size, s3_iso_ms(when), arg);
	}
	if (rc == 0 && *truncated && (token_size == 0 || token[0] == '\0')) {
		rc = coffer_err_set(err, COFFER_EPROTO,
		    "s3 list response is truncated but has "
		    "no NextContinuationToken");
	}
	xmlFreeDoc(doc);
	return (rc);
}

/* ---- the answers the upload and object calls read ---- */

void
s3_initiate_parse(const char *body, size_t len, char *id, size_t id_size)
{
	if (id_size > 0) {
		id[0] = '\0';
	}
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	for (xmlNode *c = root != NULL ? root->children : NULL; c != NULL; c = c->next) {
		if (xml_is(c, "UploadId")) {
			xml_text(c, id, id_size);
		}
	}
	xmlFreeDoc(doc);
}

bool
s3_complete_parse(const char *body, size_t len, char *etag, size_t etag_size)
{
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	bool ok = root != NULL && xml_is(root, "CompleteMultipartUploadResult");
	for (xmlNode *c = root != NULL ? root->children : NULL; c != NULL; c = c->next) {
		if (xml_is(c, "ETag")) {
			xml_text(c, etag, etag_size);
		}
	}
	xmlFreeDoc(doc);
	return (ok);
}

bool
s3_lock_config_parse(const char *body, size_t len, coffer_s3_lock_config *out)
{
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !xml_is(root, "ObjectLockConfiguration")) {
		xmlFreeDoc(doc);
		return (false);
	}
	char t[32];
	for (xmlNode *c = root->children; c != NULL; c = c->next) {
		if (xml_is(c, "ObjectLockEnabled")) {
			xml_text(c, t, sizeof(t));
			out->enabled = strcmp(t, "Enabled") == 0;
		} else if (xml_is(c, "Rule")) {
			for (xmlNode *dr = c->children; dr != NULL; dr = dr->next) {
				if (!xml_is(dr, "DefaultRetention")) {
					continue;
				}
				for (xmlNode *f = dr->children; f != NULL; f = f->next) {
					xml_text(f, t, sizeof(t));
					if (xml_is(f, "Mode")) {
						snprintf(out->mode, sizeof(out->mode), "%.15s", t);
					} else if (xml_is(f, "Days")) {
						out->days = (unsigned)strtoul(t, NULL, 10);
					} else if (xml_is(f, "Years")) {
						out->years = (unsigned)strtoul(t, NULL, 10);
					}
				}
			}
		}
	}
	xmlFreeDoc(doc);
	return (true);
}

bool
s3_versioning_parse(const char *body, size_t len, coffer_s3_versioning *out)
{
	*out = COFFER_S3_VERSIONING_OFF;
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !xml_is(root, "VersioningConfiguration")) {
		xmlFreeDoc(doc);
		return (false);
	}
	char t[32];
	for (xmlNode *c = root->children; c != NULL; c = c->next) {
		if (xml_is(c, "Status")) {
			xml_text(c, t, sizeof(t));
			*out = strcmp(t, "Enabled") == 0  ? COFFER_S3_VERSIONING_ENABLED
			    : strcmp(t, "Suspended") == 0 ? COFFER_S3_VERSIONING_SUSPENDED
			                                  : COFFER_S3_VERSIONING_OFF;
		}
	}
	xmlFreeDoc(doc);
	return (true);
}

bool
s3_versions_parse(const char *body, size_t len, const char *key, coffer_s3_version *out, size_t max,
    size_t *n, int *truncated, char *next_key, size_t next_key_size, char *next_version,
    size_t next_version_size)
{
	*truncated = 0;
	next_key[0] = '\0';
	next_version[0] = '\0';
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !xml_is(root, "ListVersionsResult")) {
		xmlFreeDoc(doc);
		return (false);
	}
	bool ok = true;
	char t[COFFER_S3_VERSION_ID_MAX + 8];
	for (xmlNode *c = root->children; c != NULL && ok; c = c->next) {
		if (xml_is(c, "IsTruncated")) {
			xml_text(c, t, sizeof(t));
			*truncated = strcmp(t, "true") == 0;
		} else if (xml_is(c, "NextKeyMarker")) {
			xml_text(c, next_key, next_key_size);
			ok = url_decode(next_key);
		} else if (xml_is(c, "NextVersionIdMarker")) {
			xml_text(c, next_version, next_version_size);
		} else if (xml_is(c, "Version") || xml_is(c, "DeleteMarker")) {
			coffer_s3_version v;
			memset(&v, 0, sizeof(v));
			v.delete_marker = xml_is(c, "DeleteMarker");
			char k[2048] = "";
			for (xmlNode *f = c->children; f != NULL; f = f->next) {
				if (xml_is(f, "Key")) {
					xml_text(f, k, sizeof(k));
				} else if (xml_is(f, "VersionId")) {
					xml_text(f, v.version_id, sizeof(v.version_id));
				} else if (xml_is(f, "IsLatest")) {
					xml_text(f, t, sizeof(t));
					v.is_latest = strcmp(t, "true") == 0;
				} else if (xml_is(f, "LastModified")) {
					xml_text(f, t, sizeof(t));
					v.mtime_ms = s3_iso_ms(t);
				} else if (xml_is(f, "Size")) {
					xml_text(f, t, sizeof(t));
					v.size = strtoull(t, NULL, 10);
				}
			}
			if (!url_decode(k)) {
				ok = false;
			} else if (strcmp(k, key) == 0) {
				if (*n < max) {
					out[*n] = v;
				}
				(*n)++;
			}
		}
	}
	xmlFreeDoc(doc);
	return (ok);
}
