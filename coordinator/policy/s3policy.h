/*
 * The primary bucket's policy: storage-enforced isolation between services
 * (docs/S3.md, "Per-service credentials").
 *
 * Each [service.X] with s3.principal gets, in the primary bucket and only
 * under <prefix>/services/X/: PutObject (single PUT and multipart),
 * AbortMultipartUpload and ListMultipartUploadParts (its own failed
 * uploads), GetObject and GetObjectVersion (verify, restore, wal-fetch),
 * and ListBucket with an s3:prefix condition. Nothing deletes: an agent
 * never deletes (S3 keeps no temporaries; retention is the coordinator's).
 * [repository.primary] principal, when set, gets what the coordinator does
 * there: read, write (revocation records), list, delete (retention: a
 * delete marker; noncurrent versions expire by lifecycle) and reading the
 * bucket's versioning and lock state. No one gets DeleteObjectVersion,
 * PutBucketPolicy or PutBucketVersioning: those stay the bucket owner's.
 *
 * Dialects. aws adds explicit Deny statements, because on AWS an IAM
 * identity policy in the principal's own account may grant more than the
 * bucket policy does, and only an explicit Deny in the bucket policy
 * overrides that: everything outside the service's prefix, listing with
 * another or no prefix, and deleting. radosgw gets the same Allow
 * statements and the Deny of what lies outside the prefix and of deletes,
 * but not the listing Deny: Ceph Pacific evaluates StringNotLike on an
 * absent s3:prefix as false, so that Deny would not catch a listing
 * without a prefix; there, a user that owns nothing gets nothing the
 * policy does not grant, and the Allow's StringLike already refuses it.
 */
#ifndef COFFER_COORDINATOR_POLICY_S3POLICY_H
#define COFFER_COORDINATOR_POLICY_S3POLICY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/policy/coord_config.h"

typedef enum coord_s3policy_dialect {
	COORD_S3POLICY_AWS = 0,
	COORD_S3POLICY_RADOSGW = 1,
} coord_s3policy_dialect;

/* The bucket policy for [repository.primary] as a JSON document (*out is
 * the caller's, cJSON_Delete). COFFER_EINVAL, with the fix, when the
 * primary repository is not s3 or has no bucket, or when no service sets
 * s3.principal (an empty policy would isolate nobody). */
int coord_s3policy_build(
    const coord_config *cfg, coord_s3policy_dialect dialect, cJSON **out, coffer_err *err);

/* "<prefix>/services/<service>/" as keys in the primary bucket carry it
 * ("services/<service>/" without a prefix). COFFER_ETOOBIG if it does not
 * fit in size. */
int coord_s3policy_service_prefix(
    const coord_config *cfg, const char *service, char *buf, size_t size);

/* What to do with a revoked agent's repository credentials, one line for
 * people: the service's principal and how to rotate it (every agent of a
 * service shares it), or that the service has no s3.principal. */
void coord_s3policy_revoke_note(
    const coord_config *cfg, const char *service, char *buf, size_t size);

#endif
