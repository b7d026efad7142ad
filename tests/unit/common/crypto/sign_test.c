/* Signatures: key files (creation, modes, formats), signing and every way a
 * verification must fail. Real key files in a temporary directory. */
#include <errno.h>
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

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/crypto/sign.h"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];
	char key[600];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("sign-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->key, sizeof(f->key), "%s/agent.key", f->dir);
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
test_keygen_load_sign_verify(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	char hex[COFFER_SIGN_PUBKEY_HEX];
	assert_int_equal(coffer_sign_keygen(f->key, hex, &err), 0);
	assert_int_equal(strlen(hex), 64);
	struct stat st;
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	coffer_sign_key *key;
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), 0);
	coffer_sign_pubkey *pub;
	assert_int_equal(coffer_sign_key_public(key, &pub, &err), 0);
	char hex2[COFFER_SIGN_PUBKEY_HEX];
	coffer_sign_pubkey_hex(pub, hex2);
	assert_string_equal(hex, hex2);

	static const char msg[] = "manifest bytes";
	uint8_t sig[COFFER_SIGN_BYTES];
	assert_int_equal(coffer_sign(key, msg, sizeof(msg), sig, &err), 0);
	assert_int_equal(coffer_sign_verify(pub, msg, sizeof(msg), sig, &err), 0);

	/* Other data, a flipped bit of the signature, fewer bytes: all refused. */
	static const char other[] = "manifest bytez";
	assert_int_equal(coffer_sign_verify(pub, other, sizeof(other), sig, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "does not match"));
	assert_int_equal(coffer_sign_verify(pub, msg, sizeof(msg) - 1, sig, &err), COFFER_EAUTH);
	for (size_t i = 0; i < COFFER_SIGN_BYTES; i += 9) {
		sig[i] ^= 0x20;
		assert_int_equal(
		    coffer_sign_verify(pub, msg, sizeof(msg), sig, &err), COFFER_EAUTH);
		sig[i] ^= 0x20;
	}

	/* Another key's signature never verifies. */
	coffer_sign_key *other_key;
	assert_int_equal(coffer_sign_key_generate(&other_key, &err), 0);
	uint8_t sig2[COFFER_SIGN_BYTES];
	assert_int_equal(coffer_sign(other_key, msg, sizeof(msg), sig2, &err), 0);
	assert_int_equal(coffer_sign_verify(pub, msg, sizeof(msg), sig2, &err), COFFER_EAUTH);

	coffer_sign_key_free(other_key);
	coffer_sign_pubkey_free(pub);
	coffer_sign_key_free(key);
}

static void
test_keygen_refuses_existing(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	put_file(f->key, "precious", 0600);
	assert_int_equal(coffer_sign_keygen(f->key, NULL, &err), COFFER_EEXIST);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_true(err.hint[0] != '\0');
	/* Untouched. */
	char buf[32] = { 0 };
	int fd = open(f->key, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 8);
	close(fd);
	assert_string_equal(buf, "precious");

	char missing[700];
	snprintf(missing, sizeof(missing), "%s/no/such/dir/k", f->dir);
	assert_int_equal(coffer_sign_keygen(missing, NULL, &err), COFFER_ENOENT);
}

static void
test_key_load_refuses_open_mode(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	assert_int_equal(coffer_sign_keygen(f->key, NULL, &err), 0);
	coffer_sign_key *key = NULL;
	assert_int_equal(chmod(f->key, 0640), 0);
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), COFFER_EPERM);
	assert_null(key);
	assert_non_null(strstr(err.msg, "640"));
	assert_non_null(strstr(err.hint, "chmod 600"));
	assert_int_equal(chmod(f->key, 0604), 0);
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), COFFER_EPERM);
	assert_int_equal(chmod(f->key, 0400), 0);
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), 0);
	coffer_sign_key_free(key);
}

static void
test_key_load_refuses_garbage(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	coffer_sign_key *key = NULL;
	put_file(
	    f->key, "-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n", 0600);
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "not an ed25519 private key"));

	/* A perfectly good key of the wrong type. */
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	assert_non_null(ec);
	FILE *fp = fopen(f->key, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_PrivateKey(fp, ec, NULL, NULL, 0, NULL, NULL), 1);
	fclose(fp);
	EVP_PKEY_free(ec);
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), COFFER_EINVAL);

	char missing[700];
	snprintf(missing, sizeof(missing), "%s/missing.key", f->dir);
	assert_int_equal(coffer_sign_key_load(missing, &key, &err), COFFER_ENOENT);
	assert_int_equal(coffer_sign_key_load(f->dir, &key, &err), COFFER_EINVAL);
	assert_null(key);
}

static void
test_pubkey_formats(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	char hex[COFFER_SIGN_PUBKEY_HEX];
	assert_int_equal(coffer_sign_keygen(f->key, hex, &err), 0);
	coffer_sign_key *key;
	assert_int_equal(coffer_sign_key_load(f->key, &key, &err), 0);
	static const char msg[] = "x";
	uint8_t sig[COFFER_SIGN_BYTES];
	assert_int_equal(coffer_sign(key, msg, 1, sig, &err), 0);

	/* Hex line with blank space around it. */
	char path[700];
	snprintf(path, sizeof(path), "%s/agent.pub", f->dir);
	char text[100];
	snprintf(text, sizeof(text), "  %s\r\n\n", hex);
	put_file(path, text, 0644);
	coffer_sign_pubkey *pub;
	assert_int_equal(coffer_sign_pubkey_load(path, &pub, &err), 0);
	assert_int_equal(coffer_sign_verify(pub, msg, 1, sig, &err), 0);
	char fp1[COFFER_SIGN_FINGERPRINT_HEX];
	coffer_sign_fingerprint(pub, fp1);
	assert_int_equal(strlen(fp1), 32);
	uint8_t raw[COFFER_SIGN_PUBKEY_BYTES];
	coffer_sign_pubkey_raw(pub, raw);
	coffer_sign_pubkey_free(pub);

	/* Raw bytes, as the wire carries them. */
	assert_int_equal(coffer_sign_pubkey_from_raw(raw, &pub, &err), 0);
	char fp2[COFFER_SIGN_FINGERPRINT_HEX];
	coffer_sign_fingerprint(pub, fp2);
	assert_string_equal(fp1, fp2);
	coffer_sign_pubkey_free(pub);

	/* PEM, as openssl pkey -pubout writes it. */
	FILE *kf = fopen(f->key, "r");
	EVP_PKEY *pk = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
	fclose(kf);
	assert_non_null(pk);
	FILE *pf = fopen(path, "w");
	assert_int_equal(PEM_write_PUBKEY(pf, pk), 1);
	fclose(pf);
	EVP_PKEY_free(pk);
	assert_int_equal(coffer_sign_pubkey_load(path, &pub, &err), 0);
	assert_int_equal(coffer_sign_verify(pub, msg, 1, sig, &err), 0);
	coffer_sign_pubkey_free(pub);

	/* Upper-case hex is the same key. */
	for (char *p = hex; *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'f') {
			*p = (char)(*p - 'a' + 'A');
		}
	}
	assert_int_equal(coffer_sign_pubkey_parse(hex, strlen(hex), &pub, &err), 0);
	coffer_sign_fingerprint(pub, fp2);
	assert_string_equal(fp1, fp2);
	coffer_sign_pubkey_free(pub);

	/* Wrong length, a bad digit, two keys, an empty file: refused. */
	pub = NULL;
	assert_int_equal(coffer_sign_pubkey_parse(hex, 63, &pub, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "64 hex digits"));
	hex[10] = 'g';
	assert_int_equal(coffer_sign_pubkey_parse(hex, 64, &pub, &err), COFFER_EINVAL);
	char two[200];
	snprintf(two, sizeof(two), "%s\n%s\n", fp1, fp1);
	assert_int_equal(coffer_sign_pubkey_parse(two, strlen(two), &pub, &err), COFFER_EINVAL);
	put_file(path, "", 0644);
	assert_int_equal(coffer_sign_pubkey_load(path, &pub, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, path));
	put_file(path, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 0644);
	assert_int_equal(coffer_sign_pubkey_load(path, &pub, &err), COFFER_EINVAL);
	assert_null(pub);
	coffer_sign_key_free(key);
}

static void
test_fingerprints_differ(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_sign_key *a;
	coffer_sign_key *b;
	coffer_sign_pubkey *pa;
	coffer_sign_pubkey *pb;
	assert_int_equal(coffer_sign_key_generate(&a, &err), 0);
	assert_int_equal(coffer_sign_key_generate(&b, &err), 0);
	assert_int_equal(coffer_sign_key_public(a, &pa, &err), 0);
	assert_int_equal(coffer_sign_key_public(b, &pb, &err), 0);
	char fa[COFFER_SIGN_FINGERPRINT_HEX];
	char fb[COFFER_SIGN_FINGERPRINT_HEX];
	coffer_sign_fingerprint(pa, fa);
	coffer_sign_fingerprint(pb, fb);
	assert_string_not_equal(fa, fb);
	/* Signing nothing is allowed and still key-specific. */
	uint8_t sig[COFFER_SIGN_BYTES];
	assert_int_equal(coffer_sign(a, "", 0, sig, &err), 0);
	assert_int_equal(coffer_sign_verify(pa, "", 0, sig, &err), 0);
	assert_int_equal(coffer_sign_verify(pb, "", 0, sig, &err), COFFER_EAUTH);
	coffer_sign_pubkey_free(pa);
	coffer_sign_pubkey_free(pb);
	coffer_sign_key_free(a);
	coffer_sign_key_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keygen_load_sign_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keygen_refuses_existing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_load_refuses_open_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_load_refuses_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pubkey_formats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fingerprints_differ, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
