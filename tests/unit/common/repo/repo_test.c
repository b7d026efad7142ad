/* Repository (posix driver) against a real directory: atomic publish,
 * aborts that leave nothing, readers that never see temporaries, overwrite
 * refusal (also under a race), capabilities, key validation, sorted listing,
 * delete with pruning, and ENOSPC on a tiny tmpfs when we may mount one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/repo/repo.h"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];
	coffer_repo_config cfg;
	coffer_repo *rw;  /* READ | WRITE: what an agent gets */
	coffer_repo *all; /* READ | WRITE | DELETE: what retention gets */
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("repo-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	f->cfg.type = "posix";
	f->cfg.path = f->dir;
	coffer_err err = { 0 };
	if (coffer_repo_open(&f->cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &f->rw, &err) != 0 ||
	    coffer_repo_open(&f->cfg, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE,
	        &f->all, &err) != 0) {
		return (-1);
	}
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	coffer_repo_close(f->rw);
	coffer_repo_close(f->all);
	/* test_enospc's tmpfs, if a failed assertion left it mounted. */
	char mnt[600];
	snprintf(mnt, sizeof(mnt), "%s/small", f->dir);
	(void)umount2(mnt, MNT_DETACH);
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

/* A sink that keeps what it is given, and can be told to fail. */
struct collect {
	coffer_filter base;
	uint8_t *buf;
	size_t len;
	size_t cap;
	int finished;
	int fail;
};

static int
collect_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct collect *c = (struct collect *)f;
	if (c->fail) {
		return (coffer_err_set(err, COFFER_ECORRUPT, "collect told to fail"));
	}
	if (c->len + len > c->cap) {
		c->cap = (c->len + len) * 2;
		c->buf = realloc(c->buf, c->cap);
		assert_non_null(c->buf);
	}
	memcpy(c->buf + c->len, buf, len);
	c->len += len;
	return (0);
}

static int
collect_finish(coffer_filter *f, coffer_err *err)
{
	(void)err;
	((struct collect *)f)->finished++;
	return (0);
}

static void
collect_destroy(coffer_filter *f)
{
	(void)f;
}

static const coffer_filter_ops collect_ops = {
	.name = "collect",
	.write = collect_write,
	.finish = collect_finish,
	.destroy = collect_destroy,
};

static void
collect_init(struct collect *c)
{
	memset(c, 0, sizeof(*c));
	c->base.ops = &collect_ops;
}

static void
pattern(uint8_t *buf, size_t len, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
}

static void
put_object(coffer_repo *repo, const char *key, const uint8_t *data, size_t len)
{
	coffer_err err = { 0 };
	coffer_filter *sink;
	assert_int_equal(coffer_repo_write_begin(repo, key, &sink, &err), 0);
	/* Uneven pieces, so the sink's buffering is crossed at odd places. */
	size_t off = 0;
	size_t step = 1;
	while (off < len) {
		size_t n = len - off < step ? len - off : step;
		assert_int_equal(coffer_filter_write(sink, data + off, n, &err), 0);
		off += n;
		step = step * 3 + 7;
	}
	assert_int_equal(coffer_filter_finish(sink, &err), 0);
	assert_int_equal(coffer_repo_write_commit(sink, &err), 0);
	coffer_filter_free(sink);
}

static void
get_object(coffer_repo *repo, const char *key, struct collect *c)
{
	coffer_err err = { 0 };
	collect_init(c);
	assert_int_equal(coffer_repo_read(repo, key, &c->base, &err), 0);
	assert_int_equal(c->finished, 1);
}

struct listed {
	char keys[64][COFFER_REPO_KEY_MAX + 1];
	uint64_t sizes[64];
	size_t n;
	size_t stop_after;
	int fail;
};

static int
list_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	struct listed *l = arg;
	if (l->fail) {
		return (COFFER_EPROTO);
	}
	assert_true(l->n < 64);
	snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
	l->sizes[l->n] = info->size;
	l->n++;
	return (l->stop_after > 0 && l->n >= l->stop_after ? 1 : 0);
}

static size_t
list_keys(coffer_repo *repo, const char *prefix, struct listed *l)
{
	coffer_err err = { 0 };
	memset(l, 0, sizeof(*l));
	assert_int_equal(coffer_repo_list(repo, prefix, list_cb, l, &err), 0);
	return (l->n);
}

/* Counts every directory entry below dir, hidden ones included. */
static size_t
count_files(const char *dir, int *hidden)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		return (0);
	}
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
			continue;
		}
		char path[2048];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat st;
		assert_int_equal(lstat(path, &st), 0);
		if (S_ISDIR(st.st_mode)) {
			n += count_files(path, hidden);
		} else {
			n++;
			if (de->d_name[0] == '.') {
				(*hidden)++;
			}
		}
	}
	closedir(d);
	return (n);
}

static void
test_round_trip_sizes(void **state)
{
	struct fixture *f = *state;
	static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 300001 };
	uint8_t *data = malloc(300001);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char key[128];
		coffer_err err = { 0 };
		assert_int_equal(coffer_repo_backup_key(key, sizeof(key), "billing",
		                     "20261124T155603Z-l-3fa2c1", "data", &err),
		    0);
		char k2[160];
		snprintf(k2, sizeof(k2), "%s-%zu", key, sizes[i]);
		pattern(data, sizes[i], (unsigned)i);
		put_object(f->rw, k2, data, sizes[i]);
		struct collect c;
		get_object(f->rw, k2, &c);
		assert_int_equal(c.len, sizes[i]);
		if (sizes[i] > 0) {
			assert_memory_equal(c.buf, data, sizes[i]);
		}
		free(c.buf);
		coffer_repo_info info;
		assert_int_equal(coffer_repo_stat(f->rw, k2, &info, &err), 0);
		assert_int_equal(info.size, sizes[i]);
		assert_true(info.mtime_ms > 0);
	}
	free(data);
	int hidden = 0;
	assert_int_equal(count_files(f->dir, &hidden), 6);
	assert_int_equal(hidden, 0);
	assert_string_equal(coffer_repo_type(f->rw), "posix");
	assert_true((coffer_repo_features(f->rw) & COFFER_REPO_FEATURE_PATH) != 0);
}

static void
test_abort_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	uint8_t data[100000];
	pattern(data, sizeof(data), 7);
	const char *key = "services/billing/backups/x/data";

	/* Explicit abort, then free. */
	coffer_filter *sink;
	assert_int_equal(coffer_repo_write_begin(f->rw, key, &sink, &err), 0);
	assert_int_equal(coffer_filter_write(sink, data, sizeof(data), &err), 0);
	int hidden = 0;
	assert_int_equal(count_files(f->dir, &hidden), 1);
	assert_int_equal(hidden, 1);
	coffer_repo_write_abort(sink);
	coffer_repo_write_abort(sink); /* harmless twice */
	assert_int_equal(coffer_repo_write_commit(sink, &err), COFFER_EINTERNAL);
	coffer_filter_free(sink);
	hidden = 0;
	assert_int_equal(count_files(f->dir, &hidden), 0);

	/* Freeing an uncommitted sink aborts it. */
	assert_int_equal(coffer_repo_write_begin(f->rw, key, &sink, &err), 0);
	assert_int_equal(coffer_filter_write(sink, data, 10, &err), 0);
	coffer_filter_free(sink);
	assert_int_equal(count_files(f->dir, &hidden), 0);
	struct listed l;
	assert_int_equal(list_keys(f->rw, "", &l), 0);
	assert_int_equal(
	    coffer_repo_stat(f->rw, key, &(coffer_repo_info) { 0 }, &err), COFFER_ENOENT);

	/* A failed write cannot be committed, and leaves nothing behind. */
	struct collect c;
	collect_init(&c);
	assert_int_equal(coffer_repo_write_begin(f->rw, key, &sink, &err), 0);
	c.base.next = sink; /* a test double on the stack: linked by hand */
	coffer_filter *chain = &c.base;
	c.fail = 1;
	assert_int_equal(coffer_filter_write(chain, data, 10, &err), COFFER_ECORRUPT);
	sink->failed = 1; /* as a failed write further down would leave it */
	assert_int_equal(coffer_repo_write_commit(sink, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "not published"));
	coffer_filter_free(sink);
	assert_int_equal(count_files(f->dir, &hidden), 0);
	/* Commit refuses a filter that is not a repository sink. */
	assert_int_equal(coffer_repo_write_commit(&c.base, &err), COFFER_EINTERNAL);
}

static void
test_reader_never_sees_temporary(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	const char *key = "services/billing/wal/00000001/000000010000000000000001";
	coffer_filter *sink;
	assert_int_equal(coffer_repo_write_begin(f->rw, key, &sink, &err), 0);
	uint8_t data[200000];
	pattern(data, sizeof(data), 3);
	assert_int_equal(coffer_filter_write(sink, data, sizeof(data), &err), 0);
	struct listed l;
	assert_int_equal(list_keys(f->rw, "", &l), 0);
	assert_int_equal(list_keys(f->rw, "services/billing/wal/00000001/", &l), 0);
	assert_int_equal(list_keys(f->rw, "services/billing/wal/00000001/.", &l), 0);
	assert_int_equal(
	    coffer_repo_read(f->rw, key, &(struct collect) { .base.ops = &collect_ops }.base, &err),
	    COFFER_ENOENT);
	assert_int_equal(coffer_repo_write_commit(sink, &err), 0);
	coffer_filter_free(sink);
	assert_int_equal(list_keys(f->rw, "services/", &l), 1);
	assert_string_equal(l.keys[0], key);
	assert_int_equal(l.sizes[0], sizeof(data));
}

static void
test_overwrite_refused(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	const char *key = "services/billing/backups/b1/manifest.json";
	put_object(f->rw, key, (const uint8_t *)"first", 5);
	coffer_filter *sink = NULL;
	assert_int_equal(coffer_repo_write_begin(f->rw, key, &sink, &err), COFFER_EEXIST);
	assert_null(sink);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_true(err.hint[0] != '\0');

	/* Overwrite destroys the old object: it needs the delete capability. */
	assert_int_equal(
	    coffer_repo_write_begin_flags(f->rw, key, COFFER_REPO_OVERWRITE, &sink, &err),
	    COFFER_EPERM);
	assert_int_equal(
	    coffer_repo_write_begin_flags(f->all, key, COFFER_REPO_OVERWRITE, &sink, &err), 0);
	assert_int_equal(coffer_filter_write(sink, "second", 6, &err), 0);
	assert_int_equal(coffer_repo_write_commit(sink, &err), 0);
	coffer_filter_free(sink);
	struct collect c;
	get_object(f->rw, key, &c);
	assert_int_equal(c.len, 6);
	assert_memory_equal(c.buf, "second", 6);
	free(c.buf);

	/* Two writers race for one new key: the second commit loses cleanly. */
	const char *k2 = "services/billing/backups/b2/data";
	coffer_filter *a;
	coffer_filter *b;
	assert_int_equal(coffer_repo_write_begin(f->rw, k2, &a, &err), 0);
	assert_int_equal(coffer_repo_write_begin(f->rw, k2, &b, &err), 0);
	assert_int_equal(coffer_filter_write(a, "aaaa", 4, &err), 0);
	assert_int_equal(coffer_filter_write(b, "bbbbbbbb", 8, &err), 0);
	assert_int_equal(coffer_repo_write_commit(a, &err), 0);
	assert_int_equal(coffer_repo_write_commit(b, &err), COFFER_EEXIST);
	coffer_filter_free(a);
	coffer_filter_free(b);
	get_object(f->rw, k2, &c);
	assert_int_equal(c.len, 4);
	assert_memory_equal(c.buf, "aaaa", 4);
	free(c.buf);
	int hidden = 0;
	assert_int_equal(count_files(f->dir, &hidden), 2);
	assert_int_equal(hidden, 0);

	/* An object's key cannot also be a directory on the way to another. */
	assert_int_equal(
	    coffer_repo_write_begin(f->rw, "services/billing/backups/b2/data/x", &sink, &err),
	    COFFER_EEXIST);
}

static void
test_capabilities(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	const char *key = "services/billing/backups/b1/data";
	put_object(f->rw, key, (const uint8_t *)"x", 1);

	assert_int_equal(coffer_repo_delete(f->rw, key, &err), COFFER_EPERM);
	assert_non_null(strstr(err.msg, "delete capability"));
	assert_true(err.hint[0] != '\0');
	coffer_repo_info info;
	assert_int_equal(coffer_repo_stat(f->rw, key, &info, &err), 0);

	coffer_repo *ro;
	assert_int_equal(coffer_repo_open(&f->cfg, COFFER_REPO_READ, &ro, &err), 0);
	coffer_filter *sink;
	assert_int_equal(coffer_repo_write_begin(ro, "a/b", &sink, &err), COFFER_EPERM);
	assert_int_equal(coffer_repo_delete(ro, key, &err), COFFER_EPERM);
	coffer_repo_close(ro);

	coffer_repo *wo;
	assert_int_equal(coffer_repo_open(&f->cfg, COFFER_REPO_WRITE, &wo, &err), 0);
	struct collect c;
	collect_init(&c);
	assert_int_equal(coffer_repo_read(wo, key, &c.base, &err), COFFER_EPERM);
	struct listed l;
	assert_int_equal(coffer_repo_list(wo, "", list_cb, &l, &err), COFFER_EPERM);
	coffer_repo_close(wo);

	coffer_repo *none;
	assert_int_equal(coffer_repo_open(&f->cfg, 0, &none, &err), COFFER_EINTERNAL);
	assert_int_equal(coffer_repo_open(&f->cfg, 0x80, &none, &err), COFFER_EINTERNAL);
}

static void
test_delete(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	put_object(f->rw, "services/billing/backups/b1/data", (const uint8_t *)"d", 1);
	put_object(f->rw, "services/billing/backups/b1/manifest.json", (const uint8_t *)"m", 1);
	put_object(f->rw, "services/billing/backups/b2/data", (const uint8_t *)"d", 1);

	assert_int_equal(coffer_repo_delete(f->all, "services/billing/backups/b1/data", &err), 0);
	assert_int_equal(
	    coffer_repo_delete(f->all, "services/billing/backups/b1/data", &err), COFFER_ENOENT);
	/* A directory is not an object. */
	assert_int_equal(
	    coffer_repo_delete(f->all, "services/billing/backups/b1", &err), COFFER_ENOENT);
	assert_int_equal(
	    coffer_repo_delete(f->all, "services/billing/backups/b1/manifest.json", &err), 0);
	/* The emptied backup directory went with it; its siblings stayed. */
	char path[1024];
	struct stat st;
	snprintf(path, sizeof(path), "%s/services/billing/backups/b1", f->dir);
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/services/billing/backups/b2", f->dir);
	assert_int_equal(stat(path, &st), 0);
	/* Writing again where a directory was pruned works. */
	put_object(f->rw, "services/billing/backups/b1/data", (const uint8_t *)"again", 5);
	struct listed l;
	assert_int_equal(list_keys(f->rw, "services/billing/backups/", &l), 2);
	assert_string_equal(l.keys[0], "services/billing/backups/b1/data");
	assert_string_equal(l.keys[1], "services/billing/backups/b2/data");
	/* The repository root itself is never removed. */
	assert_int_equal(coffer_repo_delete(f->all, "services/billing/backups/b1/data", &err), 0);
	assert_int_equal(coffer_repo_delete(f->all, "services/billing/backups/b2/data", &err), 0);
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(list_keys(f->rw, "", &l), 0);
}

static void
test_bad_keys(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"",
		"/abs",
		"a//b",
		"a/",
		"../x",
		"a/../b",
		"a/./b",
		".hidden",
		"a/.tmp",
		"sp ace",
		"tab\tkey",
		"back\\slash",
		"nl\n",
		"caf\xc3\xa9",
		"a/..",
		"..",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		coffer_err err = { 0 };
		coffer_filter *sink = NULL;
		assert_int_equal(coffer_repo_key_check(bad[i], &err), COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "invalid repository key"));
		assert_true(err.hint[0] != '\0');
		assert_int_equal(
		    coffer_repo_write_begin(f->all, bad[i], &sink, &err), COFFER_EINVAL);
		assert_null(sink);
		struct collect c;
		collect_init(&c);
		assert_int_equal(coffer_repo_read(f->all, bad[i], &c.base, &err), COFFER_EINVAL);
		coffer_repo_info info;
		assert_int_equal(coffer_repo_stat(f->all, bad[i], &info, &err), COFFER_EINVAL);
		assert_int_equal(coffer_repo_delete(f->all, bad[i], &err), COFFER_EINVAL);
	}
	char long_seg[260];
	memset(long_seg, 'a', 201);
	long_seg[201] = '\0';
	assert_int_equal(coffer_repo_key_check(long_seg, NULL), COFFER_EINVAL);
	long_seg[200] = '\0';
	assert_int_equal(coffer_repo_key_check(long_seg, NULL), 0);
	char deep[400] = "";
	for (int i = 0; i < 65; i++) {
		strcat(deep, i == 0 ? "d" : "/d");
	}
	assert_int_equal(coffer_repo_key_check(deep, NULL), COFFER_EINVAL);
	assert_int_equal(coffer_repo_key_check("services/billing/wal/00000001/0000000100000000"
	                                       "00000002.partial",
	                     NULL),
	    0);
	assert_int_equal(coffer_repo_key_check("audit/2026-11-24/000001", NULL), 0);

	/* List prefixes follow the same rules for their complete segments. */
	struct listed l;
	coffer_err err = { 0 };
	assert_int_equal(coffer_repo_list(f->rw, "../", list_cb, &l, &err), COFFER_EINVAL);
	assert_int_equal(coffer_repo_list(f->rw, "/x", list_cb, &l, &err), COFFER_EINVAL);
	assert_int_equal(coffer_repo_list(f->rw, "a//", list_cb, &l, &err), COFFER_EINVAL);
	assert_int_equal(coffer_repo_list(f->rw, "a b", list_cb, &l, &err), COFFER_EINVAL);
}

static void
test_list_order_and_prefix(void **state)
{
	struct fixture *f = *state;
	/* Bytewise order of whole keys: '-' (0x2d) < '.' < '/' (0x2f) < '0'. */
	static const char *const keys[] = {
		"a/y/z",
		"a-b",
		"b",
		"a/x",
		"a.c",
		"a0",
		"a/y-1",
		"a/y/a",
		"services/s/backups/1/data",
	};
	size_t n = sizeof(keys) / sizeof(keys[0]);
	for (size_t i = 0; i < n; i++) {
		put_object(f->rw, keys[i], (const uint8_t *)keys[i], strlen(keys[i]));
	}
	static const char *const sorted[] = {
		"a-b",
		"a.c",
		"a/x",
		"a/y-1",
		"a/y/a",
		"a/y/z",
		"a0",
		"b",
		"services/s/backups/1/data",
	};
	struct listed l;
	assert_int_equal(list_keys(f->rw, "", &l), n);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(l.keys[i], sorted[i]);
		assert_int_equal(l.sizes[i], strlen(sorted[i]));
	}
	assert_int_equal(list_keys(f->rw, "a", &l), 7);
	assert_int_equal(list_keys(f->rw, "a/", &l), 4);
	assert_string_equal(l.keys[0], "a/x");
	assert_int_equal(list_keys(f->rw, "a/y", &l), 3);
	assert_string_equal(l.keys[0], "a/y-1");
	assert_int_equal(list_keys(f->rw, "a/y/", &l), 2);
	assert_int_equal(list_keys(f->rw, "a/y/z", &l), 1);
	assert_int_equal(list_keys(f->rw, "a/y/zz", &l), 0);
	assert_int_equal(list_keys(f->rw, "nothing/here/", &l), 0);
	assert_int_equal(list_keys(f->rw, "b/", &l), 0); /* an object, not a directory */

	/* Stop early; fail from the callback. */
	coffer_err err = { 0 };
	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	assert_int_equal(coffer_repo_list(f->rw, "", list_cb, &l, &err), 0);
	assert_int_equal(l.n, 2);
	memset(&l, 0, sizeof(l));
	l.fail = 1;
	assert_int_equal(coffer_repo_list(f->rw, "", list_cb, &l, &err), COFFER_EPROTO);
}

static void
test_read_errors(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	struct collect c;
	collect_init(&c);
	assert_int_equal(coffer_repo_read(f->rw, "no/such/object", &c.base, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.msg, "does not exist"));
	put_object(f->rw, "dir/obj", (const uint8_t *)"abc", 3);
	assert_int_equal(coffer_repo_read(f->rw, "dir", &c.base, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.msg, "directory"));
	coffer_repo_info info;
	assert_int_equal(coffer_repo_stat(f->rw, "dir", &info, &err), COFFER_ENOENT);
	assert_int_equal(coffer_repo_stat(f->rw, "dir/obj/more", &info, &err), COFFER_ENOENT);
	/* The chain's own failure comes back unchanged. */
	c.fail = 1;
	assert_int_equal(coffer_repo_read(f->rw, "dir/obj", &c.base, &err), COFFER_ECORRUPT);
	assert_int_equal(c.finished, 0);
	/* A symlink planted in the repository is not followed. */
	char path[1024];
	snprintf(path, sizeof(path), "%s/dir/link", f->dir);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	collect_init(&c);
	assert_int_equal(coffer_repo_read(f->rw, "dir/link", &c.base, &err), COFFER_ENOENT);
	struct listed l;
	assert_int_equal(list_keys(f->rw, "dir/", &l), 1);
}

static void
test_open_errors(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	coffer_repo *r = NULL;
	char missing[600];
	snprintf(missing, sizeof(missing), "%s/missing", f->dir);
	coffer_repo_config cfg = { .type = "posix", .path = missing };
	assert_int_equal(coffer_repo_open(&cfg, COFFER_REPO_READ, &r, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.hint, "mkdir -p"));
	cfg.path = "";
	assert_int_equal(coffer_repo_open(&cfg, COFFER_REPO_READ, &r, &err), COFFER_EINVAL);
	cfg.type = "s3";
	cfg.bucket = "b";
	assert_int_equal(coffer_repo_open(&cfg, COFFER_REPO_READ, &r, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "s3 bucket name \"b\" is not valid"));
	cfg.type = "ftp";
	assert_int_equal(coffer_repo_open(&cfg, COFFER_REPO_READ, &r, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "unknown repository type"));
	assert_null(r);
	/* type NULL means posix; a trailing '/' on the path is fine. */
	char slashed[600];
	snprintf(slashed, sizeof(slashed), "%s/", f->dir);
	coffer_repo_config dflt = { .path = slashed };
	assert_int_equal(coffer_repo_open(&dflt, COFFER_REPO_READ, &r, &err), 0);
	coffer_repo_close(r);
}

static void
test_layout_helpers(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	char buf[256];
	assert_int_equal(coffer_repo_backup_key(buf, sizeof(buf), "billing",
	                     "20261124T155603Z-l-3fa2c1", "manifest.json", &err),
	    0);
	assert_string_equal(
	    buf, "services/billing/backups/20261124T155603Z-l-3fa2c1/manifest.json");
	assert_int_equal(coffer_repo_backup_key(buf, sizeof(buf), "billing", "id", "other", &err),
	    COFFER_EINVAL);
	assert_int_equal(coffer_repo_backup_key(buf, sizeof(buf), "bil/ling", "id", "data", &err),
	    COFFER_EINVAL);
	assert_int_equal(
	    coffer_repo_backup_key(buf, sizeof(buf), "..", "id", "data", &err), COFFER_EINVAL);
	assert_int_equal(
	    coffer_repo_backup_key(buf, 20, "billing", "id", "data", &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "does not fit"));
	assert_int_equal(coffer_repo_wal_key(buf, sizeof(buf), "billing", 7312345678901234567ull,
	                     0x1c, "0000001C000000A2000000FF", &err),
	    0);
	assert_string_equal(
	    buf, "services/billing/wal/7312345678901234567/0000001C/0000001C000000A2000000FF");
	assert_int_equal(
	    coffer_repo_wal_key(buf, sizeof(buf), "billing", 7, 0, "x", &err), COFFER_EINVAL);
	assert_int_equal(
	    coffer_repo_wal_key(buf, sizeof(buf), "billing", 7, 1, "", &err), COFFER_EINVAL);
	assert_int_equal(coffer_repo_wal_key(
	                     buf, sizeof(buf), "billing", 0, 1, "000000010000000000000001", &err),
	    COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "system identifier"));
	assert_int_equal(coffer_repo_backups_prefix(buf, sizeof(buf), "billing", &err), 0);
	assert_string_equal(buf, "services/billing/backups/");
}

/* ENOSPC needs a full file system: a 64 KiB tmpfs, if we may mount one. */
static void
test_enospc(void **state)
{
	struct fixture *f = *state;
	char mnt[600];
	snprintf(mnt, sizeof(mnt), "%s/small", f->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
		skip();
	}
	coffer_err err = { 0 };
	coffer_repo_config cfg = { .type = "posix", .path = mnt };
	coffer_repo *r;
	assert_int_equal(coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &r, &err), 0);
	coffer_filter *sink;
	assert_int_equal(coffer_repo_write_begin(r, "services/s/backups/b/data", &sink, &err), 0);
	static uint8_t data[65536];
	int rc = 0;
	for (int i = 0; i < 8 && rc == 0; i++) {
		rc = coffer_filter_write(sink, data, sizeof(data), &err);
	}
	if (rc == 0) {
		rc = coffer_repo_write_commit(sink, &err);
	}
	assert_int_equal(rc, COFFER_ENOSPC);
	assert_non_null(strstr(err.hint, "free space"));
	coffer_filter_free(sink);
	int hidden = 0;
	assert_int_equal(count_files(mnt, &hidden), 0);
	struct listed l;
	assert_int_equal(list_keys(r, "", &l), 0);
	coffer_repo_close(r);
	assert_int_equal(umount(mnt), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_never_sees_temporary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overwrite_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_order_and_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_layout_helpers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
