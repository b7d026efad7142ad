/* Confined paths on a real directory tree, each case twice: with openat2
 * and with the per-component O_NOFOLLOW walk used where openat2 is missing.
 * A symbolic link at every component (relative, absolute, pointing back
 * inside), ".." and absolute paths, an entry that exists already (a file, a
 * directory, a link, a hard link to a file outside): each refused with its
 * one error, and nothing appears outside the root. */
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

#include <cmocka.h>

#include "agent/restore/confined.h"
#include "tests/harness/tmpdir.h"

typedef struct fx {
	char dir[256];
	char outside[300];
	int root;
} fx;

static int
setup(void **state, bool walk)
{
	fx *f = calloc(1, sizeof(*f));
	if (f == NULL || harness_tmpdir_make("confined-test", f->dir, sizeof(f->dir)) != 0) {
		return (-1);
	}
	char root[300];
	snprintf(root, sizeof(root), "%s/root", f->dir);
	snprintf(f->outside, sizeof(f->outside), "%s/outside", f->dir);
	if (mkdir(root, 0700) != 0 || mkdir(f->outside, 0700) != 0) {
		return (-1);
	}
	f->root = open(root, O_RDONLY | O_DIRECTORY);
	agent_confined_force_walk(walk);
	*state = f;
	return (f->root >= 0 ? 0 : -1);
}

static int
setup_openat2(void **state)
{
	return (setup(state, false));
}

static int
setup_walk(void **state)
{
	return (setup(state, true));
}

static int
teardown(void **state)
{
	fx *f = *state;
	agent_confined_force_walk(false);
	close(f->root);
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

/* Nothing was made in outside/. */
static void
assert_outside_empty(fx *f)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/x", f->outside);
	struct stat st;
	assert_int_not_equal(lstat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/d", f->outside);
	assert_int_not_equal(lstat(path, &st), 0);
}

static void
test_path_rule(void **state)
{
	(void)state;
	assert_true(agent_confined_path_ok("a"));
	assert_true(agent_confined_path_ok("a/b/c"));
	assert_true(agent_confined_path_ok("..a/b.."));
	const char *bad[] = { "", "/a", "a/", "a//b", ".", "./a", "..", "a/../b", "a/..", "a\nb" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(agent_confined_path_ok(bad[i]));
	}
	assert_false(agent_confined_path_ok(NULL));
}

static void
test_create_and_existing(void **state)
{
	fx *f = *state;
	int fd = -1, dfd = -1;
	coffer_err err = { 0 };
	assert_int_equal(agent_confined_mkdir(f->root, "a", 0700, &dfd, &err), 0);
	close(dfd);
	assert_int_equal(agent_confined_mkdir(f->root, "a/b", 0700, &dfd, &err), 0);
	close(dfd);
	assert_int_equal(
	    agent_confined_open(f->root, "a/b/x", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err), 0);
	assert_int_equal(write(fd, "hi", 2), 2);
	close(fd);
	/* Existing entries: corruption, the file left as it was. */
	assert_int_equal(
	    agent_confined_open(f->root, "a/b/x", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err),
	    COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_int_equal(fd, -1);
	coffer_err_clear(&err);
	assert_int_equal(agent_confined_mkdir(f->root, "a/b", 0700, &dfd, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_int_equal(agent_confined_symlink(f->root, "a/b/x", "/etc", &err), COFFER_ECORRUPT);
	/* An existing file opened without O_CREAT is fine. */
	assert_int_equal(agent_confined_open(f->root, "a/b/x", O_RDONLY, 0, &fd, &err), 0);
	char buf[4] = "";
	assert_int_equal(read(fd, buf, sizeof(buf)), 2);
	close(fd);
	assert_int_equal(agent_confined_opendir(f->root, "a/b", &dfd, &err), 0);
	close(dfd);
}

static void
test_symlink_every_component(void **state)
{
	fx *f = *state;
	coffer_err err = { 0 };
	int fd = -1, dfd = -1;
	assert_int_equal(mkdirat(f->root, "p", 0700), 0);
	assert_int_equal(mkdirat(f->root, "p/q", 0700), 0);
	assert_int_equal(mkdirat(f->root, "inside", 0700), 0);
	/* Absolute, relative out, relative back inside: all refused. */
	const char *targets[] = { f->outside, "../../outside", "../../inside" };
	const char *where[] = { "l1", "p/l2", "p/q/l3" };
	for (size_t t = 0; t < 3; t++) {
		char rel[64], deep[96];
		snprintf(rel, sizeof(rel), "%s", where[t]);
		const char *target = targets[t];
		assert_int_equal(symlinkat(target, f->root, rel), 0);
		/* The link in the middle of the path. */
		snprintf(deep, sizeof(deep), "%s/x", rel);
		coffer_err_clear(&err);
		assert_int_equal(agent_confined_open(
		                     f->root, deep, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err),
		    COFFER_EREFUSED);
		assert_non_null(strstr(err.msg, "symbolic link"));
		assert_non_null(strstr(err.hint, "nothing was written"));
		snprintf(deep, sizeof(deep), "%s/d", rel);
		coffer_err_clear(&err);
		assert_int_equal(
		    agent_confined_mkdir(f->root, deep, 0700, &dfd, &err), COFFER_EREFUSED);
		coffer_err_clear(&err);
		assert_int_equal(
		    agent_confined_symlink(f->root, deep, "/etc", &err), COFFER_EREFUSED);
		/* The link as the last component: opened, never followed. */
		coffer_err_clear(&err);
		assert_int_equal(
		    agent_confined_open(f->root, rel, O_RDONLY, 0, &fd, &err), COFFER_EREFUSED);
		coffer_err_clear(&err);
		assert_int_equal(agent_confined_opendir(f->root, rel, &dfd, &err), COFFER_EREFUSED);
		coffer_err_clear(&err);
		assert_int_equal(
		    agent_confined_open(f->root, rel, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err),
		    COFFER_ECORRUPT);
	}
	assert_outside_empty(f);
	char path[400];
	snprintf(path, sizeof(path), "%s/root/inside/x", f->dir);
	struct stat st;
	assert_int_not_equal(lstat(path, &st), 0);
}

static void
test_escape_paths(void **state)
{
	fx *f = *state;
	coffer_err err = { 0 };
	int fd = -1, dfd = -1;
	char abs[400];
	snprintf(abs, sizeof(abs), "%s/x", f->outside);
	assert_int_equal(agent_confined_open(
	                     f->root, "../outside/x", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err),
	    COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "not a plain path"));
	assert_int_equal(
	    agent_confined_open(f->root, abs, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err),
	    COFFER_ECORRUPT);
	assert_int_equal(
	    agent_confined_mkdir(f->root, "a/../../outside/d", 0700, &dfd, &err), COFFER_ECORRUPT);
	assert_int_equal(
	    agent_confined_symlink(f->root, "../outside/x", "/", &err), COFFER_ECORRUPT);
	assert_outside_empty(f);
}

static void
test_hard_link(void **state)
{
	fx *f = *state;
	coffer_err err = { 0 };
	int fd = -1;
	/* A hard link planted where a file is to be made: an existing entry. */
	char victim[400], planted[400];
	snprintf(victim, sizeof(victim), "%s/victim", f->outside);
	snprintf(planted, sizeof(planted), "%s/root/h", f->dir);
	fd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(link(victim, planted), 0);
	assert_int_equal(
	    agent_confined_open(f->root, "h", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, &err),
	    COFFER_ECORRUPT);
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_size, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_rule),
		cmocka_unit_test_setup_teardown(test_create_and_existing, setup_openat2, teardown),
		cmocka_unit_test_setup_teardown(test_create_and_existing, setup_walk, teardown),
		cmocka_unit_test_setup_teardown(
		    test_symlink_every_component, setup_openat2, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_every_component, setup_walk, teardown),
		cmocka_unit_test_setup_teardown(test_escape_paths, setup_openat2, teardown),
		cmocka_unit_test_setup_teardown(test_escape_paths, setup_walk, teardown),
		cmocka_unit_test_setup_teardown(test_hard_link, setup_openat2, teardown),
		cmocka_unit_test_setup_teardown(test_hard_link, setup_walk, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
