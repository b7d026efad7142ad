/* S3 response bodies come from the network: any bytes as a ListObjectsV2
 * page or an <Error> document must parse or be refused with a message,
 * never crash, leak or read past the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/repo/s3.h"

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
	return (0);
}
