/* Key escrow: the key pair's files, sealing a KEK and opening it again,
 * every way an object must be refused (another escrow key, altered header
 * or ciphertext, a wrong shape), and a ring written back from escrowed
 * keys. Real key files in a temporary directory. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/crypto/escrow.h"
#include "common/crypto/keyring.h"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];
	char key[600];
	char pub[600];
	char ring[600];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("escrow-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->key, sizeof(f->key), "%s/escrow.key", f->dir);
	snprintf(f->pub, sizeof(f->pub), "%s/escrow.key.pub", f->dir);
	snprintf(f->ring, sizeof(f->ring), "%s/ring", f->dir);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static void
put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void
make_pair(struct fixture *f, coffer_escrow_key **key, coffer_escrow_pub **pub)
{
	coffer_err err = { 0 };
	char hex[COFFER_ESCROW_PUB_HEX];
	assert_int_equal(coffer_escrow_keygen(f->key, hex, &err), 0);
	char line[80];
	snprintf(line, sizeof(line), "%s\n", hex);
	put_file(f->pub, line, 0644);
	assert_int_equal(coffer_escrow_key_load(f->key, key, &err), 0);
	assert_int_equal(coffer_escrow_pub_load(f->pub, pub, &err), 0);
}

static coffer_escrow_entry
entry(const char *id, uint8_t fill)
{
	coffer_escrow_entry e;
	memset(&e, 0, sizeof(e));
	snprintf(e.service, sizeof(e.service), "billing");
	snprintf(e.key_id, sizeof(e.key_id), "%s", id);
	e.created_ms = 1764000000000LL;
	memset(e.kek, fill, sizeof(e.kek));
	return (e);
}

static void
test_seal_open_roundtrip(void **state)
{
	struct fixture *f = *state;
	coffer_escrow_key *key;
	coffer_escrow_pub *pub;
	make_pair(f, &key, &pub);
	struct stat st;
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char fk[COFFER_ESCROW_FINGERPRINT_HEX], fp[COFFER_ESCROW_FINGERPRINT_HEX];
	coffer_escrow_key_fingerprint(key, fk);
	coffer_escrow_pub_fingerprint(pub, fp);
	assert_string_equal(fk, fp);

	coffer_err err = { 0 };
	coffer_escrow_entry e = entry("k1", 0x5a);
	char *json = NULL;
	size_t len = 0;
	assert_int_equal(coffer_escrow_seal(pub, &e, &json, &len, &err), 0);
	assert_int_equal(strlen(json), len);
	/* The key never appears in the clear. */
	assert_null(strstr(json, "5a5a5a5a"));
	coffer_escrow_entry d;
	assert_int_equal(coffer_escrow_describe(json, len, &d, &err), 0);
	assert_string_equal(d.service, "billing");
	assert_string_equal(d.key_id, "k1");
	assert_int_equal(d.created_ms, e.created_ms);
	assert_string_equal(d.recipient, fp);
	coffer_escrow_entry o;
	assert_int_equal(coffer_escrow_open(key, json, len, &o, &err), 0);
	assert_memory_equal(o.kek, e.kek, sizeof(e.kek));

	/* Two seals of one key differ (fresh ephemeral key and nonce). */
	char *json2 = NULL;
	assert_int_equal(coffer_escrow_seal(pub, &e, &json2, NULL, &err), 0);
	assert_string_not_equal(json, json2);
	free(json2);
	free(json);
	coffer_escrow_key_free(key);
	coffer_escrow_pub_free(pub);
}

/* Replaces the first occurrence of from with to (same length) in s. */
static void
patch(char *s, const char *from, const char *to)
{
	char *p = strstr(s, from);
	assert_non_null(p);
	assert_int_equal(strlen(from), strlen(to));
	memcpy(p, to, strlen(to));
}

static void
test_open_refuses(void **state)
{
	struct fixture *f = *state;
	coffer_escrow_key *key;
	coffer_escrow_pub *pub;
	make_pair(f, &key, &pub);
	coffer_err err = { 0 };
	coffer_escrow_entry e = entry("k1", 0x11);
	char *json = NULL;
	size_t len = 0;
	assert_int_equal(coffer_escrow_seal(pub, &e, &json, &len, &err), 0);
	coffer_escrow_entry o;

	/* Another escrow key: named by fingerprint, refused. */
	char other[700];
	snprintf(other, sizeof(other), "%s/other.key", f->dir);
	char hex[COFFER_ESCROW_PUB_HEX];
	assert_int_equal(coffer_escrow_keygen(other, hex, &err), 0);
	coffer_escrow_key *okey;
	assert_int_equal(coffer_escrow_key_load(other, &okey, &err), 0);
	assert_int_equal(coffer_escrow_open(okey, json, len, &o, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "sealed to escrow key"));
	coffer_escrow_key_free(okey);

	/* The header is bound to the sealed key: a renamed key does not open. */
	char *copy = strdup(json);
	patch(copy, "\"key_id\":\"k1\"", "\"key_id\":\"k2\"");
	assert_int_equal(coffer_escrow_open(key, copy, len, &o, &err), COFFER_EAUTH);
	strcpy(copy, json);
	patch(copy, "\"service\":\"billing\"", "\"service\":\"billinx\"");
	assert_int_equal(coffer_escrow_open(key, copy, len, &o, &err), COFFER_EAUTH);
	/* A flipped ciphertext digit. */
	strcpy(copy, json);
	char *sk = strstr(copy, "\"sealed_key\":\"") + strlen("\"sealed_key\":\"");
	*sk = *sk == '0' ? '1' : '0';
	assert_int_equal(coffer_escrow_open(key, copy, len, &o, &err), COFFER_EAUTH);
	free(copy);

	/* Shapes: not JSON, unknown format, a missing field, too large. */
	assert_int_equal(coffer_escrow_describe("nope", 4, &o, &err), COFFER_ECORRUPT);
	static const char v2[] = "{\"format\":2}";
	assert_int_equal(coffer_escrow_describe(v2, strlen(v2), &o, &err), COFFER_EVERSION);
	static const char nokey[] = "{\"format\":1,\"service\":\"billing\"}";
	assert_int_equal(coffer_escrow_describe(nokey, strlen(nokey), &o, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "key_id"));
	assert_int_equal(
	    coffer_escrow_describe(json, COFFER_ESCROW_OBJECT_MAX + 1, &o, &err), COFFER_ETOOBIG);
	free(json);

	/* Key files: the private key readable by others, a public key that is
	 * not 64 hex digits, the .pub file passed as the private key. */
	assert_int_equal(chmod(f->key, 0640), 0);
	coffer_escrow_key *k2 = NULL;
	assert_int_equal(coffer_escrow_key_load(f->key, &k2, &err), COFFER_EPERM);
	put_file(f->pub, "abc\n", 0644);
	coffer_escrow_pub *p2 = NULL;
	assert_int_equal(coffer_escrow_pub_load(f->pub, &p2, &err), COFFER_EINVAL);
	put_file(f->pub, "0011\n", 0600);
	assert_int_equal(coffer_escrow_key_load(f->pub, &k2, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.hint, "escrow-keygen"));
	/* An existing escrow key is never overwritten. */
	assert_int_equal(coffer_escrow_keygen(f->key, hex, &err), COFFER_EEXIST);
	coffer_escrow_key_free(key);
	coffer_escrow_pub_free(pub);
}

static void
test_ring_from_escrow(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	coffer_keyring_entry es[2];
	memset(es, 0, sizeof(es));
	snprintf(es[0].id, sizeof(es[0].id), "k1");
	es[0].created_ms = 1764000000000LL;
	memset(es[0].key, 0x01, sizeof(es[0].key));
	snprintf(es[1].id, sizeof(es[1].id), "k2");
	es[1].created_ms = 1764000060000LL;
	memset(es[1].key, 0x02, sizeof(es[1].key));
	assert_int_equal(coffer_keyring_create(f->ring, es, 2, &err), 0);
	struct stat st;
	assert_int_equal(stat(f->ring, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	coffer_keyring *ring;
	assert_int_equal(coffer_keyring_load(f->ring, &ring, &err), 0);
	assert_int_equal(coffer_keyring_count(ring), 2);
	assert_string_equal(coffer_keyring_newest_id(ring), "k2");
	const uint8_t *k = NULL;
	int64_t created = 0;
	assert_string_equal(coffer_keyring_at(ring, 0, &k, &created), "k1");
	assert_int_equal(created, es[0].created_ms);
	assert_memory_equal(k, es[0].key, sizeof(es[0].key));
	assert_null(coffer_keyring_at(ring, 2, &k, &created));
	coffer_keyring_free(ring);
	/* Never over an existing ring; duplicate ids refused. */
	assert_int_equal(coffer_keyring_create(f->ring, es, 2, &err), COFFER_EEXIST);
	char other[700];
	snprintf(other, sizeof(other), "%s/ring2", f->dir);
	snprintf(es[1].id, sizeof(es[1].id), "k1");
	assert_int_equal(coffer_keyring_create(other, es, 2, &err), COFFER_EINVAL);
	assert_int_equal(access(other, F_OK), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_seal_open_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_from_escrow, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
