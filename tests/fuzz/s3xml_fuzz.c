/* S3 response bodies come from the network: any bytes as a ListObjectsV2
 * page, an <Error> document, or the answers uploads and the object lock
 * check read (common/repo/s3_xml.c) must parse or be refused with a
 * message, never crash, leak or read past the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/repo/s3.h"
#include "common/repo/s3_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
count_cb(const char *key, uint64_t size, int64_t mtime_ms, void *arg)
{
	(void)size;
	(void)mtime_ms;
	if (key == NULL || key[0] == '\0') {
		abort(); /* the parser promised a key */
	}
	(*(unsigned *)arg)++;
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char code[64], msg[256], token[1024];
	coffer_s3_error_parse((const char *)data, size, code, sizeof(code), msg, sizeof(msg));
	unsigned n = 0;
	int truncated = 0;
	coffer_err err = { 0 };
	int rc = coffer_s3_list_parse(
	    (const char *)data, size, count_cb, &n, &truncated, token, sizeof(token), &err);
	if (rc < 0 && err.msg[0] == '\0') {
		abort(); /* every refusal must say why */
	}
	if (rc == 0 && truncated && token[0] == '\0') {
		abort(); /* a truncated page needs a token to go on */
	}
	char id[64], etag[COFFER_S3_ETAG_MAX] = "";
	s3_initiate_parse((const char *)data, size, id, sizeof(id));
	s3_complete_parse((const char *)data, size, etag, sizeof(etag));
	coffer_s3_lock_config lock;
	memset(&lock, 0, sizeof(lock));
	s3_lock_config_parse((const char *)data, size, &lock);
	if (strnlen(id, sizeof(id)) == sizeof(id) || strnlen(etag, sizeof(etag)) == sizeof(etag) ||
	    strnlen(lock.mode, sizeof(lock.mode)) == sizeof(lock.mode)) {
		abort(); /* every copy out is cut to its buffer and terminated */
	}
	return (0);
}
