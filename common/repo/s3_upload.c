/*
 * Streaming uploads for the S3 client: an object that fits in one part is
 * one PUT; a larger one is a multipart upload, created when the first part
 * is full, one UploadPart per part, published by CompleteMultipartUpload.
 *
 * What it promises: the memory an upload holds is one part buffer, whatever
 * the object's size. Nothing is visible before commit, and a failed or
 * abandoned upload is aborted, so no partial object is ever listed. Each
 * part's SHA-256 is sent with the part and again in the complete request,
 * so the store assembles exactly the parts we hashed.
 *
 * Existence checks for "no overwrite": a single PUT carries
 * "If-None-Match: *", so the store refuses it atomically; for a multipart
 * upload we HEAD the key before CompleteMultipartUpload (stores differ on
 * conditional completes), which leaves a window between HEAD and complete
 * that only two writers of the same key could hit; Coffer's keys carry
 * unique backup ids, so that never happens by design. A 403 on such a HEAD
 * means write-only credentials: the check is then skipped, not failed.
 */
#include "common/repo/s3_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/log.h"

enum up_state {
	UP_OPEN,
	UP_COMMITTED,
	UP_ABORTED
};

struct up_part {
	char etag[COFFER_S3_ETAG_MAX];
	char sum[48];
};

struct coffer_s3_upload {
	coffer_s3 *s3;
	char *key;
	char lock_mode[16];
	int64_t lock_until_ms;
	int legal_hold;
	int overwrite;
	uint8_t *buf;
	size_t used;
	char *upload_id;
	struct up_part *parts;
	unsigned nparts;
	unsigned cap;
	enum up_state state;
	bool failed;
};

/* Headers every new object carries: its lock, and ownership for the
 * bucket's owner. S3 makes the writer the owner of an object; an agent (or
 * the coordinator's DR user) writes into a bucket another account owns, and
 * without bucket-owner-full-control that owner -- the coordinator's
 * retention, the DR account -- could not read or manage it. */
static void
up_lock_headers(const coffer_s3_upload *up, struct s3_req *r, char until[32])
{
	s3_req_header(r, "x-amz-acl", "bucket-owner-full-control");
	if (up->lock_mode[0] != '\0') {
		s3_iso_format(up->lock_until_ms, until);
		s3_req_header(r, "x-amz-object-lock-mode", up->lock_mode);
		s3_req_header(r, "x-amz-object-lock-retain-until-date", until);
	}
	if (up->legal_hold) {
		s3_req_header(r, "x-amz-object-lock-legal-hold", "ON");
	}
}

/* HEAD before publishing: 1 if the key exists, 0 if not or if these
 * credentials may not look (write-only), < 0 on other errors. */
static int
up_exists(coffer_s3_upload *up, coffer_err *err)
{
	coffer_err e = { 0 };
	int rc = coffer_s3_head(up->s3, up->key, NULL, NULL, &e);
	if (rc == 0) {
		coffer_err_set(err, COFFER_EEXIST, "s3 object %.300s exists already", up->key);
		coffer_err_hint(err, "repository objects are never replaced; pick a new key");
		return (1);
	}
	if (rc == COFFER_ENOENT || rc == COFFER_EPERM) {
		return (0);
	}
	if (err != NULL) {
		*err = e;
	}
	return (rc);
}

int
coffer_s3_upload_begin(coffer_s3 *s3, const char *key, const coffer_s3_put_opts *opts,
    coffer_s3_upload **out, coffer_err *err)
{
	*out = NULL;
	if (key == NULL || key[0] == '\0' || strlen(key) > 1024) {
		return (coffer_err_set(err, COFFER_EINVAL, "s3 object key must be 1..1024 bytes"));
	}
	if (opts != NULL && opts->lock_mode != NULL) {
		int rc = s3_lock_mode_check(opts->lock_mode, err);
		if (rc != 0) {
			return (rc);
		}
		if (opts->lock_until_ms <= 0) {
			coffer_err_set(err, COFFER_EINVAL,
			    "object lock mode %s without a retain-until "
			    "date",
			    opts->lock_mode);
			coffer_err_hint(err, "give both, or neither");
			return (COFFER_EINVAL);
		}
	}
	coffer_s3_upload *up = calloc(1, sizeof(*up));
	if (up == NULL || (up->key = strdup(key)) == NULL) {
		free(up);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory writing %s", key));
	}
	up->s3 = s3;
	if (opts != NULL) {
		if (opts->lock_mode != NULL) {
			snprintf(up->lock_mode, sizeof(up->lock_mode), "%s", opts->lock_mode);
			up->lock_until_ms = opts->lock_until_ms;
		}
		up->legal_hold = opts->legal_hold;
		up->overwrite = opts->overwrite;
	}
	up->state = UP_OPEN;
	if (!up->overwrite) {
		int rc = up_exists(up, err);
		if (rc != 0) {
			coffer_s3_upload_free(up);
			return (rc > 0 ? COFFER_EEXIST : rc);
		}
	}
	*out = up;
	return (0);
}

static int
up_create(coffer_s3_upload *up, coffer_err *err)
{
	struct s3_req r = { .op = "CreateMultipartUpload",
		.method = "POST",
		.key = up->key,
		.flags = REQ_CAPTURE };
	s3_req_query(&r, "uploads", "");
	s3_req_header(&r, "x-amz-checksum-algorithm", "SHA256");
	char until[32];
	up_lock_headers(up, &r, until);
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == 0) {
		char id[1024];
		s3_initiate_parse(rs.body.buf, rs.body.len, id, sizeof(id));
		if (id[0] == '\0') {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 CreateMultipartUpload %.300s: the "
			    "response has no UploadId",
			    up->key);
		} else if ((up->upload_id = strdup(id)) == NULL) {
			rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		}
	}
	s3_resp_fini(&rs);
	return (rc);
}

static int
up_part(coffer_s3_upload *up, coffer_err *err)
{
	if (up->upload_id == NULL) {
		int rc = up_create(up, err);
		if (rc != 0) {
			return (rc);
		}
	}
	if (up->nparts >= COFFER_S3_MAX_PARTS) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "s3 object %.300s needs more than %d parts of "
		    "%zu bytes",
		    up->key, COFFER_S3_MAX_PARTS, up->s3->part_size);
		coffer_err_hint(err, "raise the repository's part size");
		return (COFFER_ETOOBIG);
	}
	if (up->nparts == up->cap) {
		unsigned cap = up->cap == 0 ? 16 : up->cap * 2;
		struct up_part *p = realloc(up->parts, cap * sizeof(*p));
		if (p == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
		}
		up->parts = p;
		up->cap = cap;
	}
	char num[16];
	snprintf(num, sizeof(num), "%u", up->nparts + 1);
	uint8_t d[32];
	s3_sha256(up->buf, up->used, d);
	struct s3_req r = { .op = "UploadPart",
		.method = "PUT",
		.key = up->key,
		.body = up->buf,
		.body_len = up->used,
		.body_sha256 = d,
		.flags = REQ_CHECKSUM };
	s3_req_query(&r, "partNumber", num);
	s3_req_query(&r, "uploadId", up->upload_id);
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == 0 && rs.info.etag[0] == '\0') {
		rc = coffer_err_set(err, COFFER_EPROTO,
		    "s3 UploadPart %.300s: no ETag in the "
		    "response",
		    up->key);
	}
	if (rc == 0) {
		struct up_part *p = &up->parts[up->nparts++];
		snprintf(p->etag, sizeof(p->etag), "%s", rs.info.etag);
		s3_base64(d, 32, p->sum);
		up->used = 0;
	}
	s3_resp_fini(&rs);
	return (rc);
}

int
coffer_s3_upload_write(coffer_s3_upload *up, const uint8_t *buf, size_t len, coffer_err *err)
{
	if (up->state != UP_OPEN || up->failed) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "write to s3 object %.300s after it "
		    "was %s",
		    up->key, up->failed ? "failed" : "closed"));
	}
	size_t part = up->s3->part_size;
	if (up->buf == NULL && len > 0) {
		up->buf = malloc(part);
		if (up->buf == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM,
			    "out of memory for an s3 part of "
			    "%zu bytes",
			    part));
		}
	}
	while (len > 0) {
		size_t n = part - up->used;
		n = n < len ? n : len;
		memcpy(up->buf + up->used, buf, n);
		up->used += n;
		buf += n;
		len -= n;
		if (up->used == part) {
			int rc = up_part(up, err);
			if (rc != 0) {
				up->failed = true;
				return (rc);
			}
		}
	}
	return (0);
}

static int
up_put_single(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err)
{
	struct s3_req r = { .op = "PUT",
		.method = "PUT",
		.key = up->key,
		.body = up->buf,
		.body_len = up->used,
		.flags = REQ_CHECKSUM };
	s3_req_header(&r, "x-amz-sdk-checksum-algorithm", "SHA256");
	if (!up->overwrite) {
		s3_req_header(&r, "if-none-match", "*");
	}
	char until[32];
	up_lock_headers(up, &r, until);
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == COFFER_EEXIST) {
		coffer_err_set(err, COFFER_EEXIST, "s3 object %.300s exists already", up->key);
		coffer_err_hint(err, "repository objects are never replaced; pick a new key");
	}
	if (rc == 0 && info != NULL) {
		*info = rs.info;
		info->size = up->used;
	}
	s3_resp_fini(&rs);
	return (rc);
}

static int
up_complete(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err)
{
	coffer_strbuf body = { 0 };
	coffer_strbuf_put(
	    &body, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (unsigned i = 0; i < up->nparts; i++) {
		coffer_strbuf_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>", i + 1);
		s3_xml_escape(&body, up->parts[i].etag);
		coffer_strbuf_put(&body, "</ETag><ChecksumSHA256>");
		coffer_strbuf_put(&body, up->parts[i].sum);
		coffer_strbuf_put(&body, "</ChecksumSHA256></Part>");
	}
	coffer_strbuf_put(&body, "</CompleteMultipartUpload>");
	if (body.failed) {
		coffer_strbuf_free(&body);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	struct s3_req r = { .op = "CompleteMultipartUpload",
		.method = "POST",
		.key = up->key,
		.body = (const uint8_t *)body.buf,
		.body_len = body.len,
		.flags = REQ_ERROR_IN_200 };
	s3_req_query(&r, "uploadId", up->upload_id);
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == 0) {
		if (!s3_complete_parse(
		        rs.body.buf, rs.body.len, rs.info.etag, sizeof(rs.info.etag))) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 CompleteMultipartUpload %.300s: "
			    "the response is not a CompleteMultipartUploadResult",
			    up->key);
		}
	}
	if (rc == 0 && info != NULL) {
		*info = rs.info;
	}
	s3_resp_fini(&rs);
	coffer_strbuf_free(&body);
	return (rc);
}

int
coffer_s3_upload_commit(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err)
{
	if (up->state != UP_OPEN) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "s3 object %.300s was already %s",
		    up->key, up->state == UP_COMMITTED ? "committed" : "aborted"));
	}
	if (up->failed) {
		coffer_s3_upload_abort(up);
		coffer_err_set(err, COFFER_EIO,
		    "s3 object %.300s is not published: an earlier "
		    "write to it failed",
		    up->key);
		coffer_err_hint(err, "see the earlier error; the write must start again");
		return (COFFER_EIO);
	}
	coffer_s3_object_info tmp;
	memset(&tmp, 0, sizeof(tmp));
	int rc;
	if (up->upload_id == NULL) {
		rc = up_put_single(up, &tmp, err);
	} else {
		uint64_t total = (uint64_t)up->nparts * up->s3->part_size + up->used;
		rc = up->used > 0 ? up_part(up, err) : 0;
		if (rc == 0 && !up->overwrite) {
			int ex = up_exists(up, err);
			rc = ex > 0 ? COFFER_EEXIST : ex;
		}
		if (rc == 0) {
			rc = up_complete(up, &tmp, err);
		}
		tmp.size = total;
		/* Some stores (radosgw before Squid) ignore lock headers on
		 * CreateMultipartUpload; setting the retention again is harmless
		 * where they were honoured. */
		if (rc == 0 && up->lock_mode[0] != '\0') {
			up->state = UP_COMMITTED;
			free(up->buf);
			up->buf = NULL;
			if (info != NULL) {
				*info = tmp;
			}
			rc = coffer_s3_put_retention(
			    up->s3, up->key, tmp.version_id, up->lock_mode, up->lock_until_ms, err);
			if (rc != 0) {
				coffer_err_wrap(
				    err, "s3 object %.300s is published but not locked", up->key);
			}
			return (rc);
		}
	}
	if (rc != 0) {
		up->failed = true;
		coffer_s3_upload_abort(up);
		return (rc);
	}
	up->state = UP_COMMITTED;
	free(up->buf);
	up->buf = NULL;
	if (info != NULL) {
		*info = tmp;
	}
	return (0);
}

void
coffer_s3_upload_abort(coffer_s3_upload *up)
{
	if (up == NULL || up->state != UP_OPEN) {
		return;
	}
	up->state = UP_ABORTED;
	if (up->upload_id != NULL) {
		struct s3_req r = {
			.op = "AbortMultipartUpload", .method = "DELETE", .key = up->key
		};
		s3_req_query(&r, "uploadId", up->upload_id);
		struct s3_resp rs;
		s3_resp_init(&rs, &r);
		coffer_err e = { 0 };
		if (s3_do(up->s3, &r, &rs, &e) != 0 && rs.status != 404) {
			/* The parts stay billed until a lifecycle rule aborts them;
			 * they are never visible as an object. */
			coffer_log_warn("s3 multipart upload not aborted", "key=%s", up->key);
		}
		s3_resp_fini(&rs);
	}
	free(up->buf);
	up->buf = NULL;
}

void
coffer_s3_upload_free(coffer_s3_upload *up)
{
	if (up == NULL) {
		return;
	}
	coffer_s3_upload_abort(up);
	free(up->buf);
	free(up->parts);
	free(up->upload_id);
	free(up->key);
	free(up);
}

unsigned
coffer_s3_upload_parts(const coffer_s3_upload *up)
{
	return (up->nparts);
}

size_t
coffer_s3_upload_memory(const coffer_s3_upload *up)
{
	return (up->buf != NULL ? up->s3->part_size : 0);
}
