/*
 * Audit log: key files, chained appends and verification. See
 * coordinator/catalog/audit.h for the MAC construction and the promises.
 *
 * Design notes.
 * The row's time and the canonical text of its details are taken from the
 * database in the same statement that locks the chain head, so the bytes
 * the MAC covers are exactly what the database will hand back to verify:
 * `at` is formatted by to_char at microsecond precision (timestamptz's own)
 * and details by jsonb's output function, which is deterministic. Reading
 * the clock after the lock also makes `at` non-decreasing along the chain.
 *
 * JSON is checked with cJSON before any statement runs, so the common
 * mistake (a bad details string) does not abort the caller's transaction.
 *
 * Verify streams rows in libpq's single-row mode: memory is one row however
 * long the chain. After the first problem it keeps draining (libpq requires
 * it) but only counts.
 */
#include "coordinator/catalog/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "common/base/durable.h"
#include "common/base/hex.h"
#include "common/base/log.h"

#define AUDIT_DOMAIN   "coffer-audit-v1"
#define AUDIT_KEY_HEX  (2 * COORD_AUDIT_KEY_LEN)
#define AUDIT_TIME_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
#define AUDIT_TIME_MAX 40

/* bytea in PostgreSQL's hex output ("\x0a1b...") of exactly n bytes. */
static bool
bytea_parse(const char *text, uint8_t *out, size_t n)
{
	if (text[0] != '\\' || text[1] != 'x') {
		return (false);
	}
	return (coffer_hex_to_bytes(text + 2, strlen(text + 2), out, n));
}

/* "\x" + hex, for a bytea parameter in text format. */
static void
bytea_format(const uint8_t *in, size_t n, char *out)
{
	out[0] = '\\';
	out[1] = 'x';
	coffer_hex_encode(in, n, out + 2);
}

void
coord_audit_key_clear(coord_audit_key *key)
{
	OPENSSL_cleanse(key->bytes, sizeof(key->bytes));
}

int
coord_audit_key_load(const char *path, coord_audit_key *key, coffer_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		coffer_err_errno(err, e, "open the audit key", path);
		if (e == ENOENT) {
			coffer_err_hint(err,
			    "create it with `coffer-coordinator audit-keygen "
			    "--out %s`, or fix [coordinator] audit_key",
			    path);
		} else if (e == ELOOP) {
			coffer_err_set(
			    err, COFFER_EPERM, "the audit key %s is a symbolic link", path);
			coffer_err_hint(
			    err, "point [coordinator] audit_key at the key file itself");
		}
		return (err != NULL ? err->code : COFFER_EIO);
	}
	struct stat st;
	char buf[AUDIT_KEY_HEX + 4];
	ssize_t got = -1;
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = coffer_err_errno(err, errno, "stat the audit key", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = coffer_err_set(
		    err, COFFER_EINVAL, "the audit key %s is not a regular file", path);
		coffer_err_hint(err, "point [coordinator] audit_key at the key file");
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		/* A key others can read lets them forge audit rows that verify. */
		rc = coffer_err_set(err, COFFER_EPERM,
		    "the audit key %s has mode %04o; group and others must have no access", path,
		    (unsigned)(st.st_mode & 07777));
		coffer_err_hint(err, "run `chmod 600 %s` (and check who could have read it)", path);
		goto out;
	}
	do {
		got = read(fd, buf, sizeof(buf));
	} while (got < 0 && errno == EINTR);
	if (got < 0) {
		rc = coffer_err_errno(err, errno, "read the audit key", path);
		goto out;
	}
	size_t len = (size_t)got;
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
	}
	if (!coffer_hex_to_bytes(buf, len, key->bytes, COORD_AUDIT_KEY_LEN)) {
		rc = coffer_err_set(err, COFFER_EINVAL,
		    "the audit key %s is not %d hex digits (a 32-byte key)", path, AUDIT_KEY_HEX);
		coffer_err_hint(err,
		    "restore the key file from your secret store; a new key "
		    "cannot verify rows written with the old one");
		coord_audit_key_clear(key);
	}
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return (rc);
}

int
coord_audit_key_generate(const char *path, coord_audit_key *key, coffer_err *err)
{
	if (RAND_bytes(key->bytes, COORD_AUDIT_KEY_LEN) != 1) {
		return (coffer_err_openssl(
		    err, COFFER_EINTERNAL, "cannot get random bytes for the audit key"));
	}
	char hex[AUDIT_KEY_HEX + 2];
	coffer_hex_encode(key->bytes, COORD_AUDIT_KEY_LEN, hex);
	hex[AUDIT_KEY_HEX] = '\n';
	hex[AUDIT_KEY_HEX + 1] = '\0';
	/* Durable before anything is signed with it, and never an overwrite:
	 * rows signed with the old key could no longer be verified. */
	coffer_durable_opts opts = { .mode = 0600, .no_replace = true };
	int rc = coffer_durable_replace(path, hex, AUDIT_KEY_HEX + 1, &opts, err);
	OPENSSL_cleanse(hex, sizeof(hex));
	if (rc == COFFER_EEXIST) {
		coffer_err_set(err, COFFER_EEXIST, "the audit key %s already exists", path);
		coffer_err_hint(err,
		    "a key is never overwritten: rows signed with it could "
		    "no longer be verified; choose another path");
	}
	if (rc != 0) {
		coord_audit_key_clear(key);
	}
	return (rc);
}

/* ---- the local high-water mark ---- */

#define MARK_NAME   "audit-mark"
#define MARK_HEADER "coffer-audit-mark-v1"

/* One per process: every catalog connection of the daemon reports its
 * commits here. want is the newest head known committed, done the newest
 * on disk; one thread writes at a time and writes the newest want, so a
 * burst of commits costs one fsync per writer pass, not one per commit. */
static struct {
	pthread_mutex_t mu;
	bool on;       /* a path is set */
	bool writable; /* this process keeps the mark (the daemon) */
	bool writing;
	bool frozen;  /* the chain's end went behind the mark: never advance */
	bool checked; /* the mark's row was seen in the chain since setup */
	char path[PATH_MAX];
	int64_t want_seq, done_seq;
	uint8_t want_mac[COORD_AUDIT_MAC_LEN];
} mark = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int
mark_read(
    const char *path, int64_t *seq, uint8_t mac[COORD_AUDIT_MAC_LEN], bool *found, coffer_err *err)
{
	*found = false;
	*seq = 0;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT) {
			return (0);
		}
		coffer_err_errno(err, errno, "read the audit high-water mark", path);
		return (coffer_err_hint(
		    err, "run this as the user the coordinator runs as, who owns its state_dir"));
	}
	char line[256];
	char hex[2 * COORD_AUDIT_MAC_LEN + 2];
	long long s = 0;
	bool ok = fgets(line, sizeof(line), f) != NULL &&
	    sscanf(line, MARK_HEADER " %lld %65s", &s, hex) == 2 && s > 0 &&
	    coffer_hex_to_bytes(hex, strlen(hex), mac, COORD_AUDIT_MAC_LEN);
	fclose(f);
	if (!ok) {
		coffer_err_set(
		    err, COFFER_ECORRUPT, "the audit high-water mark %s is damaged", path);
		return (coffer_err_hint(err,
		    "it is written only by the coordinator: find who changed it; once the chain "
		    "is checked otherwise (the heads in DR), remove it and the coordinator writes "
		    "a new one at its next audit row"));
	}
	*seq = (int64_t)s;
	*found = true;
	return (0);
}

int
coord_audit_mark_setup(const char *state_dir, bool writable, coffer_err *err)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/" MARK_NAME, state_dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		return (coffer_err_set(err, COFFER_EINVAL, "state_dir %s is too long", state_dir));
	}
	int64_t seq = 0;
	uint8_t mac[COORD_AUDIT_MAC_LEN];
	bool found = false;
	int rc = mark_read(path, &seq, mac, &found, err);
	if (rc != 0) {
		return (rc);
	}
	pthread_mutex_lock(&mark.mu);
	memcpy(mark.path, path, (size_t)n + 1);
	mark.on = true;
	mark.writable = writable;
	mark.frozen = false;
	mark.checked = false;
	mark.want_seq = mark.done_seq = seq;
	if (found) {
		memcpy(mark.want_mac, mac, sizeof(mac));
	}
	pthread_mutex_unlock(&mark.mu);
	return (0);
}

const char *
coord_audit_mark_path(void)
{
	return (mark.on ? mark.path : NULL);
}

void
coord_audit_mark_committed(int64_t seq, const uint8_t mac[COORD_AUDIT_MAC_LEN])
{
	pthread_mutex_lock(&mark.mu);
	if (!mark.on || !mark.writable || mark.frozen) {
		pthread_mutex_unlock(&mark.mu);
		return;
	}
	if (seq > mark.want_seq) {
		mark.want_seq = seq;
		memcpy(mark.want_mac, mac, COORD_AUDIT_MAC_LEN);
	}
	if (mark.writing) {
		pthread_mutex_unlock(&mark.mu); /* the writer takes ours too */
		return;
	}
	mark.writing = true;
	while (mark.want_seq > mark.done_seq && !mark.frozen) {
		int64_t s = mark.want_seq;
		char text[sizeof(MARK_HEADER) + 24 + 2 * COORD_AUDIT_MAC_LEN + 4];
		int n = snprintf(text, sizeof(text), MARK_HEADER " %" PRId64 " ", s);
		coffer_hex_encode(mark.want_mac, COORD_AUDIT_MAC_LEN, text + n);
		n += 2 * COORD_AUDIT_MAC_LEN;
		text[n++] = '\n';
		char path[PATH_MAX];
		memcpy(path, mark.path, sizeof(path));
		pthread_mutex_unlock(&mark.mu);
		coffer_err e;
		coffer_err_clear(&e);
		coffer_durable_opts opts = { .mode = 0600 };
		int rc = coffer_durable_replace(path, text, (size_t)n, &opts, &e);
		pthread_mutex_lock(&mark.mu);
		if (rc != 0) {
			/* The mark only lags: the next commit tries again. */
			coffer_log_error("audit high-water mark not written",
			    "chain_seq=%" PRId64 " error=\"%s\"", s, e.msg);
			break;
		}
		mark.done_seq = s;
	}
	mark.writing = false;
	pthread_mutex_unlock(&mark.mu);
}

/* Under the chain head's lock: the head can never be behind a head this
 * process saw committed, and the first time after setup that it is ahead
 * (rows appended while this process was not running), the mark's own row
 * must still be in the chain. Otherwise rows were cut (or rewritten)
 * outside Coffer; the mark then stays where it is, as the evidence verify
 * names, instead of being overwritten by the rows appended after the cut. */
static int
mark_check_head(coord_catalog *cat, int64_t head_seq, const uint8_t head_mac[COORD_AUDIT_MAC_LEN],
    coffer_err *err)
{
	pthread_mutex_lock(&mark.mu);
	bool active = mark.on && mark.writable && !mark.frozen && mark.want_seq > 0;
	int64_t want = mark.want_seq;
	uint8_t want_mac[COORD_AUDIT_MAC_LEN];
	memcpy(want_mac, mark.want_mac, sizeof(want_mac));
	bool checked = mark.checked;
	pthread_mutex_unlock(&mark.mu);
	if (!active) {
		return (0);
	}
	bool behind = head_seq < want ||
	    (head_seq == want && CRYPTO_memcmp(head_mac, want_mac, COORD_AUDIT_MAC_LEN) != 0);
	if (!behind && head_seq > want && !checked) {
		char seq_text[24];
		snprintf(seq_text, sizeof(seq_text), "%" PRId64, want);
		const char *v[] = { seq_text };
		int rc = 0;
		PGresult *r =
		    coord_catalog_query(cat, "SELECT mac FROM audit WHERE chain_seq = $1::bigint",
		        1, v, "checking the audit high-water mark", &rc, err);
		if (r == NULL) {
			return (rc);
		}
		uint8_t mac[COORD_AUDIT_MAC_LEN];
		behind = PQntuples(r) != 1 || !bytea_parse(PQgetvalue(r, 0, 0), mac, sizeof(mac)) ||
		    CRYPTO_memcmp(mac, want_mac, sizeof(mac)) != 0;
		PQclear(r);
	}
	pthread_mutex_lock(&mark.mu);
	if (behind && !mark.frozen) {
		mark.frozen = true;
		coffer_log_error("audit chain cut: the high-water mark stays as evidence",
		    "head_seq=%" PRId64 " mark_seq=%" PRId64 " mark=%s", head_seq, want, mark.path);
	} else if (!behind) {
		mark.checked = true;
	}
	pthread_mutex_unlock(&mark.mu);
	return (0);
}

int
coord_audit_mark_resume(coord_catalog *cat, coffer_err *err)
{
	int rc = 0;
	PGresult *r = coord_catalog_query(cat, "SELECT chain_seq, mac FROM audit_head WHERE id = 1",
	    0, NULL, "reading the audit chain head", &rc, err);
	if (r == NULL) {
		return (rc);
	}
	uint8_t mac[COORD_AUDIT_MAC_LEN];
	bool ok = PQntuples(r) == 1 && bytea_parse(PQgetvalue(r, 0, 1), mac, sizeof(mac));
	int64_t seq = ok ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	if (!ok) {
		return (coffer_err_set(
		    err, COFFER_ECORRUPT, "the audit chain head is missing or damaged"));
	}
	pthread_mutex_lock(&mark.mu);
	bool on = mark.on && mark.writable;
	if (on) {
		mark.frozen = false;
		mark.checked = true;
		mark.want_seq = mark.done_seq = 0;
	}
	pthread_mutex_unlock(&mark.mu);
	if (on) {
		coord_audit_mark_committed(seq, mac);
	}
	return (0);
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int
mac_lp(EVP_MAC_CTX *ctx, const char *s)
{
	size_t n = strlen(s);
	uint8_t len[4];
	if (n > UINT32_MAX) {
		return (0);
	}
	put_be32(len, (uint32_t)n);
	return (EVP_MAC_update(ctx, len, 4) == 1 &&
	    (n == 0 || EVP_MAC_update(ctx, (const uint8_t *)s, n) == 1));
}

/* Fetching the HMAC implementation searches OpenSSL's providers under a
 * lock; it is done once and the result, which is immutable and reference
 * counted, is shared by every thread for the life of the process. */
static EVP_MAC *audit_hmac;
static pthread_once_t audit_hmac_once = PTHREAD_ONCE_INIT;

static void
audit_hmac_fetch(void)
{
	audit_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int
coord_audit_mac(const coord_audit_key *key, const coord_audit_row *row,
    uint8_t out[COORD_AUDIT_MAC_LEN], coffer_err *err)
{
	pthread_once(&audit_hmac_once, audit_hmac_fetch);
	EVP_MAC_CTX *ctx = audit_hmac != NULL ? EVP_MAC_CTX_new(audit_hmac) : NULL;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	uint8_t seq[8];
	uint64_t s = (uint64_t)row->chain_seq;
	put_be32(seq, (uint32_t)(s >> 32));
	put_be32(seq + 4, (uint32_t)s);
	size_t outlen = 0;
	int ok = ctx != NULL && EVP_MAC_init(ctx, key->bytes, COORD_AUDIT_KEY_LEN, params) == 1 &&
	    EVP_MAC_update(ctx, (const uint8_t *)AUDIT_DOMAIN, sizeof(AUDIT_DOMAIN)) == 1 &&
	    EVP_MAC_update(ctx, seq, sizeof(seq)) == 1 && mac_lp(ctx, row->at) &&
	    mac_lp(ctx, row->actor) && mac_lp(ctx, row->action) && mac_lp(ctx, row->subject) &&
	    mac_lp(ctx, row->details) &&
	    EVP_MAC_update(ctx, row->prev_mac, COORD_AUDIT_MAC_LEN) == 1 &&
	    EVP_MAC_final(ctx, out, &outlen, COORD_AUDIT_MAC_LEN) == 1 &&
	    outlen == COORD_AUDIT_MAC_LEN;
	EVP_MAC_CTX_free(ctx);
	if (!ok) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot compute an audit hmac"));
	}
	return (0);
}

static bool
action_valid(const char *action)
{
	size_t n = strlen(action);
	if (n < 1 || n > 64 || action[0] < 'a' || action[0] > 'z') {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char c = action[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) {
			return (false);
		}
	}
	return (true);
}

static int
append_check_args(const char *actor, const char *action, const char *subject, const char *details,
    coffer_err *err)
{
	if (actor == NULL || actor[0] == '\0' || strlen(actor) > COORD_AUDIT_MAX_NAME) {
		coffer_err_set(
		    err, COFFER_EINVAL, "audit actor must be 1 to %d bytes", COORD_AUDIT_MAX_NAME);
		return (coffer_err_hint(err, "name the agent, operator or \"coordinator\""));
	}
	if (action == NULL || !action_valid(action)) {
		coffer_err_set(err, COFFER_EINVAL,
		    "audit action \"%.64s\" is not a lowercase "
		    "dotted name of at most 64 bytes",
		    action != NULL ? action : "");
		return (coffer_err_hint(err,
		    "use names like \"agent.enroll\" or "
		    "\"request.refused\""));
	}
	if (subject == NULL || strlen(subject) > COORD_AUDIT_MAX_NAME) {
		coffer_err_set(err, COFFER_EINVAL, "audit subject must be 0 to %d bytes",
		    COORD_AUDIT_MAX_NAME);
		return (coffer_err_hint(err, "name the service, agent or backup acted on"));
	}
	size_t dlen = strlen(details);
	if (dlen > COORD_AUDIT_MAX_DETAILS) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "audit details are %zu bytes, over the %d limit", dlen,
		    COORD_AUDIT_MAX_DETAILS);
		return (coffer_err_hint(err,
		    "record a summary and a reference instead of the "
		    "whole document"));
	}
	cJSON *doc = cJSON_ParseWithOpts(details, NULL, 1);
	if (doc == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "audit details are not valid JSON");
		return (coffer_err_hint(err, "pass a JSON object such as {\"reason\":\"...\"}"));
	}
	cJSON_Delete(doc);
	return (0);
}

/* Rows per round trip of a batch, and details bytes: a batch's arrays stay
 * a few MiB however many rows the caller hands over. */
#define AUDIT_BATCH_ROWS  256
#define AUDIT_BATCH_BYTES (1024 * 1024)

enum {
	COL_SEQ,
	COL_AT,
	COL_ACTOR,
	COL_ACTION,
	COL_SUBJECT,
	COL_DETAILS,
	COL_PREV,
	COL_MAC,
	COLS
};

/*
 * Appends rows[0..n) in three statements, each prepared once per
 * connection: the database canonicalises every row's details; the head's
 * row is locked and the time stamped; every row is inserted and the head
 * moved. The head's row lock is the chain's mutex, held until the caller's
 * transaction ends so that rows commit in chain order or not at all: all
 * that can be done before it is, and the lock is taken on one row by one
 * statement (a statement that locked it once per joined row re-checked it
 * for each, and every appender queued behind that). The caller's
 * transaction is open and not failed.
 */
static int
append_chunk(coord_catalog *cat, const coord_audit_key *key, const coord_audit_entry *rows,
    size_t n, coord_pgarray *cols, int64_t *last_seq, uint8_t *last_mac, coffer_err *err)
{
	coord_pgarray details = { 0 };
	for (int c = 0; c < COLS; c++) {
		coord_pgarray_reset(&cols[c]);
	}
	for (size_t i = 0; i < n; i++) {
		if (!coord_pgarray_add(
		        &details, rows[i].details != NULL ? rows[i].details : "{}")) {
			free(details.buf);
			return (coffer_err_set(
			    err, COFFER_ENOMEM, "out of memory appending to the audit log"));
		}
	}
	const char *p1[] = { coord_pgarray_text(&details) };
	int rc = 0;
	PGresult *canon = coord_catalog_query(cat,
	    "SELECT d.t::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS d(t, n) ORDER BY d.n",
	    1, p1, "canonicalising audit details", &rc, err);
	free(details.buf);
	if (canon == NULL) {
		return (rc);
	}
	if ((size_t)PQntuples(canon) != n) {
		PQclear(canon);
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "the catalog returned %zu audit details for %zu rows", (size_t)PQntuples(canon),
		    n));
	}
	PGresult *res = coord_catalog_query(cat,
	    "SELECT chain_seq, mac, to_char(clock_timestamp() AT TIME ZONE 'UTC', " AUDIT_TIME_FMT
	    ") "
	    "FROM audit_head WHERE id = 1 FOR UPDATE",
	    0, NULL, "locking the audit chain head", &rc, err);
	if (res == NULL) {
		PQclear(canon);
		return (rc);
	}
	coord_audit_row row = { 0 };
	if (PQntuples(res) != 1 ||
	    !bytea_parse(PQgetvalue(res, 0, 1), row.prev_mac, COORD_AUDIT_MAC_LEN)) {
		PQclear(res);
		PQclear(canon);
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "the audit chain head (table audit_head) is missing or damaged");
		return (coffer_err_hint(err,
		    "run `coffer-coordinator audit-verify` and investigate who "
		    "changed the catalog"));
	}
	row.chain_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if ((rc = mark_check_head(cat, row.chain_seq, row.prev_mac, err)) != 0) {
		PQclear(res);
		PQclear(canon);
		return (rc);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint8_t mac[COORD_AUDIT_MAC_LEN];
		char seq_text[24];
		char prev_hex[2 * COORD_AUDIT_MAC_LEN + 3];
		char mac_hex[2 * COORD_AUDIT_MAC_LEN + 3];
		row.chain_seq++;
		row.at = PQgetvalue(res, 0, 2);
		row.actor = rows[i].actor;
		row.action = rows[i].action;
		row.subject = rows[i].subject;
		row.details = PQgetvalue(canon, (int)i, 0);
		if ((rc = coord_audit_mac(key, &row, mac, err)) != 0) {
			break;
		}
		snprintf(seq_text, sizeof(seq_text), "%" PRId64, row.chain_seq);
		bytea_format(row.prev_mac, COORD_AUDIT_MAC_LEN, prev_hex);
		bytea_format(mac, COORD_AUDIT_MAC_LEN, mac_hex);
		const char *vals[COLS] = { seq_text, row.at, row.actor, row.action, row.subject,
			row.details, prev_hex, mac_hex };
		for (int c = 0; c < COLS; c++) {
			if (!coord_pgarray_add(&cols[c], vals[c])) {
				rc = coffer_err_set(
				    err, COFFER_ENOMEM, "out of memory appending to the audit log");
				break;
			}
		}
		memcpy(row.prev_mac, mac, COORD_AUDIT_MAC_LEN);
	}
	PQclear(res);
	PQclear(canon);
	if (rc != 0) {
		return (rc);
	}
	const char *p2[COLS];
	for (int c = 0; c < COLS; c++) {
		p2[c] = coord_pgarray_text(&cols[c]);
	}
	res = coord_catalog_query(cat,
	    "WITH ins AS (INSERT INTO audit (chain_seq, at, actor, action, subject, details, "
	    "prev_mac, mac) SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], "
	    "$4::text[], $5::text[], $6::jsonb[], $7::bytea[], $8::bytea[]) "
	    "RETURNING chain_seq, mac) "
	    "UPDATE audit_head h SET chain_seq = l.chain_seq, mac = l.mac "
	    "FROM (SELECT chain_seq, mac FROM ins ORDER BY chain_seq DESC LIMIT 1) l "
	    "WHERE h.id = 1",
	    COLS, p2, "appending to the audit log", &rc, err);
	if (res == NULL) {
		return (rc);
	}
	if (strcmp(PQcmdTuples(res), "1") != 0) {
		PQclear(res);
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "the audit chain head (table audit_head) did not move with the new rows");
		return (coffer_err_hint(err, "run `coffer-coordinator audit-verify`"));
	}
	PQclear(res);
	*last_seq = row.chain_seq;
	memcpy(last_mac, row.prev_mac, COORD_AUDIT_MAC_LEN);
	return (0);
}

int
coord_audit_append_many(coord_catalog *cat, const coord_audit_key *key,
    const coord_audit_entry *rows, size_t n, int64_t *chain_seq, coffer_err *err)
{
	int rc;
	for (size_t i = 0; i < n; i++) {
		if ((rc = append_check_args(rows[i].actor, rows[i].action, rows[i].subject,
		         rows[i].details != NULL ? rows[i].details : "{}", err)) != 0) {
			return (rc);
		}
	}
	if (n == 0) {
		return (0);
	}
	PGconn *conn = coord_catalog_conn(cat);
	bool own_tx = false;
	switch (PQtransactionStatus(conn)) {
	case PQTRANS_IDLE:
		if (coord_catalog_begin(cat, err) != 0) {
			return (coffer_err_wrap(err, "appending to the audit log"));
		}
		own_tx = true;
		break;
	case PQTRANS_INTRANS:
		break;
	case PQTRANS_INERROR:
		coffer_err_set(err, COFFER_EINTERNAL,
		    "appending to the audit log inside a transaction that already failed");
		return (coffer_err_hint(err, "roll the transaction back first; this is a bug"));
	default:
		return (coord_catalog_pg_error(cat, NULL, "appending to the audit log", err));
	}
	coord_pgarray cols[COLS] = { 0 };
	int64_t last = 0;
	uint8_t last_mac[COORD_AUDIT_MAC_LEN];
	rc = 0;
	for (size_t i = 0; i < n && rc == 0;) {
		size_t k = 0, bytes = 0;
		while (i + k < n && k < AUDIT_BATCH_ROWS && (k == 0 || bytes < AUDIT_BATCH_BYTES)) {
			bytes += rows[i + k].details != NULL ? strlen(rows[i + k].details) : 2;
			k++;
		}
		rc = append_chunk(cat, key, rows + i, k, cols, &last, last_mac, err);
		i += k;
	}
	for (int c = 0; c < COLS; c++) {
		free(cols[c].buf);
	}
	if (rc != 0) {
		if (own_tx) {
			coord_catalog_rollback(cat);
		}
		return (rc);
	}
	/* The mark moves when the transaction holding these rows commits
	 * (coord_catalog_commit), whoever commits it. */
	coord_catalog_audit_pending(cat, last, last_mac);
	if (own_tx && coord_catalog_commit(cat, err) != 0) {
		return (coffer_err_wrap(err, "appending to the audit log"));
	}
	if (chain_seq != NULL) {
		*chain_seq = last;
	}
	return (0);
}

int
coord_audit_append(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *action, const char *subject, const char *details_json, int64_t *chain_seq,
    coffer_err *err)
{
	coord_audit_entry row = { actor, action, subject, details_json };
	return (coord_audit_append_many(cat, key, &row, 1, chain_seq, err));
}

/* Reading state for verify: the previous row's mac and where we are. */
struct verify_state {
	const coord_audit_key *key;
	coord_audit_result *res;
	int64_t expect;
	uint8_t prev_mac[COORD_AUDIT_MAC_LEN];
	bool broken;
	int64_t mark_seq; /* 0: no mark */
	uint8_t mark_mac[COORD_AUDIT_MAC_LEN];
};

static void verify_break(struct verify_state *vs, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
verify_break(struct verify_state *vs, int64_t seq, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vs->res->problem, sizeof(vs->res->problem), fmt, ap);
	va_end(ap);
	vs->res->bad_seq = seq;
	vs->broken = true;
}

/* Checks one row; returns an error only when the check itself failed. */
static int
verify_row(struct verify_state *vs, PGresult *r, coffer_err *err)
{
	coord_audit_row row;
	uint8_t mac[COORD_AUDIT_MAC_LEN];
	uint8_t want[COORD_AUDIT_MAC_LEN];
	row.chain_seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	row.at = PQgetvalue(r, 0, 1);
	row.actor = PQgetvalue(r, 0, 2);
	row.action = PQgetvalue(r, 0, 3);
	row.subject = PQgetvalue(r, 0, 4);
	row.details = PQgetvalue(r, 0, 5);
	if (row.chain_seq != vs->expect) {
		if (row.chain_seq > vs->expect) {
			verify_break(vs, vs->expect,
			    "row %" PRId64 " is missing (the chain jumps from %" PRId64
			    " to %" PRId64 ")",
			    vs->expect, vs->expect - 1, row.chain_seq);
		} else {
			verify_break(vs, row.chain_seq,
			    "row %" PRId64 " is out of sequence (expected %" PRId64 ")",
			    row.chain_seq, vs->expect);
		}
		return (0);
	}
	if (!bytea_parse(PQgetvalue(r, 0, 6), row.prev_mac, COORD_AUDIT_MAC_LEN) ||
	    !bytea_parse(PQgetvalue(r, 0, 7), mac, COORD_AUDIT_MAC_LEN)) {
		verify_break(vs, row.chain_seq, "row %" PRId64 " has a malformed mac or prev_mac",
		    row.chain_seq);
		return (0);
	}
	if (CRYPTO_memcmp(row.prev_mac, vs->prev_mac, COORD_AUDIT_MAC_LEN) != 0) {
		verify_break(vs, row.chain_seq,
		    "row %" PRId64 " does not follow row %" PRId64
		    " (prev_mac mismatch: a row before it was inserted, removed or replaced)",
		    row.chain_seq, row.chain_seq - 1);
		return (0);
	}
	int rc = coord_audit_mac(vs->key, &row, want, err);
	if (rc != 0) {
		return (rc);
	}
	if (CRYPTO_memcmp(want, mac, COORD_AUDIT_MAC_LEN) != 0) {
		verify_break(vs, row.chain_seq,
		    "row %" PRId64 " was altered (mac mismatch: its content is not what was "
		    "written, or the audit key is wrong)",
		    row.chain_seq);
		return (0);
	}
	if (row.chain_seq == vs->mark_seq &&
	    CRYPTO_memcmp(mac, vs->mark_mac, COORD_AUDIT_MAC_LEN) != 0) {
		verify_break(vs, row.chain_seq,
		    "row %" PRId64 " is not the row the coordinator committed (the local "
		    "high-water mark has another mac): the chain was rewritten from there",
		    row.chain_seq);
		return (0);
	}
	memcpy(vs->prev_mac, mac, COORD_AUDIT_MAC_LEN);
	vs->res->last_good = row.chain_seq;
	vs->expect = row.chain_seq + 1;
	return (0);
}

int
coord_audit_find(coord_catalog *cat, const coord_audit_key *key, const char *action, const char *k1,
    const char *v1, const char *k2, const char *v2, int64_t *chain_seq, coffer_err *err)
{
	*chain_seq = 0;
	const char *vals[] = { action, k1, v1, k2, v2 };
	int rc;
	PGresult *r = coord_catalog_query(cat,
	    "SELECT chain_seq, to_char(at AT TIME ZONE 'UTC', " AUDIT_TIME_FMT "), actor, action, "
	    "subject, details::text, prev_mac, mac FROM audit "
	    "WHERE action = $1 AND details->>$2 = $3 AND details->>$4 = $5 "
	    "ORDER BY chain_seq DESC LIMIT 8",
	    5, vals, "looking for an audit row", &rc, err);
	if (r == NULL) {
		return (rc);
	}
	for (int i = 0; i < PQntuples(r) && *chain_seq == 0; i++) {
		coord_audit_row row;
		uint8_t mac[COORD_AUDIT_MAC_LEN], want[COORD_AUDIT_MAC_LEN];
		row.chain_seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		row.at = PQgetvalue(r, i, 1);
		row.actor = PQgetvalue(r, i, 2);
		row.action = PQgetvalue(r, i, 3);
		row.subject = PQgetvalue(r, i, 4);
		row.details = PQgetvalue(r, i, 5);
		if (!bytea_parse(PQgetvalue(r, i, 6), row.prev_mac, COORD_AUDIT_MAC_LEN) ||
		    !bytea_parse(PQgetvalue(r, i, 7), mac, COORD_AUDIT_MAC_LEN)) {
			continue;
		}
		if ((rc = coord_audit_mac(key, &row, want, err)) != 0) {
			break;
		}
		if (CRYPTO_memcmp(want, mac, COORD_AUDIT_MAC_LEN) == 0) {
			*chain_seq = row.chain_seq;
		}
	}
	PQclear(r);
	return (rc);
}

/* Reads audit_head inside the verify snapshot. */
static int
verify_head(coord_catalog *cat, coord_audit_result *res, bool *ok, coffer_err *err)
{
	PGresult *r =
	    PQexec(coord_catalog_conn(cat), "SELECT chain_seq, mac FROM audit_head WHERE id = 1");
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		return (coord_catalog_pg_error(cat, r, "reading the audit chain head", err));
	}
	*ok = PQntuples(r) == 1 &&
	    bytea_parse(PQgetvalue(r, 0, 1), res->head_mac, COORD_AUDIT_MAC_LEN);
	res->head_seq = *ok ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
	PQclear(r);
	return (0);
}

/* Agents' keys and revocations, derived from the (verified) chain in the
 * same snapshot: a key no agent.enroll row names by fingerprint, or an
 * audited revocation missing from the row, was written outside Coffer. */
static int
verify_agents(coord_catalog *cat, struct verify_state *vs, coffer_err *err)
{
	PGresult *r = PQexec(coord_catalog_conn(cat),
	    "SELECT a.name, left(encode(sha256(a.pubkey), 'hex'), 32), a.revoked_at IS NOT NULL, "
	    "(SELECT max(x.chain_seq) FROM audit x WHERE x.subject = a.name "
	    "  AND x.action = 'agent.enroll' "
	    "  AND x.details->>'fingerprint' = left(encode(sha256(a.pubkey), 'hex'), 32)), "
	    "(SELECT max(x.chain_seq) FROM audit x WHERE x.subject = a.name "
	    "  AND x.action IN ('agent.revoke', 'agent.revoke_rebuilt')) "
	    "FROM agents a ORDER BY a.name");
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		return (
		    coord_catalog_pg_error(cat, r, "checking agents against the audit log", err));
	}
	for (int i = 0; i < PQntuples(r) && !vs->broken; i++) {
		vs->res->agents++;
		const char *name = PQgetvalue(r, i, 0);
		bool revoked = PQgetvalue(r, i, 2)[0] == 't';
		int64_t enrolled =
		    PQgetisnull(r, i, 3) ? 0 : strtoll(PQgetvalue(r, i, 3), NULL, 10);
		int64_t revoke = PQgetisnull(r, i, 4) ? 0 : strtoll(PQgetvalue(r, i, 4), NULL, 10);
		if (enrolled == 0) {
			verify_break(vs, -1,
			    "agent %.64s has public key %s, which no agent.enroll row names: the "
			    "agents row was written outside the coordinator",
			    name, PQgetvalue(r, i, 1));
		} else if (revoke > enrolled && !revoked) {
			verify_break(vs, -1,
			    "agent %.64s was revoked (audit row %" PRId64 ") but its agents row is "
			    "not: the revocation was undone outside the coordinator",
			    name, revoke);
		}
	}
	PQclear(r);
	return (0);
}

/* Legal holds, derived from the chain the same way: a hold no hold.added
 * row names was placed outside the coordinator, and a released hold no
 * hold.removed row names was released outside it (the release that
 * separation of duties guards: the runtime role may still UPDATE holds). */
static int
verify_holds(coord_catalog *cat, struct verify_state *vs, coffer_err *err)
{
	PGresult *r = PQexec(coord_catalog_conn(cat),
	    "SELECT h.id, h.backup_id, h.released_at IS NOT NULL, "
	    "EXISTS (SELECT 1 FROM audit x WHERE x.action = 'hold.added' "
	    "  AND x.subject = h.backup_id AND x.details->>'hold_id' = h.id::text), "
	    "EXISTS (SELECT 1 FROM audit x WHERE x.action = 'hold.removed' "
	    "  AND x.subject = h.backup_id AND x.details->>'hold_id' = h.id::text) "
	    "FROM holds h ORDER BY h.id");
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		return (
		    coord_catalog_pg_error(cat, r, "checking holds against the audit log", err));
	}
	for (int i = 0; i < PQntuples(r) && !vs->broken; i++) {
		const char *id = PQgetvalue(r, i, 0), *backup = PQgetvalue(r, i, 1);
		bool released = PQgetvalue(r, i, 2)[0] == 't';
		bool added = PQgetvalue(r, i, 3)[0] == 't';
		bool removed = PQgetvalue(r, i, 4)[0] == 't';
		if (!added) {
			verify_break(vs, -1,
			    "hold %s on backup %.128s has no hold.added row: it was placed outside "
			    "the coordinator",
			    id, backup);
		} else if (released && !removed) {
			verify_break(vs, -1,
			    "hold %s on backup %.128s is released but no hold.removed row says so: "
			    "it was released outside the coordinator",
			    id, backup);
		}
	}
	PQclear(r);
	return (0);
}

int
coord_audit_verify(
    coord_catalog *cat, const coord_audit_key *key, coord_audit_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	PGconn *conn = coord_catalog_conn(cat);
	struct verify_state vs = { .key = key, .res = res, .expect = 1 };
	/* The mark is read before the snapshot is taken: it only ever names
	 * committed rows, so a snapshot taken after it reaches it. */
	const char *mark_path = coord_audit_mark_path();
	bool mark_found = false;
	int rc = 0;
	if (mark_path != NULL &&
	    (rc = mark_read(mark_path, &vs.mark_seq, vs.mark_mac, &mark_found, err)) != 0) {
		return (rc);
	}
	res->mark_seq = vs.mark_seq;
	rc = coord_catalog_exec(cat, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    "starting the audit verification", err);
	if (rc != 0) {
		return (rc);
	}
	bool head_ok = false;
	uint8_t head_mac[COORD_AUDIT_MAC_LEN];
	if ((rc = verify_head(cat, res, &head_ok, err)) != 0) {
		goto out;
	}
	memcpy(head_mac, res->head_mac, sizeof(head_mac));
	/* Rows with any chain_seq are read, even ones a CHECK should have kept
	 * out, so a row smuggled in with chain_seq 0 is still seen. */
	if (PQsendQuery(conn,
	        "SELECT chain_seq, to_char(at AT TIME ZONE 'UTC', " AUDIT_TIME_FMT
	        "), actor, action, subject, details::text, prev_mac, mac "
	        "FROM audit ORDER BY chain_seq") != 1) {
		rc = coord_catalog_pg_error(cat, NULL, "reading the audit log", err);
		goto out;
	}
	PGresult *r;
	int failed = 0;
	if (PQsetSingleRowMode(conn) != 1) {
		/* Without single-row mode the whole table would arrive at once:
		 * refuse rather than let memory follow the table's size. */
		failed = coffer_err_set(
		    err, COFFER_EINTERNAL, "reading the audit log: libpq refused single-row mode");
		coffer_err_hint(err, "this is a bug; please report it");
	}
	while ((r = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE) {
			res->rows++;
			if (!vs.broken && failed == 0) {
				failed = verify_row(&vs, r, err);
			}
			PQclear(r);
		} else if (st == PGRES_TUPLES_OK) {
			PQclear(r);
		} else {
			if (failed == 0) {
				failed =
				    coord_catalog_pg_error(cat, r, "reading the audit log", err);
			} else {
				PQclear(r);
			}
		}
	}
	if (failed != 0) {
		rc = failed;
		goto out;
	}
	if (!vs.broken && vs.mark_seq > res->last_good) {
		verify_break(&vs, res->last_good + 1,
		    "rows %" PRId64 " to %" PRId64 " are missing from the end of the chain (the "
		    "local high-water mark says the coordinator committed up to %" PRId64 ")",
		    res->last_good + 1, vs.mark_seq, vs.mark_seq);
	}
	if (!vs.broken) {
		if (!head_ok) {
			verify_break(&vs, res->last_good + 1,
			    "the chain head (table audit_head) is missing or damaged");
		} else if (res->head_seq > res->last_good) {
			verify_break(&vs, res->last_good + 1,
			    "rows %" PRId64 " to %" PRId64 " are missing from the end of the chain "
			    "(audit_head says the chain reaches %" PRId64 ")",
			    res->last_good + 1, res->head_seq, res->head_seq);
		} else if (res->head_seq < res->last_good) {
			verify_break(&vs, res->head_seq + 1,
			    "rows after %" PRId64 " were added without moving the chain head "
			    "(audit_head)",
			    res->head_seq);
		} else if (CRYPTO_memcmp(head_mac, vs.prev_mac, COORD_AUDIT_MAC_LEN) != 0) {
			verify_break(&vs, res->head_seq,
			    "the chain head (audit_head) does not match row %" PRId64,
			    res->head_seq);
		}
	}
	if (!vs.broken && (rc = verify_agents(cat, &vs, err)) != 0) {
		goto out;
	}
	if (!vs.broken && (rc = verify_holds(cat, &vs, err)) != 0) {
		goto out;
	}
	if (vs.broken) {
		res->intact = false;
		if (res->bad_seq >= 0) {
			rc = coffer_err_set(err, COFFER_ECORRUPT,
			    "audit chain broken at chain_seq %" PRId64 ": %s", res->bad_seq,
			    res->problem);
		} else {
			rc = coffer_err_set(
			    err, COFFER_ECORRUPT, "audit check failed: %s", res->problem);
		}
		coffer_err_hint(err,
		    "the audit table was changed outside Coffer: compare with the "
		    "chain head exported to the DR repository and find who had "
		    "owner or superuser access");
	} else {
		res->intact = true;
		memcpy(res->head_mac, vs.prev_mac, sizeof(res->head_mac));
	}
out:
	coord_catalog_rollback(cat);
	return (rc);
}
