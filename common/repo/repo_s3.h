/*
 * The s3 repository driver (type = s3): common/repo/repo.h's contract on an S3
 * bucket through common/repo/s3.h. Keys live under the configured prefix
 * ("<prefix>/<key>"). Publishing is the single PUT or the
 * CompleteMultipartUpload of coffer_s3_upload_commit, so an aborted write
 * leaves nothing listed. Delete needs the object to exist (S3 itself would
 * answer 204 either way); in a versioned bucket it adds a delete marker and
 * old versions stay readable by versionId through common/repo/s3.h.
 *
 * Memory: a write holds one part (8 MiB by default), a list one page of
 * 1000 keys; reads stream.
 */
#ifndef COFFER_COMMON_REPO_REPO_S3_H
#define COFFER_COMMON_REPO_REPO_S3_H

#include "common/conf/config.h"
#include "common/repo/repo.h"

extern const coffer_repo_driver coffer_repo_s3_driver;

/* The plain-http rule for one [repository.*] section of a config file
 * (agent.conf and coordinator.conf alike): an endpoint that is http:// to
 * a host other than loopback is refused at its line, naming insecure_http,
 * unless the section sets insecure_http = true; then a warning is logged,
 * once per load, so every start of a daemon says it. */
int coffer_repo_s3_section_check(const coffer_config *ini, const char *section, coffer_err *err);

#endif
