/* Audit: key files on a real file system (modes, symlinks, bad text, never
 * overwriting), the MAC's byte layout against an independent HMAC over the
 * layout written out by hand in audit.h, and the argument checks that run
 * before any statement. The chain against PostgreSQL is exercised by
 * tests/integration/catalog.sh. The coordinator's modules are linked into
 * its executable, not a library, so their sources are compiled in here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/hmac.h>
#include <cmocka.h>

/* White-box: the static helpers (argument checks, bytea text, conninfo
 * redaction) are tested directly; the static library then supplies nothing
 * twice, since its members are only pulled in for undefined symbols. */
#include "coordinator/catalog/audit.c"
#include "coordinator/catalog/catalog.c"
#include "coordinator/catalog/migrations.c"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];
	char path[600];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_int_equal(harness_tmpdir_make("audit-test", f->dir, sizeof(f->dir)), 0);
	snprintf(f->path, sizeof(f->path), "%s/audit.key", f->dir);
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
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(chmod(path, mode), 0);
}

static void
test_generate_then_load(void **state)
{
	struct fixture *f = *state;
	coord_audit_key made, loaded;
	coffer_err err = { 0 };
	assert_int_equal(coord_audit_key_generate(f->path, &made, &err), 0);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 65);
	assert_int_equal(coord_audit_key_load(f->path, &loaded, &err), 0);
	assert_memory_equal(made.bytes, loaded.bytes, COORD_AUDIT_KEY_LEN);

	/* Never overwritten: the old key would no longer verify old rows. */
	coord_audit_key again;
	assert_int_equal(coord_audit_key_generate(f->path, &again, &err), COFFER_EEXIST);
	assert_non_null(strstr(err.hint, "never overwritten"));
	assert_int_equal(coord_audit_key_load(f->path, &again, &err), 0);
	assert_memory_equal(made.bytes, again.bytes, COORD_AUDIT_KEY_LEN);

	coord_audit_key_clear(&loaded);
	uint8_t zero[COORD_AUDIT_KEY_LEN] = { 0 };
	assert_memory_equal(loaded.bytes, zero, COORD_AUDIT_KEY_LEN);
}

static void
test_load_refuses(void **state)
{
	struct fixture *f = *state;
	coord_audit_key key;
	coffer_err err = { 0 };
	const char *good = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

	assert_int_equal(coord_audit_key_load(f->path, &key, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.hint, "audit-keygen"));

	write_file(f->path, good, 0644);
	assert_int_equal(coord_audit_key_load(f->path, &key, &err), COFFER_EPERM);
	assert_non_null(strstr(err.msg, "mode 0644"));
	assert_non_null(strstr(err.hint, "chmod 600"));
	assert_int_equal(chmod(f->path, 0640), 0);
	assert_int_equal(coord_audit_key_load(f->path, &key, &err), COFFER_EPERM);

	assert_int_equal(chmod(f->path, 0400), 0);
	assert_int_equal(coord_audit_key_load(f->path, &key, &err), 0);
	assert_int_equal(key.bytes[0], 0x00);
	assert_int_equal(key.bytes[31], 0x1f);

	const char *bad[] = {
		"",
		"0001",
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1",   /* 63 */
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0", /* 65 */
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g",
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n",
		" 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		NULL,
	};
	for (size_t i = 0; bad[i] != NULL; i++) {
		unlink(f->path);
		write_file(f->path, bad[i], 0600);
		assert_int_equal(coord_audit_key_load(f->path, &key, &err), COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "64 hex digits"));
	}

	/* A symbolic link could be swapped under the coordinator's feet. */
	unlink(f->path);
	write_file(f->path, good, 0600);
	char link[700];
	snprintf(link, sizeof(link), "%s/link.key", f->dir);
	assert_int_equal(symlink(f->path, link), 0);
	assert_int_equal(coord_audit_key_load(link, &key, &err), COFFER_EPERM);
	assert_non_null(strstr(err.msg, "symbolic link"));

	/* A directory is not a key. */
	assert_int_equal(coord_audit_key_load(f->dir, &key, &err), COFFER_EINVAL);
}

static void
put32(uint8_t **p, uint32_t v)
{
	(*p)[0] = (uint8_t)(v >> 24);
	(*p)[1] = (uint8_t)(v >> 16);
	(*p)[2] = (uint8_t)(v >> 8);
	(*p)[3] = (uint8_t)v;
	*p += 4;
}

static void
put_lp(uint8_t **p, const char *s)
{
	put32(p, (uint32_t)strlen(s));
	memcpy(*p, s, strlen(s));
	*p += strlen(s);
}

/* The layout documented in audit.h, built independently of audit_mac. */
static void
reference_mac(const coord_audit_key *key, const coord_audit_row *row, uint8_t out[32])
{
	uint8_t buf[1024];
	uint8_t *p = buf;
	memcpy(p, "coffer-audit-v1", 16); /* with its NUL */
	p += 16;
	put32(&p, (uint32_t)((uint64_t)row->chain_seq >> 32));
	put32(&p, (uint32_t)row->chain_seq);
	put_lp(&p, row->at);
	put_lp(&p, row->actor);
	put_lp(&p, row->action);
	put_lp(&p, row->subject);
	put_lp(&p, row->details);
	memcpy(p, row->prev_mac, 32);
	p += 32;
	unsigned int n = 0;
	assert_non_null(HMAC(EVP_sha256(), key->bytes, 32, buf, (size_t)(p - buf), out, &n));
	assert_int_equal(n, 32);
}

static void
test_mac_layout(void **state)
{
	(void)state;
	coord_audit_key key;
	for (size_t i = 0; i < sizeof(key.bytes); i++) {
		key.bytes[i] = (uint8_t)(i * 7 + 1);
	}
	coord_audit_row row = {
		.chain_seq = 0x0102030405LL,
		.at = "2026-11-24T16:00:00.123456Z",
		.actor = "operator-alice",
		.action = "agent.enroll",
		.subject = "billing",
		.details = "{\"agent\": \"billing-db-1\"}",
	};
	memset(row.prev_mac, 0xab, sizeof(row.prev_mac));
	uint8_t got[32], want[32];
	coffer_err err = { 0 };
	assert_int_equal(coord_audit_mac(&key, &row, got, &err), 0);
	reference_mac(&key, &row, want);
	assert_memory_equal(got, want, 32);

	/* Length prefixes keep field boundaries: moving a byte from one field
	 * to the next must change the MAC. */
	coord_audit_row shifted = row;
	shifted.actor = "operator-alic";
	shifted.action = "eagent.enroll";
	uint8_t other[32];
	assert_int_equal(coord_audit_mac(&key, &shifted, other, &err), 0);
	assert_memory_not_equal(got, other, 32);

	/* Every covered field matters, including the previous MAC. */
	coord_audit_row changed = row;
	changed.prev_mac[31] ^= 1;
	assert_int_equal(coord_audit_mac(&key, &changed, other, &err), 0);
	assert_memory_not_equal(got, other, 32);
	changed = row;
	changed.chain_seq++;
	assert_int_equal(coord_audit_mac(&key, &changed, other, &err), 0);
	assert_memory_not_equal(got, other, 32);
	coord_audit_key wrong = key;
	wrong.bytes[0] ^= 0x80;
	assert_int_equal(coord_audit_mac(&wrong, &row, other, &err), 0);
	assert_memory_not_equal(got, other, 32);
}

static void
test_append_arguments(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	assert_int_equal(append_check_args("coordinator", "policy.load", "billing", "{}", &err), 0);
	assert_int_equal(append_check_args("a", "x", "", "[1, \"two\", null]", &err), 0);
	assert_int_equal(append_check_args("", "policy.load", "", "{}", &err), COFFER_EINVAL);
	char longname[COORD_AUDIT_MAX_NAME + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(append_check_args(longname, "policy.load", "", "{}", &err), COFFER_EINVAL);
	assert_int_equal(
	    append_check_args("a", "policy.load", longname, "{}", &err), COFFER_EINVAL);
	const char *bad_actions[] = { "", "Policy.load", "1policy", "policy load", "policy-load",
		"policy.load;drop", NULL };
	for (size_t i = 0; bad_actions[i] != NULL; i++) {
		assert_int_equal(
		    append_check_args("a", bad_actions[i], "", "{}", &err), COFFER_EINVAL);
	}
	const char *bad_json[] = { "", "{", "{\"a\":}", "{} {}", "nul", "{\"a\":1,}", NULL };
	for (size_t i = 0; bad_json[i] != NULL; i++) {
		assert_int_equal(append_check_args("a", "x", "", bad_json[i], &err), COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "not valid JSON"));
	}
	/* Refused by size before parsing, so memory is bounded by the limit. */
	char *huge = malloc(COORD_AUDIT_MAX_DETAILS + 2);
	assert_non_null(huge);
	memset(huge, ' ', COORD_AUDIT_MAX_DETAILS + 1);
	huge[0] = '0';
	huge[COORD_AUDIT_MAX_DETAILS + 1] = '\0';
	assert_int_equal(append_check_args("a", "x", "", huge, &err), COFFER_ETOOBIG);
	huge[COORD_AUDIT_MAX_DETAILS] = '\0';
	assert_int_equal(append_check_args("a", "x", "", huge, &err), 0);
	free(huge);
}

static void
test_bytea_text(void **state)
{
	(void)state;
	uint8_t in[32], out[32];
	char text[2 * 32 + 3];
	for (size_t i = 0; i < sizeof(in); i++) {
		in[i] = (uint8_t)(255 - i * 3);
	}
	bytea_format(in, sizeof(in), text);
	assert_int_equal(strlen(text), 66);
	assert_true(bytea_parse(text, out, sizeof(out)));
	assert_memory_equal(in, out, sizeof(in));
	assert_false(bytea_parse("\\x00", out, sizeof(out)));
	assert_false(bytea_parse("00ff", out, 2));
	assert_false(bytea_parse("\\x0g", out, 1));
	assert_false(bytea_parse("", out, 1));
}

static void
test_migrations_shape(void **state)
{
	(void)state;
	size_t n;
	const coord_migration *m = coord_migrations_list(&n);
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(m[i].number, (int)i + 1);
		assert_non_null(m[i].name);
		assert_true(strlen(m[i].name) > 0 && strlen(m[i].name) < 128);
		/* A COMMIT inside would end the migration's own transaction. */
		assert_null(strstr(m[i].sql, "COMMIT"));
		assert_null(strstr(m[i].sql, "CONCURRENTLY"));
	}
	assert_int_equal(coord_catalog_known_version(), (int)n);
}

static void
test_open_refuses_without_leaking(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	assert_null(coord_catalog_open("", &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_null(coord_catalog_open("host=x password=hunter2hunter2 'unterminated", &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_null(strstr(err.msg, "hunter2"));
	char desc[256];
	cat_describe("host=db.internal port=5433 dbname=coffer user=coffer password=hunter2hunter2 "
	             "sslmode=require",
	    desc, sizeof(desc));
	assert_string_equal(desc, "host=db.internal port=5433 dbname=coffer user=coffer");
	cat_describe("postgresql://coffer:hunter2hunter2@db.internal/coffer", desc, sizeof(desc));
	assert_null(strstr(desc, "hunter2"));
	assert_non_null(strstr(desc, "host=db.internal"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_generate_then_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_refuses, setup, teardown),
		cmocka_unit_test(test_mac_layout),
		cmocka_unit_test(test_append_arguments),
		cmocka_unit_test(test_bytea_text),
		cmocka_unit_test(test_migrations_shape),
		cmocka_unit_test(test_open_refuses_without_leaking),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
