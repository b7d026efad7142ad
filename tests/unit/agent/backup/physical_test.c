/* The physical archive: entry headers, what a base backup skips, and the
 * unpacking filter writing real files into a real directory -- checking
 * every file against the manifest in order, refusing paths that leave the
 * directory, damaged digests, truncation, extra or missing files, data after
 * the end, and entries that exist already (corruption); fed whole or one byte at a time. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <cmocka.h>

#include "agent/backup/physical.h"
#include "agent/restore/physical_restore.h"
#include "common/stream/digest.h"
#include "tests/harness/tmpdir.h"

typedef struct fx {
	char dir[256];
	int fd;
	coffer_manifest *m;
	uint8_t *buf;
	size_t len, cap;
} fx;

static int
setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("physical-test", f->dir, sizeof(f->dir)) != 0) {
		return (-1);
	}
	char root[300];
	snprintf(root, sizeof(root), "%s/pgdata", f->dir);
	mkdir(root, 0700);
	f->fd = open(root, O_RDONLY | O_DIRECTORY);
	coffer_err err = { 0 };
	if (f->fd < 0 || coffer_manifest_new(&f->m, &err) != 0) {
		return (-1);
	}
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fx *f = *state;
	close(f->fd);
	coffer_manifest_free(f->m);
	free(f->buf);
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static void
put(fx *f, const void *p, size_t n)
{
	if (f->len + n > f->cap) {
		f->cap = (f->len + n) * 2;
		f->buf = realloc(f->buf, f->cap);
		assert_non_null(f->buf);
	}
	memcpy(f->buf + f->len, p, n);
	f->len += n;
}

static void
entry(fx *f, char type, uint32_t mode, const char *path, const char *data)
{
	uint8_t h[AGENT_PHYS_HEADER_LEN];
	size_t n = data != NULL ? strlen(data) : 0;
	agent_physical_header_encode(h, type, mode, (uint16_t)strlen(path), n);
	put(f, h, sizeof(h));
	put(f, path, strlen(path));
	if (n > 0) {
		put(f, data, n);
	}
}

/* A file entry and its manifest line; sha_of NULL: the data's own digest. */
static void
file(fx *f, const char *path, const char *data, const char *sha_of)
{
	entry(f, AGENT_PHYS_FILE, 0600, path, data);
	uint8_t d[SHA256_DIGEST_LENGTH];
	const char *src = sha_of != NULL ? sha_of : data;
	SHA256((const uint8_t *)src, strlen(src), d);
	char hex[65];
	coffer_hex_encode(d, sizeof(d), hex);
	assert_int_equal(coffer_manifest_add_file(f->m, path, strlen(data), hex, NULL), 0);
}

static void
end(fx *f)
{
	entry(f, AGENT_PHYS_END, 0, "", NULL);
}

static void
sample(fx *f)
{
	entry(f, AGENT_PHYS_DIR, 0700, "base", NULL);
	entry(f, AGENT_PHYS_DIR, 0700, "base/1", NULL);
	file(f, "PG_VERSION", "15\n", NULL);
	file(f, "base/1/1259", "relation bytes", NULL);
	file(f, "base/1/empty", "", NULL);
	entry(f, AGENT_PHYS_DIR, 0700, "pg_wal", NULL);
	file(f, "backup_label", "START WAL LOCATION: 0/2000028\n", NULL);
}

/* Feeds the archive (whole, or in steps of `step` bytes) and finishes;
 * returns the first error. */
static int
feed_mapped(fx *f, size_t step, const char *const *map, size_t nmap, coffer_err *err)
{
	coffer_filter *u = agent_physical_restore_unpack_new(f->fd, f->m, map, nmap, err);
	assert_non_null(u);
	int rc = 0;
	for (size_t off = 0; rc == 0 && off < f->len; off += step) {
		size_t n = f->len - off < step ? f->len - off : step;
		rc = coffer_filter_write(u, f->buf + off, n, err);
	}
	if (rc == 0) {
		rc = coffer_filter_finish(u, err);
	}
	coffer_filter_free(u);
	return (rc);
}

static int
feed(fx *f, size_t step, coffer_err *err)
{
	return (feed_mapped(f, step, NULL, 0, err));
}

static void
assert_file(fx *f, const char *rel, const char *want)
{
	char path[600], got[256] = "";
	snprintf(path, sizeof(path), "%s/pgdata/%s", f->dir, rel);
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	size_t n = fread(got, 1, sizeof(got) - 1, fp);
	fclose(fp);
	got[n] = '\0';
	assert_string_equal(got, want);
}

static bool
exists(fx *f, const char *rel)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
	struct stat st;
	return (lstat(path, &st) == 0);
}

static void
test_roundtrip(void **state)
{
	fx *f = *state;
	sample(f);
	end(f);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), 0);
	assert_file(f, "PG_VERSION", "15\n");
	assert_file(f, "base/1/1259", "relation bytes");
	assert_file(f, "base/1/empty", "");
	assert_true(exists(f, "pgdata/pg_wal"));
	struct stat st;
	char path[600];
	snprintf(path, sizeof(path), "%s/pgdata/PG_VERSION", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

/* A tablespace entry (its location) and its manifest line, then one file
 * in it. */
static void
tablespace(fx *f, const char *link, const char *location)
{
	entry(f, AGENT_PHYS_TABLESPACE, 0, link, location);
	uint8_t d[SHA256_DIGEST_LENGTH];
	SHA256((const uint8_t *)location, strlen(location), d);
	char hex[65], dir[300], rel[320];
	coffer_hex_encode(d, sizeof(d), hex);
	assert_int_equal(coffer_manifest_add_file(f->m, link, strlen(location), hex, NULL), 0);
	snprintf(dir, sizeof(dir), "%s/PG_15_202209061", link);
	entry(f, AGENT_PHYS_DIR, 0700, dir, NULL);
	snprintf(rel, sizeof(rel), "%s/16384", dir);
	file(f, rel, "tablespace bytes", NULL);
}

static void
test_tablespace(void **state)
{
	fx *f = *state;
	char orig[300], moved[300], map[620], link[700], target[300] = "";
	snprintf(orig, sizeof(orig), "%s/ts-orig", f->dir);
	snprintf(moved, sizeof(moved), "%s/ts-moved", f->dir);
	snprintf(map, sizeof(map), "%s=%s", orig, moved);
	entry(f, AGENT_PHYS_DIR, 0700, "pg_tblspc", NULL);
	tablespace(f, "pg_tblspc/16390", orig);
	file(f, "tablespace_map", "16390 /somewhere\n", NULL);
	end(f);
	/* Where it was, that directory holding something: refused. */
	assert_int_equal(mkdir(orig, 0700), 0);
	char stray[400];
	snprintf(stray, sizeof(stray), "%s/stray", orig);
	assert_int_equal(mkdir(stray, 0700), 0);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), COFFER_EEXIST);
	assert_non_null(strstr(err.msg, "not empty"));
	assert_non_null(strstr(err.hint, "--tablespace-map"));
	assert_false(exists(f, "pgdata/pg_tblspc/16390"));
	/* Mapped elsewhere: linked there, its files inside, tablespace_map gone. */
	rmdir(stray);
	assert_int_equal(unlinkat(f->fd, "pg_tblspc", AT_REMOVEDIR), 0);
	const char *maps[] = { map };
	coffer_err_clear(&err);
	assert_int_equal(feed_mapped(f, 7, maps, 1, &err), 0);
	snprintf(link, sizeof(link), "%s/pgdata/pg_tblspc/16390", f->dir);
	assert_true(readlink(link, target, sizeof(target) - 1) > 0);
	assert_string_equal(target, moved);
	assert_true(exists(f, "ts-moved/PG_15_202209061/16384"));
	assert_file(f, "pg_tblspc/16390/PG_15_202209061/16384", "tablespace bytes");
	assert_false(exists(f, "pgdata/tablespace_map"));
}

static void
test_tablespace_forged(void **state)
{
	fx *f = *state;
	/* A tablespace entry outside pg_tblspc, and one whose location does
	 * not match the manifest: both refused before anything is linked. */
	char loc[300];
	snprintf(loc, sizeof(loc), "%s/ts", f->dir);
	tablespace(f, "base/16390", loc);
	end(f);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "outside pg_tblspc"));
	coffer_manifest_free(f->m);
	assert_int_equal(coffer_manifest_new(&f->m, NULL), 0);
	f->len = 0;
	entry(f, AGENT_PHYS_DIR, 0700, "pg_tblspc", NULL);
	entry(f, AGENT_PHYS_TABLESPACE, 0, "pg_tblspc/1", "/etc");
	uint8_t d[SHA256_DIGEST_LENGTH];
	SHA256((const uint8_t *)"/tmp", 4, d);
	char hex[65];
	coffer_hex_encode(d, sizeof(d), hex);
	assert_int_equal(coffer_manifest_add_file(f->m, "pg_tblspc/1", 4, hex, NULL), 0);
	end(f);
	coffer_err_clear(&err);
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "does not match the manifest"));
	assert_false(exists(f, "pgdata/pg_tblspc/1"));
}

static void
test_byte_at_a_time(void **state)
{
	fx *f = *state;
	sample(f);
	end(f);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, 1, &err), 0);
	assert_file(f, "base/1/1259", "relation bytes");
	assert_file(f, "backup_label", "START WAL LOCATION: 0/2000028\n");
}

static void
test_digest_mismatch(void **state)
{
	fx *f = *state;
	entry(f, AGENT_PHYS_DIR, 0700, "global", NULL);
	file(f, "global/pg_control", "the real bytes", "other bytes");
	end(f);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, 7, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "global/pg_control"));
	assert_true(err.hint[0] != '\0');
}

static void
test_path_escape(void **state)
{
	fx *f = *state;
	const char *bad[] = { "../evil", "/abs", "a//b", "./x", "a/../../evil", "base/.." };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f->len = 0;
		entry(f, AGENT_PHYS_DIR, 0700, bad[i], NULL);
		end(f);
		coffer_err err = { 0 };
		assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
		assert_non_null(strstr(err.msg, "outside the data directory"));
	}
	assert_false(exists(f, "evil"));
	/* A NUL inside the path counts as a different, short name: refused too. */
	f->len = 0;
	uint8_t h[AGENT_PHYS_HEADER_LEN];
	agent_physical_header_encode(h, AGENT_PHYS_DIR, 0700, 3, 0);
	put(f, h, sizeof(h));
	put(f, "a\0b", 3);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
}

static void
test_truncated(void **state)
{
	fx *f = *state;
	sample(f);
	end(f);
	size_t whole = f->len;
	/* Every cut before the end entry is complete fails at finish or sooner. */
	for (size_t cut = 0; cut < whole; cut += 5) {
		char root[600];
		snprintf(root, sizeof(root), "%s/pgdata", f->dir);
		harness_tmpdir_remove(root);
		mkdir(root, 0700);
		close(f->fd);
		f->fd = open(root, O_RDONLY | O_DIRECTORY);
		f->len = cut;
		coffer_err err = { 0 };
		int rc = feed(f, 64, &err);
		assert_true(rc == COFFER_ETRUNC || rc == COFFER_ECORRUPT);
		f->len = whole;
	}
}

static void
test_file_count_mismatch(void **state)
{
	fx *f = *state;
	sample(f);
	end(f);
	/* The manifest lists one more file than the archive holds. */
	assert_int_equal(
	    coffer_manifest_add_file(f->m, "extra", 0,
	        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", NULL),
	    0);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "manifest lists"));
}

static void
test_entry_not_in_manifest(void **state)
{
	fx *f = *state;
	file(f, "PG_VERSION", "15\n", NULL);
	entry(f, AGENT_PHYS_FILE, 0600, "sneaked_in", "x");
	end(f);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "more files than its manifest"));
	assert_false(exists(f, "pgdata/sneaked_in"));
}

static void
test_data_after_end(void **state)
{
	fx *f = *state;
	file(f, "PG_VERSION", "15\n", NULL);
	end(f);
	put(f, "junk", 4);
	coffer_err err = { 0 };
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "after its end entry"));
}

static void
test_existing_file(void **state)
{
	fx *f = *state;
	char path[600];
	snprintf(path, sizeof(path), "%s/pgdata/PG_VERSION", f->dir);
	FILE *fp = fopen(path, "w");
	fputs("keep me", fp);
	fclose(fp);
	file(f, "PG_VERSION", "15\n", NULL);
	end(f);
	coffer_err err = { 0 };
	/* The target was checked empty: an entry there is corruption. */
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_file(f, "PG_VERSION", "keep me");
	/* A directory too, and a symbolic link in the way of a file. */
	char outside[600];
	snprintf(outside, sizeof(outside), "%s/outside", f->dir);
	assert_int_equal(mkdir(outside, 0700), 0);
	f->len = 0;
	coffer_manifest_free(f->m);
	assert_int_equal(coffer_manifest_new(&f->m, NULL), 0);
	entry(f, AGENT_PHYS_DIR, 0700, "global", NULL);
	file(f, "global/pg_control", "x", NULL);
	end(f);
	assert_int_equal(symlinkat(outside, f->fd, "global"), 0);
	coffer_err_clear(&err);
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_int_equal(unlinkat(f->fd, "global", 0), 0);
	assert_int_equal(mkdirat(f->fd, "global", 0700), 0);
	assert_int_equal(symlinkat(outside, f->fd, "global/pg_control"), 0);
	coffer_err_clear(&err);
	/* feed makes "global" first: it exists, refused before the link. */
	assert_int_equal(feed(f, f->len, &err), COFFER_ECORRUPT);
	assert_false(exists(f, "outside/pg_control"));
}

static void
test_headers(void **state)
{
	(void)state;
	uint8_t h[AGENT_PHYS_HEADER_LEN];
	char type;
	uint32_t mode;
	uint16_t plen;
	uint64_t size;
	coffer_err err = { 0 };
	agent_physical_header_encode(h, AGENT_PHYS_FILE, 0640, 10, 1ULL << 40);
	assert_int_equal(agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), 0);
	assert_int_equal(type, AGENT_PHYS_FILE);
	assert_int_equal(mode, 0640);
	assert_int_equal(plen, 10);
	assert_true(size == 1ULL << 40);

	memcpy(h, "XXXX", 4);
	assert_int_equal(
	    agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), COFFER_ECORRUPT);
	agent_physical_header_encode(h, 'q', 0600, 1, 0);
	assert_int_equal(
	    agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), COFFER_ECORRUPT);
	agent_physical_header_encode(h, AGENT_PHYS_DIR, 0700, 1, 5); /* a directory with bytes */
	assert_int_equal(
	    agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), COFFER_ECORRUPT);
	agent_physical_header_encode(h, AGENT_PHYS_FILE, 0600, 0, 0); /* no name */
	assert_int_equal(
	    agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), COFFER_ECORRUPT);
	agent_physical_header_encode(h, AGENT_PHYS_FILE, 0600, AGENT_PHYS_PATH_MAX + 1, 0);
	assert_int_equal(
	    agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), COFFER_ECORRUPT);
	agent_physical_header_encode(h, AGENT_PHYS_END, 0, 2, 0);
	assert_int_equal(
	    agent_physical_header_decode(h, &type, &mode, &plen, &size, &err), COFFER_ECORRUPT);
}

static void
test_skip_rules(void **state)
{
	(void)state;
	bool keep = true;
	assert_true(agent_physical_skip("postmaster.pid", false, &keep));
	assert_true(agent_physical_skip("backup_label", false, &keep));
	assert_true(agent_physical_skip("global/pg_internal.init", false, &keep));
	assert_true(agent_physical_skip("base/pgsql_tmp", true, &keep));
	assert_false(keep);
	assert_true(agent_physical_skip("base/1/pgsql_tmp123.0", false, &keep));
	assert_true(agent_physical_skip("pg_wal", true, &keep));
	assert_true(keep);
	assert_true(agent_physical_skip("pg_replslot", true, &keep));
	assert_true(keep);
	assert_false(agent_physical_skip("global/pg_control", false, &keep));
	assert_false(
	    agent_physical_skip("base/1/postmaster.pid", false, &keep)); /* top level only */
	assert_false(agent_physical_skip("base", true, &keep));
	assert_false(keep);
	assert_false(agent_physical_skip("pg_xact", true, &keep));
	assert_false(agent_physical_skip("postgresql.auto.conf", false, &keep));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_byte_at_a_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tablespace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tablespace_forged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_escape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_count_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_entry_not_in_manifest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_after_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_existing_file, setup, teardown),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_skip_rules),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
