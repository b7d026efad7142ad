/* Durable files (common/base/durable.h): the content lands whole under its
 * name with the mode asked for whatever the umask, an existing file is
 * replaced or (no_replace) kept, and every failure -- a directory in the
 * way, a link planted at the temporary's name, a missing directory --
 * leaves the old file as it was and no temporary behind. */
#include <dirent.h>
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

#include "common/base/durable.h"

struct fixture {
	char dir[512];
	char path[600];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *base = getenv("COFFER_TEST_TMP");
	if (base == NULL || base[0] == '\0') {
		base = "/tmp";
	}
	mkdir(base, 0700);
	snprintf(f->dir, sizeof(f->dir), "%s/durable-test-XXXXXX", base);
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return (-1);
	}
	snprintf(f->path, sizeof(f->path), "%s/state", f->dir);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return (0);
}

static void
read_back(const char *path, char *buf, size_t size)
{
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	size_t n = fread(buf, 1, size - 1, fp);
	buf[n] = '\0';
	fclose(fp);
}

/* Entries in dir other than the ones named: a temporary left behind. */
static int
strays(const char *dir, const char *keep1, const char *keep2)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    strcmp(de->d_name, keep1) != 0 &&
		    (keep2 == NULL || strcmp(de->d_name, keep2) != 0)) {
			n++;
		}
	}
	closedir(d);
	return (n);
}

static void
test_replace_and_mode(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	mode_t old = umask(077);
	coffer_durable_opts opts = { .mode = 0640 };
	assert_int_equal(coffer_durable_replace(f->path, "one\n", 4, &opts, &err), 0);
	umask(old);
	char buf[64];
	read_back(f->path, buf, sizeof(buf));
	assert_string_equal(buf, "one\n");
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* Replaced whole, default mode 0600. */
	assert_int_equal(coffer_durable_replace(f->path, "two", 3, NULL, &err), 0);
	read_back(f->path, buf, sizeof(buf));
	assert_string_equal(buf, "two");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(strays(f->dir, "state", NULL), 0);
	/* An empty file is a file too. */
	assert_int_equal(coffer_durable_replace(f->path, "", 0, NULL, &err), 0);
	read_back(f->path, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
test_no_replace_keeps_the_old(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	coffer_durable_opts opts = { .no_replace = true };
	assert_int_equal(coffer_durable_replace(f->path, "first", 5, &opts, &err), 0);
	assert_int_equal(coffer_durable_replace(f->path, "second", 6, &opts, &err), COFFER_EEXIST);
	assert_non_null(strstr(err.msg, "already exists"));
	char buf[64];
	read_back(f->path, buf, sizeof(buf));
	assert_string_equal(buf, "first");
	assert_int_equal(strays(f->dir, "state", NULL), 0);
	/* A dangling link at the name is an existing name, not a way out. */
	char link_path[700];
	snprintf(link_path, sizeof(link_path), "%s/key", f->dir);
	assert_int_equal(symlink("/nonexistent/elsewhere", link_path), 0);
	assert_int_equal(coffer_durable_replace(link_path, "k", 1, &opts, &err), COFFER_EEXIST);
	struct stat st;
	assert_int_equal(stat("/nonexistent/elsewhere", &st), -1);
}

static void
test_failures_leave_the_old_file(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	assert_int_equal(coffer_durable_replace(f->path, "kept", 4, NULL, &err), 0);
	/* A link planted at the temporary's name is not followed. */
	char tmp[700], target[700];
	snprintf(tmp, sizeof(tmp), "%s/state.%ld.tmp", f->dir, (long)getpid());
	snprintf(target, sizeof(target), "%s/victim", f->dir);
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_not_equal(coffer_durable_replace(f->path, "new", 3, NULL, &err), 0);
	assert_non_null(strstr(err.msg, "creating"));
	struct stat st;
	assert_int_equal(lstat(target, &st), -1);
	unlink(tmp);
	char buf[64];
	read_back(f->path, buf, sizeof(buf));
	assert_string_equal(buf, "kept");
	/* A directory in the way of the rename. */
	char sub[700], inner[720];
	snprintf(sub, sizeof(sub), "%s/busy", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(inner, sizeof(inner), "%s/x", sub);
	assert_int_equal(coffer_durable_replace(inner, "x", 1, NULL, &err), 0);
	assert_int_not_equal(coffer_durable_replace(sub, "y", 1, NULL, &err), 0);
	assert_non_null(strstr(err.msg, "renaming into place"));
	assert_int_equal(strays(f->dir, "state", "busy"), 0);
	/* No directory at all. */
	char missing[700];
	snprintf(missing, sizeof(missing), "%s/no/such/file", f->dir);
	assert_int_not_equal(coffer_durable_replace(missing, "z", 1, NULL, &err), 0);
	assert_int_not_equal(coffer_durable_fsync_dir_of(missing, &err), 0);
	assert_int_equal(coffer_durable_fsync_dir_of(f->path, &err), 0);
	assert_int_equal(coffer_durable_fsync_dir_of("relative-name", &err), 0);
}

static void
test_at_with_fixed_temporary(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	int dfd = open(f->dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	coffer_durable_opts opts = {
		.tmp = "state.tmp", .chown = true, .uid = getuid(), .gid = getgid()
	};
	assert_int_equal(coffer_durable_replace_at(dfd, f->dir, "state", "abc", 3, &opts, &err), 0);
	assert_int_equal(coffer_durable_fsync_dirfd(dfd, f->dir, &err), 0);
	close(dfd);
	char buf[64];
	read_back(f->path, buf, sizeof(buf));
	assert_string_equal(buf, "abc");
	assert_int_equal(strays(f->dir, "state", NULL), 0);
}

static void
test_write_all(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(coffer_durable_write_all(p[1], "hello", 5), 0);
	char buf[8] = { 0 };
	assert_int_equal(read(p[0], buf, sizeof(buf)), 5);
	assert_string_equal(buf, "hello");
	close(p[0]);
	close(p[1]);
	assert_int_not_equal(coffer_durable_write_all(p[1], "x", 1), 0); /* EBADF */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_replace_and_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_replace_keeps_the_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures_leave_the_old_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_at_with_fixed_temporary, setup, teardown),
		cmocka_unit_test(test_write_all),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
