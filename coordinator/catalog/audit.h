/*
 * Audit log: an append-only, HMAC-chained table in the catalog.
 *
 * What it promises:
 * - The database itself refuses UPDATE, DELETE and TRUNCATE on `audit`
 *   (triggers from migration 1, privileges revoked from PUBLIC). The owner
 *   role or a superuser can still disable or drop the triggers; the chain is
 *   what catches that: every row's mac is
 *
 *     HMAC-SHA-256(audit_key, "coffer-audit-v1" NUL
 *                  || be64(chain_seq)
 *                  || lp(at) || lp(actor) || lp(action) || lp(subject)
 *                  || lp(details) || prev_mac)
 *
 *   where lp(x) is be32(byte length of x) || x, `at` is the row's time as
 *   "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" (UTC, microseconds: timestamptz's own
 *   precision), details is PostgreSQL's jsonb text output (which is
 *   canonical: keys sorted, whitespace normalised, duplicates removed), and
 *   prev_mac is the previous row's mac (32 zero bytes for chain_seq 1).
 *   The key never enters the database, so nobody with only database access
 *   can forge a row that verifies.
 * - Rows removed from the end of the chain are caught by audit_head (the
 *   head kept in the catalog) unless that is rewritten too; two anchors
 *   outside the catalog catch that case: the local high-water mark (below),
 *   at most one fsync behind every commit, and the chain head exported to
 *   the DR repository ([dr] audit_export_interval and at shutdown).
 * - Security-relevant rows are derived from the chain: every agent's public
 *   key must be the one an agent.enroll row names (by fingerprint), and an
 *   agent revoked by an audit row must still be revoked; verify names an
 *   agents row edited outside the coordinator.
 * - Appenders are serialised by locking audit_head's row until their
 *   transaction ends, so chain_seq has no gaps and no forks.
 * - Blocking (libpq); same thread rules as coordinator/catalog/catalog.h.
 */
#ifndef COFFER_COORDINATOR_CATALOG_AUDIT_H
#define COFFER_COORDINATOR_CATALOG_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"

#define COORD_AUDIT_KEY_LEN     32
#define COORD_AUDIT_MAC_LEN     32
#define COORD_AUDIT_MAX_NAME    256         /* actor, subject */
#define COORD_AUDIT_MAX_DETAILS (64 * 1024) /* details JSON, bytes */

typedef struct coord_audit_key {
	uint8_t bytes[COORD_AUDIT_KEY_LEN];
} coord_audit_key;

/* Reads a key file: 64 hex digits, optionally followed by a newline. The
 * file must be a regular file with no group or other permissions (0600 or
 * 0400): COFFER_EPERM otherwise, naming the mode and the chmod that fixes
 * it. COFFER_ENOENT if missing, COFFER_EINVAL if the text is not a key. */
int coord_audit_key_load(const char *path, coord_audit_key *key, coffer_err *err);

/* Creates path (mode 0600, never overwriting: COFFER_EEXIST) holding 32
 * random bytes in hex, fsyncs it and its directory, and fills key. */
int coord_audit_key_generate(const char *path, coord_audit_key *key, coffer_err *err);

/* Wipes key's bytes (OPENSSL_cleanse). */
void coord_audit_key_clear(coord_audit_key *key);

/*
 * Appends one row. Runs inside the caller's transaction when one is open,
 * so an event and its audit row commit or roll back together; otherwise it
 * opens and commits its own. Holds audit_head's row lock until that
 * transaction ends: keep audited transactions short.
 *
 * actor: who (an agent or operator name, "coordinator"), 1..256 bytes.
 * action: what, lowercase dotted ("agent.enroll", "request.refused").
 * subject: what it was done to (a service, backup id), 0..256 bytes.
 * details_json: a JSON value of at most COORD_AUDIT_MAX_DETAILS bytes, or
 *   NULL for {}.
 * chain_seq: if not NULL, receives the new row's chain_seq.
 *
 * Bad arguments are COFFER_EINVAL and leave the caller's transaction
 * untouched. A database failure (COFFER_EPG, COFFER_EUNAVAIL) leaves it
 * aborted: the caller must roll back.
 */
int coord_audit_append(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *action, const char *subject, const char *details_json, int64_t *chain_seq,
    coffer_err *err);

/* One row for coord_audit_append_many; the same rules as the arguments of
 * coord_audit_append (details NULL for {}). */
typedef struct coord_audit_entry {
	const char *actor;
	const char *action;
	const char *subject;
	const char *details;
} coord_audit_entry;

/*
 * Appends rows[0..n) in order, as n calls of coord_audit_append would, but
 * in two round trips per few hundred rows: this is what lets intake audit
 * every event of an envelope without a round trip each. Every row is
 * checked before anything runs (COFFER_EINVAL leaves the transaction
 * untouched); chain_seq receives the last row's. Same transaction and
 * failure rules as coord_audit_append.
 */
int coord_audit_append_many(coord_catalog *cat, const coord_audit_key *key,
    const coord_audit_entry *rows, size_t n, int64_t *chain_seq, coffer_err *err);

/*
 * The local high-water mark: <state_dir>/audit-mark, one line
 * "coffer-audit-mark-v1 <chain_seq> <mac hex>", the newest chain head this
 * coordinator saw committed, replaced durably (tmp, fsync, rename, fsync of
 * the directory) after each commit that appended audit rows (coalesced: a
 * commit arriving while the mark is written is written by the same writer
 * right after). Somebody with the catalog but not the coordinator's host
 * cannot move it back, so coord_audit_verify names a chain that ends before
 * it (a cut tail) or holds another row at its chain_seq (a rewritten head).
 * Window: rows whose COMMIT returned but whose mark is not yet on disk (one
 * fsync, or a crash in between) can be cut undetected by the mark alone.
 *
 * setup reads the mark (COFFER_ECORRUPT if damaged) and makes every later
 * coord_audit_verify of this process check it; writable (the daemon only,
 * one per state_dir) also makes commits advance it. Without setup nothing
 * is written or checked. The daemon also stops advancing the mark when an
 * append finds the head behind it (rows cut while it ran): the mark stays
 * as the evidence.
 */
int coord_audit_mark_setup(const char *state_dir, bool writable, coffer_err *err);

/* The mark's path, or NULL without setup. */
const char *coord_audit_mark_path(void);

/* An operator has looked at a chain that no longer reaches the mark (the
 * audited resume of the head export, coordinator/dr/auditexport.h): the
 * mark moves to the current head (audit_head) and advances again. */
int coord_audit_mark_resume(coord_catalog *cat, coffer_err *err);

/* Called by coord_catalog_commit with the head of a committed transaction. */
void coord_audit_mark_committed(int64_t seq, const uint8_t mac[COORD_AUDIT_MAC_LEN]);

typedef struct coord_audit_result {
	bool intact;
	int64_t rows;                          /* rows read */
	int64_t last_good;                     /* chain_seq of the last row that verified */
	int64_t head_seq;                      /* audit_head's chain_seq */
	uint8_t head_mac[COORD_AUDIT_MAC_LEN]; /* the verified head, for export */
	int64_t bad_seq;   /* first broken or missing chain_seq; 0 if intact; -1: an agents row */
	char problem[256]; /* what is wrong with bad_seq */
	int64_t mark_seq;  /* the local high-water mark; 0: none */
	int64_t agents;    /* agents rows checked against the chain */
} coord_audit_result;

/*
 * Walks the whole chain in one REPEATABLE READ snapshot, one row in memory
 * at a time, and stops checking at the first problem: a missing chain_seq
 * (a gap, or rows missing from the end according to audit_head), a row
 * whose prev_mac is not the previous row's mac (a row inserted, removed and
 * renumbered, or reordered), a row whose mac does not match its content
 * (altered), audit_head disagreeing with the last row, the chain ending
 * before the local high-water mark or holding another row at its chain_seq
 * (coord_audit_mark_setup), or an agents row whose public key no
 * agent.enroll row names or whose audited revocation was undone.
 *
 * Returns 0 with res->intact set, or COFFER_ECORRUPT with err naming the
 * first broken chain_seq and res->bad_seq / res->problem filled, or another
 * code when the catalog could not be read.
 */
int coord_audit_verify(
    coord_catalog *cat, const coord_audit_key *key, coord_audit_result *res, coffer_err *err);

/* One row as the MAC sees it; at and details are PostgreSQL's own text
 * output, so the verifier recomputes exactly what the appender computed. */
typedef struct coord_audit_row {
	int64_t chain_seq;
	const char *at;
	const char *actor;
	const char *action;
	const char *subject;
	const char *details;
	uint8_t prev_mac[COORD_AUDIT_MAC_LEN];
} coord_audit_row;

/* HMAC-SHA-256 over the row's canonical bytes (layout above). */
int coord_audit_mac(const coord_audit_key *key, const coord_audit_row *row,
    uint8_t out[COORD_AUDIT_MAC_LEN], coffer_err *err);

/*
 * The newest row of action whose details hold the text values v1 and v2
 * under k1 and k2, and whose MAC verifies over its own content and
 * prev_mac: a row a coordinator wrote, not one inserted by hand (that the
 * chain around it holds is coord_audit_verify's to say). *chain_seq 0: none.
 * Scans the table: for rare decisions, not for every request.
 */
int coord_audit_find(coord_catalog *cat, const coord_audit_key *key, const char *action,
    const char *k1, const char *v1, const char *k2, const char *v2, int64_t *chain_seq,
    coffer_err *err);

#endif
