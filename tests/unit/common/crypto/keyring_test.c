/* Key rings: generation (new file and append), the 0600 rule, and every kind
 * of malformed file refused with its line named. Real files in a temporary
 * directory. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/crypto/keyring.h"
#include "tests/harness/tmpdir.h"

#define KEY_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define T0    "2026-11-24T15:56:03Z"

struct fixture {
	char dir[512];
	char ring[600];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("keyring-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
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
write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Loads text as a ring and expects code, with msg_part in the message. */
static void
expect_load(const char *path, const char *text, int code, const char *msg_part)
{
	write_file(path, text, 0600);
	coffer_keyring *ring = (coffer_keyring *)1;
	coffer_err err = { 0 };
	int rv = coffer_keyring_load(path, &ring, &err);
	if (rv != code || (msg_part != NULL && strstr(err.msg, msg_part) == NULL)) {
		print_error("text:\n%s\ngot %d (%s), want %d with \"%s\"\n", text, rv, err.msg,
		    code, msg_part != NULL ? msg_part : "");
		fail();
	}
	if (code != 0) {
		assert_null(ring);
		assert_true(err.hint[0] != '\0');
	}
	coffer_keyring_free(ring);
}

static void
test_generate_new_and_append(void **state)
{
	struct fixture *f = *state;
	char id[COFFER_KEYRING_ID_MAX + 1];
	coffer_err err = { 0 };
	assert_int_equal(coffer_keyring_generate(f->ring, "first", id, sizeof(id), &err), 0);
	assert_string_equal(id, "first");
	struct stat st;
	assert_int_equal(stat(f->ring, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	coffer_keyring *ring = NULL;
	assert_int_equal(coffer_keyring_load(f->ring, &ring, &err), 0);
	assert_int_equal(coffer_keyring_count(ring), 1);
	assert_string_equal(coffer_keyring_newest_id(ring), "first");
	const uint8_t *k1 = coffer_keyring_find(ring, "first");
	assert_non_null(k1);
	uint8_t first_key[COFFER_KEYRING_KEY_LEN];
	memcpy(first_key, k1, sizeof(first_key));
	coffer_keyring_free(ring);

	/* Appending keeps the old key and makes the new one the newest. */
	assert_int_equal(coffer_keyring_generate(f->ring, "second", id, sizeof(id), &err), 0);
	assert_int_equal(coffer_keyring_generate(f->ring, NULL, id, sizeof(id), &err), 0);
	assert_true(id[0] == 'k' && strlen(id) >= 17);
	char generated[COFFER_KEYRING_ID_MAX + 1];
	memcpy(generated, id, sizeof(id));
	/* A second generated id in the same second must still be new. */
	assert_int_equal(coffer_keyring_generate(f->ring, NULL, id, sizeof(id), &err), 0);
	assert_string_not_equal(id, generated);

	assert_int_equal(coffer_keyring_load(f->ring, &ring, &err), 0);
	assert_int_equal(coffer_keyring_count(ring), 4);
	assert_string_equal(coffer_keyring_newest_id(ring), id);
	assert_memory_equal(coffer_keyring_find(ring, "first"), first_key, sizeof(first_key));
	assert_memory_not_equal(coffer_keyring_find(ring, "second"), first_key, sizeof(first_key));
	assert_null(coffer_keyring_find(ring, "third"));
	coffer_keyring_free(ring);

	/* An id already present is refused and the file is left alone. */
	assert_int_equal(stat(f->ring, &st), 0);
	off_t size = st.st_size;
	assert_int_equal(
	    coffer_keyring_generate(f->ring, "second", id, sizeof(id), &err), COFFER_EEXIST);
	assert_non_null(strstr(err.msg, "second"));
	assert_int_equal(stat(f->ring, &st), 0);
	assert_int_equal(st.st_size, size);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void
test_mode_refused(void **state)
{
	struct fixture *f = *state;
	char id[COFFER_KEYRING_ID_MAX + 1];
	coffer_err err = { 0 };
	assert_int_equal(coffer_keyring_generate(f->ring, "a", id, sizeof(id), &err), 0);
	static const mode_t bad[] = { 0640, 0604, 0660, 0644, 0602, 0610 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(chmod(f->ring, bad[i]), 0);
		coffer_keyring *ring = NULL;
		assert_int_equal(coffer_keyring_load(f->ring, &ring, &err), COFFER_EPERM);
		assert_null(ring);
		char want[700];
		snprintf(want, sizeof(want), "chmod 600 %s", f->ring);
		assert_string_equal(err.hint, want);
		/* Appending to a ring others can read would add a key they can read. */
		assert_int_equal(
		    coffer_keyring_generate(f->ring, "b", id, sizeof(id), &err), COFFER_EPERM);
	}
	/* Stricter than 0600 is fine. */
	assert_int_equal(chmod(f->ring, 0400), 0);
	coffer_keyring *ring = NULL;
	assert_int_equal(coffer_keyring_load(f->ring, &ring, &err), 0);
	coffer_keyring_free(ring);
}

static void
test_bad_files(void **state)
{
	struct fixture *f = *state;
	const char *p = f->ring;
	expect_load(p, "", COFFER_ECORRUPT, "empty file");
	expect_load(p, "coffer-keyring v1\n", COFFER_ENOENT, "holds no keys");
	expect_load(p, "coffer-keyring v1\n# only a comment\n\n", COFFER_ENOENT, "holds no keys");
	expect_load(p, "something else\n", COFFER_ECORRUPT, "is not a key ring");
	expect_load(p, "coffer-keyring v2\na " KEY_A " " T0 "\n", COFFER_EVERSION, "v2");
	expect_load(p, "coffer-keyring v1\na " KEY_A "\n", COFFER_ECORRUPT, "line 2: 2 fields");
	expect_load(p, "coffer-keyring v1\n\na " KEY_A " " T0 " x\n", COFFER_ECORRUPT,
	    "line 3: more than three");
	expect_load(
	    p, "coffer-keyring v1\na 0011 " T0 "\n", COFFER_ECORRUPT, "line 2: key a is 4 hex");
	expect_load(p, "coffer-keyring v1\na " KEY_A "0 " T0 "\n", COFFER_ECORRUPT, "65 hex");
	expect_load(p,
	    "coffer-keyring v1\na "
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg " T0 "\n",
	    COFFER_ECORRUPT, "not a hex digit");
	expect_load(
	    p, "coffer-keyring v1\nb/ad " KEY_A " " T0 "\n", COFFER_ECORRUPT, "line 2: bad key id");
	expect_load(p,
	    "coffer-keyring v1\n"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " KEY_A " " T0 "\n",
	    COFFER_ECORRUPT, "bad key id");
	expect_load(p, "coffer-keyring v1\na " KEY_A " yesterday\n", COFFER_ECORRUPT,
	    "line 2: \"yesterday\" is not an RFC 3339");
	expect_load(p,
	    "coffer-keyring v1\na " KEY_A " " T0 "\n# c\nb " KEY_B " " T0 "\na " KEY_B " " T0 "\n",
	    COFFER_ECORRUPT, "line 5: key id a appears twice");
	char longline[400];
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	char text[600];
	snprintf(text, sizeof(text), "coffer-keyring v1\n%s\n", longline);
	expect_load(p, text, COFFER_ECORRUPT, "line 2 is longer");
	/* A NUL byte cannot be typed into a line by hand; refuse it outright. */
	write_file(p, "coffer-keyring v1\nx", 0600);
	int fd = open(p, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\0 " KEY_A " " T0 "\n", 2 + 64 + 1 + strlen(T0) + 1),
	    (ssize_t)(2 + 64 + 1 + strlen(T0) + 1));
	close(fd);
	coffer_keyring *nulring = NULL;
	coffer_err nulerr = { 0 };
	assert_int_equal(coffer_keyring_load(p, &nulring, &nulerr), COFFER_ECORRUPT);
	assert_non_null(strstr(nulerr.msg, "NUL byte"));

	/* Comments, blank lines, CRLF, tabs, upper-case hex and no final newline are fine. */
	expect_load(p,
	    "coffer-keyring v1\r\n# keys\r\n\r\na\t" KEY_A "\t" T0 "\r\n"
	    "b.2_x-y 00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF "
	    "2026-11-24T15:56:03.5+01:00",
	    0, NULL);
	coffer_keyring *ring = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_keyring_load(p, &ring, &err), 0);
	assert_int_equal(coffer_keyring_count(ring), 2);
	assert_string_equal(coffer_keyring_newest_id(ring), "b.2_x-y");
	assert_memory_equal(coffer_keyring_find(ring, "a"), coffer_keyring_find(ring, "b.2_x-y"),
	    COFFER_KEYRING_KEY_LEN);
	assert_int_equal(coffer_keyring_find(ring, "a")[31], 0xff);
	coffer_keyring_free(ring);

	/* Appending to a ring without a final newline must not glue two lines. */
	char id[COFFER_KEYRING_ID_MAX + 1];
	assert_int_equal(coffer_keyring_generate(p, "c", id, sizeof(id), &err), 0);
	assert_int_equal(coffer_keyring_load(p, &ring, &err), 0);
	assert_int_equal(coffer_keyring_count(ring), 3);
	assert_string_equal(coffer_keyring_newest_id(ring), "c");
	coffer_keyring_free(ring);

	/* Appending to a malformed ring is refused with the load error. */
	write_file(p, "coffer-keyring v1\na " KEY_A "\n", 0600);
	assert_int_equal(coffer_keyring_generate(p, "d", id, sizeof(id), &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "line 2"));
}

static void
test_bad_paths_and_ids(void **state)
{
	struct fixture *f = *state;
	coffer_keyring *ring = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_keyring_load(f->ring, &ring, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.hint, "keygen --out"));
	assert_int_equal(coffer_keyring_load(f->dir, &ring, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));

	char id[COFFER_KEYRING_ID_MAX + 1];
	static const char *bad_ids[] = { "", "a b", "a/b", "ä",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		assert_int_equal(coffer_keyring_generate(f->ring, bad_ids[i], id, sizeof(id), &err),
		    COFFER_EINVAL);
		assert_true(err.hint[0] != '\0');
		struct stat st;
		assert_int_equal(stat(f->ring, &st), -1);
	}
	char small[8];
	assert_int_equal(
	    coffer_keyring_generate(f->ring, "a", small, sizeof(small), &err), COFFER_EINTERNAL);
	char missing_dir[700];
	snprintf(missing_dir, sizeof(missing_dir), "%s/no/such/ring", f->dir);
	assert_int_equal(
	    coffer_keyring_generate(missing_dir, "a", id, sizeof(id), &err), COFFER_ENOENT);
}

/* Several processes appending generated keys at once: the flock must keep
 * every line whole and every generated id distinct (a duplicate or a torn
 * line would make the ring fail to load). */
static void
test_concurrent_keygen(void **state)
{
	struct fixture *f = *state;
	char id[COFFER_KEYRING_ID_MAX + 1];
	coffer_err err = { 0 };
	struct stat st;
	assert_int_equal(stat(f->ring, &st), -1);
	/* The ring does not exist yet: the creators race too. */
	enum {
		PROCS = 4,
		EACH = 8
	};
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			for (int i = 0; i < EACH; i++) {
				coffer_err cerr = { 0 };
				if (coffer_keyring_generate(f->ring, NULL, id, sizeof(id), &cerr) !=
				    0) {
					fprintf(stderr, "child: %s\n", cerr.msg);
					_exit(1);
				}
			}
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int status = 0;
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	coffer_keyring *ring = NULL;
	int rv = coffer_keyring_load(f->ring, &ring, &err);
	if (rv != 0) {
		print_error("%s\n", err.msg);
	}
	assert_int_equal(rv, 0);
	assert_int_equal(coffer_keyring_count(ring), PROCS * EACH);
	coffer_keyring_free(ring);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_generate_new_and_append, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_paths_and_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_keygen, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
