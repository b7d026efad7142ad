/*
 * Key ring file: parsing, permission checks and appending new keys. See
 * common/crypto/keyring.h for the promises and docs/FORMAT.md for the bytes.
 *
 * The whole file is read into one buffer of bounded size (never through
 * stdio, whose hidden buffers would keep copies of the hex keys after free),
 * parsed, and wiped. Appends take an exclusive flock on the ring so that two
 * keygens racing on one file cannot both pick the same generated id or
 * interleave their lines.
 */
#include "common/crypto/keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/base/clock.h"
#include "common/base/durable.h"
#include "common/base/hex.h"

#define KR_HEADER        "coffer-keyring v1"
#define KR_HEADER_PREFIX "coffer-keyring v"
/* A line is at most id + key + a long timestamp; the file is bounded so a
 * wrong path (a disk image, /dev/zero) cannot make us allocate without end. */
#define KR_LINE_MAX 256
#define KR_FILE_MAX ((size_t)COFFER_KEYRING_MAX_KEYS * KR_LINE_MAX + 64)

struct kr_entry {
	char id[COFFER_KEYRING_ID_MAX + 1];
	int64_t created_ms;
	uint8_t key[COFFER_KEYRING_KEY_LEN];
};

struct coffer_keyring {
	char *path;
	size_t n;
	size_t cap;
	struct kr_entry *keys;
};

static bool
kr_id_char(char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '-');
}

int
coffer_keyring_id_check(const char *id, coffer_err *err)
{
	size_t len = strnlen(id, COFFER_KEYRING_ID_MAX + 1);
	if (len == 0 || len > COFFER_KEYRING_ID_MAX) {
		coffer_err_set(err, COFFER_EINVAL, "key id must be 1 to %d characters long",
		    COFFER_KEYRING_ID_MAX);
		return (coffer_err_hint(err, "use letters, digits, '.', '_' and '-' only"));
	}
	for (size_t i = 0; i < len; i++) {
		if (!kr_id_char(id[i])) {
			coffer_err_set(err, COFFER_EINVAL,
			    "key id \"%s\" has a character other "
			    "than letters, digits, '.', '_' and '-'",
			    id);
			return (coffer_err_hint(err, "choose an id such as svc-2026-11"));
		}
	}
	return (0);
}

static void
kr_free_keys(struct kr_entry *keys, size_t cap)
{
	if (keys != NULL) {
		OPENSSL_cleanse(keys, cap * sizeof(*keys));
		free(keys);
	}
}

void
coffer_keyring_free(coffer_keyring *ring)
{
	if (ring == NULL) {
		return;
	}
	kr_free_keys(ring->keys, ring->cap);
	free(ring->path);
	free(ring);
}

const char *
coffer_keyring_newest_id(const coffer_keyring *ring)
{
	return (ring->keys[ring->n - 1].id);
}

const uint8_t *
coffer_keyring_find(const coffer_keyring *ring, const char *id)
{
	for (size_t i = 0; i < ring->n; i++) {
		if (strcmp(ring->keys[i].id, id) == 0) {
			return (ring->keys[i].key);
		}
	}
	return (NULL);
}

const char *
coffer_keyring_id_at(const coffer_keyring *ring, size_t i)
{
	return (i < ring->n ? ring->keys[i].id : NULL);
}

size_t
coffer_keyring_count(const coffer_keyring *ring)
{
	return (ring->n);
}

const char *
coffer_keyring_path(const coffer_keyring *ring)
{
	return (ring->path);
}

const char *
coffer_keyring_at(const coffer_keyring *ring, size_t i, const uint8_t **key, int64_t *created_ms)
{
	if (i >= ring->n) {
		return (NULL);
	}
	if (key != NULL) {
		*key = ring->keys[i].key;
	}
	if (created_ms != NULL) {
		*created_ms = ring->keys[i].created_ms;
	}
	return (ring->keys[i].id);
}

/* Refuses anything but a regular file that only its owner may access. */
static int
kr_check_mode(int fd, const char *path, struct stat *st, coffer_err *err)
{
	if (fstat(fd, st) != 0) {
		return (coffer_err_errno(err, errno, "stat key ring", path));
	}
	if (!S_ISREG(st->st_mode)) {
		coffer_err_set(err, COFFER_EINVAL, "key ring %s is not a regular file", path);
		return (
		    coffer_err_hint(err, "give the path of a file made by coffer-agent keygen"));
	}
	if ((st->st_mode & 077) != 0) {
		coffer_err_set(err, COFFER_EPERM,
		    "key ring %s has mode %04o: group or other "
		    "may access its keys",
		    path, (unsigned)(st->st_mode & 07777));
		return (coffer_err_hint(err, "chmod 600 %s", path));
	}
	return (0);
}

static int
kr_read_all(
    int fd, const char *path, const struct stat *st, char **out, size_t *len, coffer_err *err)
{
	if ((size_t)st->st_size > KR_FILE_MAX) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "key ring %s is %lld bytes, over the %zu-byte "
		    "limit",
		    path, (long long)st->st_size, KR_FILE_MAX);
		return (coffer_err_hint(
		    err, "check that %s is a key ring made by coffer-agent keygen", path));
	}
	size_t cap = (size_t)st->st_size + 1;
	char *buf = malloc(cap);
	if (buf == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory to read key ring %s", path));
	}
	size_t n = 0;
	for (;;) {
		if (n + 1 >= cap) {
			/* The file grew after fstat; the rest is refused as too big below. */
			break;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			int e = errno;
			OPENSSL_cleanse(buf, cap);
			free(buf);
			return (coffer_err_errno(err, e, "read key ring", path));
		}
		if (r == 0) {
			break;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return (0);
}

static int
kr_add(coffer_keyring *ring, const struct kr_entry *e, coffer_err *err)
{
	if (ring->n == ring->cap) {
		size_t ncap = ring->cap == 0 ? 8 : ring->cap * 2;
		struct kr_entry *nk = calloc(ncap, sizeof(*nk));
		if (nk == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for key ring"));
		}
		if (ring->n > 0) {
			memcpy(nk, ring->keys, ring->n * sizeof(*nk));
		}
		/* Wipe the old block: realloc would leave key copies in freed memory. */
		kr_free_keys(ring->keys, ring->cap);
		ring->keys = nk;
		ring->cap = ncap;
	}
	ring->keys[ring->n++] = *e;
	return (0);
}

/* Parses one key line "<id> <64 hex> <created>" (already NUL-terminated). */
static int
kr_parse_line(coffer_keyring *ring, char *line, int lineno, coffer_err *err)
{
	const char *path = ring->path;
	struct kr_entry e;
	memset(&e, 0, sizeof(e));
	char *fields[3];
	int nf = 0;
	char *p = line;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t') {
			*p++ = '\0';
		}
		if (*p == '\0') {
			break;
		}
		if (nf == 3) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "key ring %s line %d: more than three "
			    "fields",
			    path, lineno);
			return (coffer_err_hint(err,
			    "each line is \"<id> <64 hex digits> <created>\"; "
			    "see docs/FORMAT.md"));
		}
		fields[nf++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t') {
			p++;
		}
	}
	if (nf != 3) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "key ring %s line %d: %d fields where three "
		    "are expected",
		    path, lineno, nf);
		return (coffer_err_hint(err,
		    "each line is \"<id> <64 hex digits> <created>\"; "
		    "see docs/FORMAT.md"));
	}
	coffer_err iderr;
	if (coffer_keyring_id_check(fields[0], &iderr) != 0) {
		coffer_err_set(err, COFFER_ECORRUPT, "key ring %s line %d: bad key id: %s", path,
		    lineno, iderr.msg);
		return (coffer_err_hint(err, "%s", iderr.hint));
	}
	memcpy(e.id, fields[0], strlen(fields[0]) + 1);
	if (strlen(fields[1]) != 2 * COFFER_KEYRING_KEY_LEN) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "key ring %s line %d: key %s is %zu hex digits, "
		    "not %d",
		    path, lineno, e.id, strlen(fields[1]), 2 * COFFER_KEYRING_KEY_LEN);
		return (coffer_err_hint(err, "restore the key ring from its backup copy"));
	}
	for (size_t i = 0; i < COFFER_KEYRING_KEY_LEN; i++) {
		int hi = coffer_hex_digit(fields[1][2 * i]);
		int lo = coffer_hex_digit(fields[1][2 * i + 1]);
		if (hi < 0 || lo < 0) {
			OPENSSL_cleanse(&e, sizeof(e));
			coffer_err_set(err, COFFER_ECORRUPT,
			    "key ring %s line %d: key %s has a "
			    "character that is not a hex digit",
			    path, lineno, fields[0]);
			return (coffer_err_hint(err, "restore the key ring from its backup copy"));
		}
		e.key[i] = (uint8_t)(hi << 4 | lo);
	}
	if (coffer_time_parse(fields[2], &e.created_ms) != 0) {
		OPENSSL_cleanse(&e, sizeof(e));
		coffer_err_set(err, COFFER_ECORRUPT,
		    "key ring %s line %d: \"%s\" is not an RFC 3339 "
		    "time",
		    path, lineno, fields[2]);
		return (coffer_err_hint(err, "write the creation time as 2026-11-24T15:56:03Z"));
	}
	if (coffer_keyring_find(ring, e.id) != NULL) {
		OPENSSL_cleanse(&e, sizeof(e));
		coffer_err_set(err, COFFER_ECORRUPT, "key ring %s line %d: key id %s appears twice",
		    path, lineno, fields[0]);
		return (coffer_err_hint(err, "an id must name one key; remove or rename one line"));
	}
	if (ring->n == COFFER_KEYRING_MAX_KEYS) {
		OPENSSL_cleanse(&e, sizeof(e));
		coffer_err_set(err, COFFER_ETOOBIG, "key ring %s has more than %d keys", path,
		    COFFER_KEYRING_MAX_KEYS);
		return (coffer_err_hint(err, "move keys no backup needs any more out of the ring"));
	}
	int rv = kr_add(ring, &e, err);
	OPENSSL_cleanse(&e, sizeof(e));
	return (rv);
}

static int
kr_parse(coffer_keyring *ring, char *buf, size_t len, coffer_err *err)
{
	const char *path = ring->path;
	if (memchr(buf, '\0', len) != NULL) {
		coffer_err_set(err, COFFER_ECORRUPT, "key ring %s holds a NUL byte", path);
		return (coffer_err_hint(
		    err, "check that %s is a key ring made by coffer-agent keygen", path));
	}
	char *p = buf;
	int lineno = 0;
	while (*p != '\0') {
		lineno++;
		char *nl = strchr(p, '\n');
		char *next = nl != NULL ? nl + 1 : p + strlen(p);
		if (nl != NULL) {
			*nl = '\0';
		}
		size_t ll = strlen(p);
		if (ll > 0 && p[ll - 1] == '\r') {
			p[--ll] = '\0';
		}
		if (ll >= KR_LINE_MAX) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "key ring %s line %d is longer than %d bytes", path, lineno,
			    KR_LINE_MAX - 1);
			return (coffer_err_hint(err,
			    "check that %s is a key ring made by coffer-agent "
			    "keygen",
			    path));
		}
		if (lineno == 1) {
			if (strcmp(p, KR_HEADER) == 0) {
				p = next;
				continue;
			}
			if (strncmp(p, KR_HEADER_PREFIX, strlen(KR_HEADER_PREFIX)) == 0) {
				coffer_err_set(err, COFFER_EVERSION,
				    "key ring %s is format \"%s\"; this "
				    "build reads \"%s\" only",
				    path, p, KR_HEADER);
				return (coffer_err_hint(
				    err, "use the coffer version that wrote the ring"));
			}
			coffer_err_set(err, COFFER_ECORRUPT,
			    "%s is not a key ring: line 1 is not "
			    "\"%s\"",
			    path, KR_HEADER);
			return (coffer_err_hint(
			    err, "give the path of a file made by coffer-agent keygen"));
		}
		if (ll > 0 && p[0] != '#') {
			int rv = kr_parse_line(ring, p, lineno, err);
			if (rv != 0) {
				return (rv);
			}
		}
		p = next;
	}
	if (lineno == 0) {
		coffer_err_set(err, COFFER_ECORRUPT, "key ring %s is an empty file", path);
		return (coffer_err_hint(err, "create it with coffer-agent keygen --out %s", path));
	}
	if (ring->n == 0) {
		coffer_err_set(err, COFFER_ENOENT, "key ring %s holds no keys", path);
		return (coffer_err_hint(err, "add one with coffer-agent keygen --out %s", path));
	}
	return (0);
}

/* Loads from an already opened fd (mode checked here). */
static int
kr_load_fd(int fd, const char *path, coffer_keyring **out, coffer_err *err)
{
	struct stat st;
	int rv = kr_check_mode(fd, path, &st, err);
	if (rv != 0) {
		return (rv);
	}
	char *buf = NULL;
	size_t len = 0;
	rv = kr_read_all(fd, path, &st, &buf, &len, err);
	if (rv != 0) {
		return (rv);
	}
	coffer_keyring *ring = calloc(1, sizeof(*ring));
	if (ring == NULL || (ring->path = strdup(path)) == NULL) {
		free(ring);
		OPENSSL_cleanse(buf, len);
		free(buf);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory to load key ring %s", path));
	}
	rv = kr_parse(ring, buf, len, err);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (rv != 0) {
		coffer_keyring_free(ring);
		return (rv);
	}
	*out = ring;
	return (0);
}

int
coffer_keyring_load(const char *path, coffer_keyring **out, coffer_err *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		int rv = coffer_err_errno(err, e, "open key ring", path);
		if (e == ENOENT) {
			coffer_err_hint(err, "create one with coffer-agent keygen --out %s", path);
		}
		return (rv);
	}
	int rv = kr_load_fd(fd, path, out, err);
	close(fd);
	return (rv);
}

/* "k20261124T155603Z", made unique against ring with a "-N" suffix. */
static void
kr_generated_id(const coffer_keyring *ring, int64_t now_ms, char *id, size_t size)
{
	time_t t = (time_t)(now_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char base[32];
	strftime(base, sizeof(base), "k%Y%m%dT%H%M%SZ", &tm);
	snprintf(id, size, "%s", base);
	for (int n = 2; ring != NULL && coffer_keyring_find(ring, id) != NULL; n++) {
		snprintf(id, size, "%s-%d", base, n);
	}
}

/* The new key's line, in a buffer the caller wipes. */
static int
kr_format_line(const char *id, int64_t now_ms, char *line, size_t size, coffer_err *err)
{
	uint8_t key[COFFER_KEYRING_KEY_LEN];
	if (RAND_bytes(key, sizeof(key)) != 1) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot draw a random key"));
	}
	char keyhex[2 * COFFER_KEYRING_KEY_LEN + 1];
	coffer_hex_encode(key, sizeof(key), keyhex);
	char created[40];
	coffer_time_format(created, sizeof(created), now_ms);
	snprintf(line, size, "%s %s %s\n", id, keyhex, created);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(keyhex, sizeof(keyhex));
	return (0);
}

/* Creates the ring under a temporary name and links it into place, so no
 * reader (or concurrent keygen) ever sees a ring without its first key.
 * Returns 0, 1 if path exists after all (append instead), or an error. */
static int
kr_generate_new(const char *path, const char *id, int64_t now_ms, char *id_out, size_t id_out_size,
    coffer_err *err)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		return (1);
	}
	char idbuf[COFFER_KEYRING_ID_MAX + 1];
	if (id == NULL) {
		kr_generated_id(NULL, now_ms, idbuf, sizeof(idbuf));
		id = idbuf;
	}
	char text[KR_LINE_MAX + sizeof(KR_HEADER) + 1];
	int n = snprintf(text, sizeof(text), "%s\n", KR_HEADER);
	int rv = kr_format_line(id, now_ms, text + n, sizeof(text) - (size_t)n, err);
	/* Mode 0600 before the key is written, and published with link, which
	 * unlike rename never replaces a ring another keygen just made. */
	coffer_durable_opts opts = { .mode = 0600, .no_replace = true };
	if (rv == 0) {
		rv = coffer_durable_replace(path, text, strlen(text), &opts, err);
	}
	OPENSSL_cleanse(text, sizeof(text));
	if (rv == COFFER_EEXIST) {
		coffer_err_clear(err);
		return (1);
	}
	if (rv == 0) {
		snprintf(id_out, id_out_size, "%s", id);
	}
	return (rv);
}

static int
kr_generate_append(const char *path, const char *id, int64_t now_ms, char *id_out,
    size_t id_out_size, coffer_err *err)
{
	int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "open key ring", path));
	}
	coffer_keyring *ring = NULL;
	char line[KR_LINE_MAX + 2];
	char idbuf[COFFER_KEYRING_ID_MAX + 1];
	int rv = 0;
	if (flock(fd, LOCK_EX) != 0) {
		rv = coffer_err_errno(err, errno, "lock key ring", path);
		goto done;
	}
	rv = kr_load_fd(fd, path, &ring, err);
	if (rv != 0) {
		goto done;
	}
	if (id == NULL) {
		kr_generated_id(ring, now_ms, idbuf, sizeof(idbuf));
		id = idbuf;
	} else if (coffer_keyring_find(ring, id) != NULL) {
		rv = coffer_err_set(
		    err, COFFER_EEXIST, "key ring %s already has a key named %s", path, id);
		coffer_err_hint(
		    err, "choose another --id, or leave it out to name the key by date");
		goto done;
	}
	/* A ring edited by hand may lack the final newline; do not glue lines. */
	char last = '\n';
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1) {
		last = '\n';
	}
	size_t off = 0;
	if (last != '\n') {
		line[off++] = '\n';
	}
	rv = kr_format_line(id, now_ms, line + off, sizeof(line) - off, err);
	if (rv == 0) {
		int e = coffer_durable_write_all(fd, line, strlen(line));
		rv = e == 0 ? 0 : coffer_err_errno(err, e, "write key ring", path);
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (rv == 0 && fsync(fd) != 0) {
		rv = coffer_err_errno(err, errno, "fsync key ring", path);
	}
	if (rv == 0) {
		snprintf(id_out, id_out_size, "%s", id);
	}
done:
	coffer_keyring_free(ring);
	close(fd); /* releases the flock */
	return (rv);
}

int
coffer_keyring_generate(
    const char *path, const char *id, char *id_out, size_t id_out_size, coffer_err *err)
{
	if (id_out_size < COFFER_KEYRING_ID_MAX + 1) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "id buffer of %zu bytes is too small", id_out_size));
	}
	if (id != NULL) {
		int rv = coffer_keyring_id_check(id, err);
		if (rv != 0) {
			return (rv);
		}
	}
	int64_t now_ms = coffer_clock_now(coffer_clock_system());
	int rv = kr_generate_new(path, id, now_ms, id_out, id_out_size, err);
	if (rv <= 0) {
		return (rv);
	}
	return (kr_generate_append(path, id, now_ms, id_out, id_out_size, err));
}

int
coffer_keyring_create(
    const char *path, const coffer_keyring_entry *entries, size_t n, coffer_err *err)
{
	if (n == 0 || n > COFFER_KEYRING_MAX_KEYS) {
		return (coffer_err_set(err, COFFER_EINVAL, "a key ring holds 1 to %d keys, not %zu",
		    COFFER_KEYRING_MAX_KEYS, n));
	}
	for (size_t i = 0; i < n; i++) {
		int rv = coffer_keyring_id_check(entries[i].id, err);
		if (rv != 0) {
			return (rv);
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(entries[i].id, entries[j].id) == 0) {
				return (coffer_err_set(
				    err, COFFER_EINVAL, "key id %s appears twice", entries[i].id));
			}
		}
	}
	size_t size = sizeof(KR_HEADER) + 1 + n * KR_LINE_MAX;
	char *text = malloc(size);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for key ring %s", path));
	}
	size_t off = (size_t)snprintf(text, size, "%s\n", KR_HEADER);
	for (size_t i = 0; i < n; i++) {
		char keyhex[2 * COFFER_KEYRING_KEY_LEN + 1], created[40];
		coffer_hex_encode(entries[i].key, COFFER_KEYRING_KEY_LEN, keyhex);
		coffer_time_format(created, sizeof(created), entries[i].created_ms);
		off += (size_t)snprintf(
		    text + off, size - off, "%s %s %s\n", entries[i].id, keyhex, created);
		OPENSSL_cleanse(keyhex, sizeof(keyhex));
	}
	coffer_durable_opts opts = { .mode = 0600, .no_replace = true };
	int rv = coffer_durable_replace(path, text, off, &opts, err);
	OPENSSL_cleanse(text, size);
	free(text);
	if (rv == COFFER_EEXIST) {
		coffer_err_set(err, COFFER_EEXIST, "key ring %s already exists", path);
		coffer_err_hint(err,
		    "an existing ring is never replaced; move it away first, or point "
		    "key_ring at a new path");
	}
	return (rv);
}
