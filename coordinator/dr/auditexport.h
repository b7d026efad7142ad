/*
 * Audit head export: the audit chain's head, written regularly into the
 * DR repository, where nobody holding production credentials can remove
 * it (COMPLIANCE object lock).
 *
 * The HMAC chain (coordinator/catalog/audit.h) proves every row up to the head,
 * but a database superuser can cut rows from the end and move audit_head
 * back: the shorter chain verifies. An exported head outlives that: if the
 * catalog no longer has the exported chain_seq, or has it with another
 * MAC, rows were removed or rewritten, and `coffer-coordinator
 * audit-verify` says so, naming the exported head.
 *
 * Object: audit/<chain>/<YYYY-MM-DD>/head-<chain_seq, 20 digits>.json,
 * where <chain> is the first 16 hex digits of row 1's MAC (a catalog
 * rebuilt after a disaster starts a chain of its own, and is checked
 * against its own heads) and the date is the export's (UTC); the greatest
 * key under a chain is its newest head:
 *   {"format":1,"chain_seq":"N","mac":"<64 hex>","at":"<row time>",
 *    "sig":"<64 hex>"}
 * sig = HMAC-SHA-256(audit key, "coffer-audit-head-v1" NUL N NUL mac NUL at):
 * a head planted by someone without the audit key is reported as forged,
 * not believed.
 */
#ifndef COFFER_COORDINATOR_DR_AUDITEXPORT_H
#define COFFER_COORDINATOR_DR_AUDITEXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/repo/repo.h"
#include "common/repo/s3.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

typedef struct coord_audit_head {
	int64_t chain_seq;
	char mac_hex[65];
	char at[64];
	char chain_id[17]; /* the first 16 hex digits of row 1's mac */
	char key[COFFER_REPO_KEY_MAX];
	/* The audit.export_resumed row that acknowledged this head as no
	 * longer holding; 0: none. */
	int64_t resumed_by;
} coord_audit_head;

/*
 * Writes the current head when it moved past last (updated; chain_seq 0:
 * none known), locked COMPLIANCE until now + retention_ms, under prefix
 * ("" or "<prefix>/") in dr; then audits "audit.head_exported". *exported
 * says whether it wrote one. Before writing, the row last names must still
 * be in the catalog with the MAC that was exported: otherwise the chain was
 * rewritten below an exported head, and COFFER_ECORRUPT says so and nothing
 * is written (a newer head would hide the rewrite from
 * coord_audit_export_check, which reads the newest).
 */
int coord_audit_export(coord_catalog *cat, const coord_audit_key *key, coffer_s3 *dr,
    const char *prefix, int64_t now_ms, int64_t retention_ms, coord_audit_head *last,
    bool *exported, coffer_err *err);

/*
 * Reads the newest exported head from dr (a repository handle on the DR
 * repository) and checks it against the catalog. *found false: nothing
 * exported yet (0). COFFER_EAUTH: the newest head is not signed with this
 * audit key; COFFER_ECORRUPT: the catalog lacks the exported row or has it
 * with another MAC (err names both). newest gets the head read.
 */
int coord_audit_export_check(coord_catalog *cat, const coord_audit_key *key, coffer_repo *dr,
    coord_audit_head *newest, bool *found, coffer_err *err);

/*
 * An operator's answer to a head that no longer holds: once they have
 * looked (the chain cannot be mended, and the heads in DR stay as the
 * evidence), the export goes on from the chain as it is. Checks that DR's
 * newest head indeed does not hold (COFFER_EREFUSED otherwise), then
 * audits "audit.export_resumed" by actor with the head's key, MAC and
 * sequence, the problem and the reason. From then on
 * coord_audit_export_check accepts that head (setting resumed_by: only a
 * row whose own MAC verifies counts), and the DR copier exports the current
 * head again. head gets the head acknowledged.
 */
int coord_audit_export_resume(coord_catalog *cat, const coord_audit_key *key,
    const coord_config *cfg, const char *actor, const char *reason, coord_audit_head *head,
    coffer_err *err);

/*
 * The whole verdict on the chain, for `audit-verify` and the admin
 * endpoint's audit.verify alike: coord_audit_verify, then, when cfg has a
 * DR repository, the newest head exported there (the HMAC chain alone
 * verifies with rows cut from its end; the exported head says where it
 * ended). A head that does not check fails like a broken row: res is not
 * intact, bad_seq is the head's chain_seq, and the return is
 * COFFER_ECORRUPT or COFFER_EAUTH with err naming it. *exported and head:
 * whether a head was read, and which.
 */
int coord_audit_verify_all(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    coord_audit_result *res, coord_audit_head *head, bool *exported, coffer_err *err);

#endif
