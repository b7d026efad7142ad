/*
 * What the files of the DR copier (coordinator/dr/drcopy.c, drplan.c,
 * drobject.c, drbackup.c, drwal.c, drexport.c) share with one another: the
 * copier's state, a copy's working state, and the steps of a pass that one
 * file does for another.
 *
 * Everyone else uses coordinator/dr/drcopy.h. Only those files include this
 * header; nothing here is a promise to any other caller, and it may change
 * with the files that share it. Its functions are external symbols of
 * coffer_coordinator_dr all the same, hence the drcopy_ prefix: it keeps
 * them clear of every other name linked into the coordinator.
 */
#ifndef COFFER_COORDINATOR_DR_DRCOPY_INTERNAL_H
#define COFFER_COORDINATOR_DR_DRCOPY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "common/repo/repo.h"
#include "common/repo/s3.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/catalog/worker.h"
#include "coordinator/dr/attest.h"
#include "coordinator/dr/auditexport.h"
#include "coordinator/dr/drcopy.h"
#include "coordinator/policy/coord_config.h"

#define MINUTE_MS (60LL * 1000)

/* WAL segments copied per service and pass, at most. */
#define WAL_PER_PASS 64

struct coord_drcopy {
	const coord_config *cfg;
	const coord_audit_key *key;
	coffer_sign_key *attest_key;             /* [dr] attestation_key; NULL if unset */
	coffer_repo *primary;                    /* read (backups), write (attestations) */
	coffer_s3 *dr;                           /* NULL without [repository.dr] */
	char dr_prefix[COFFER_REPO_KEY_MAX + 2]; /* "" or "<prefix>/" */
	atomic_bool stop;
	coord_worker *worker; /* the copier thread; NULL: passes run on the caller's */
	/* The audit head last exported (copier thread), and when
	 * (monotonic); seeded from DR's newest at the first export. */
	coord_audit_head exported;
	bool exported_seeded;
	int64_t exported_ms;
	/* Set, for good, when the chain no longer holds an exported head:
	 * read by the maintenance tick for the audit_chain_broken alert. */
	pthread_mutex_t audit_mu;
	char audit_problem[256]; /* "" while none */
	/* Set once DR's newest head has been checked against the chain since
	 * this process started (found holding or not): until then the
	 * copier cannot say the chain is intact. */
	atomic_bool audit_checked;
};

/* A copy's working state. */
typedef struct copy_job {
	char id[160];
	char service[72];
	char agent[COFFER_MANIFEST_NAME_MAX];
	char kind[16];
	char stored_sha[65];
	int64_t stored_bytes;
	char manifest_sha[65]; /* "" when the catalog has none */
	int64_t until_ms;
	char lock[16]; /* GOVERNANCE / COMPLIANCE */
	char pubkey_hex[65];
	int attempts;
	/* physical: the WAL from start to stop goes with it */
	int timeline;
	char sysid[24]; /* the cluster's system identifier, decimal; "" if unknown */
	char start_lsn[32], stop_lsn[32];
	int wal_segments;
	/* The primary's versions of data and manifest.json recorded when the
	 * backup completed (backup_objects): the ones copied. "" where none is
	 * recorded (a store without versions). */
	char recorded[2][COFFER_S3_VERSION_ID_MAX];
	/* The version of the source drcopy_stream_object reads; NULL: the
	 * current one (WAL, a store without versions). */
	const char *src_version;
	/* results */
	char versions[3][COFFER_S3_VERSION_ID_MAX];
	uint64_t copied_bytes;
	char detail[1024];
} copy_job;

/* ---- which services copy (drplan.c) ---- */

const char *drcopy_mode(const coord_config *cfg, const char *service);
bool drcopy_copies(const coord_config *cfg, const char *service);

/* ---- one object into DR, and proving it (drobject.c) ---- */

/* data, manifest.json and the attestation: a copy_job's objects, in the
 * order they are copied, and the index of each in copy_job.versions. */
extern const char *const drcopy_object_names[3];

/* Streams the primary's copy of drcopy_object_names[which] into a locked DR
 * upload (drcopy_stream_object), its version into j->versions[which]. */
int drcopy_copy_object(coord_drcopy *d, copy_job *j, int which, const char *expect_sha,
    int64_t expect_bytes, bool *exists, char sha_out[65], coffer_err *err);

/*
 * Streams the primary's object name into a locked DR upload. expect_sha
 * ("" for none) and expect_bytes (< 0 for none) are checked before the
 * upload is published. *exists is set when DR already has the key.
 */
int drcopy_stream_object(coord_drcopy *d, copy_job *j, const char *src, const char *dst,
    const char *expect_sha, int64_t expect_bytes, bool *exists, char sha_out[65],
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err);

/* Uploads bytes we hold (the attestation) with the copy's lock. */
int drcopy_put_small(coord_drcopy *d, copy_job *j, int which, const char *data, size_t len,
    bool *exists, coffer_err *err);

/* drcopy_verify_key for drcopy_object_names[which] and the version written. */
int drcopy_verify_object(
    coord_drcopy *d, copy_job *j, int which, const char *want_sha, coffer_err *err);

/* Reads the DR object back (the version written, when known), and checks
 * its digest and its lock. */
int drcopy_verify_key(coord_drcopy *d, copy_job *j, const char *dst, const char *want_sha,
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err);

/* The SHA-256 of an object in the primary repository, streamed. */
int drcopy_digest_primary(coord_drcopy *d, const char *key, char sha_out[65], coffer_err *err);

/* The same for one version of it (NULL or "": the current one). */
int drcopy_digest_primary_version(
    coord_drcopy *d, const char *key, const char *version, char sha_out[65], coffer_err *err);

/* Refuses (COFFER_EREFUSED, naming both versions) when the current version
 * of data or manifest.json in the primary is not the one recorded when the
 * backup completed: someone replaced it, and DR must not take either. */
int drcopy_check_replaced(coord_drcopy *d, const copy_job *j, coffer_err *err);

/* ---- backups (drbackup.c) ---- */

/* At most [dr] copies_per_pass due copies, each made, proven and recorded. */
int drcopy_copy_due(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/* ---- WAL (drwal.c) ---- */

/* Records a WAL segment's verified DR copy (the first one only). */
int drcopy_wal_copied(coord_catalog *cat, const char *service, const char *sysid, int timeline,
    const char *segment, coffer_err *err);

/* The archived WAL inside each copying service's PITR window, into DR. */
int drcopy_copy_wal_stream(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/* ---- what the coordinator vouches for (drexport.c) ---- */

/* The attestation of j's backup with the given manifest digest, rendered
 * and HMAC'd with the audit key; *json is malloc'd. */
int drcopy_attestation_of(coord_drcopy *d, const copy_job *j, const char *manifest_sha, char **json,
    size_t *len, coffer_err *err);

/* Attestations into the primary repository for completed backups. */
int drcopy_attest_primary(
    coord_drcopy *d, coord_catalog *cat, coord_drcopy_stats *st, coffer_err *err);

/* Agents revoked in the catalog whose revocation is not yet in the
 * repositories: without it, rebuild-catalog would bring them back active
 * from their backups' attestations. */
int drcopy_export_revocations(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/* Escrowed keys (services/<s>/keys/<id>.escrow.json in the primary) into DR,
 * COMPLIANCE-locked, recorded in key_escrows (drescrow.c). */
int drcopy_export_escrows(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/* The head, after checking that what was exported before still holds. The
 * first export of a process reads DR's newest head (one listing) to know
 * what was exported before it started. */
int drcopy_export_audit_head(coord_drcopy *d, coord_catalog *cat, int64_t now_ms, int64_t mono,
    coord_drcopy_stats *st, coffer_err *err);

#endif
