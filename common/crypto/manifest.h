/*
 * Manifests: the signed JSON record of one backup, stored next to its data
 * as services/<service>/backups/<backup-id>/manifest.json. The manifest is
 * the source of truth: restore, verify, retention and a catalog rebuild all
 * start from it, so it is signed by the agent that made the backup and
 * parsed strictly (docs/FORMAT.md, "Manifest", lists every field).
 *
 * Signing: the signature is Ed25519 over the canonical JSON of every other
 * field: cJSON's unformatted output with the keys in the fixed order of
 * docs/FORMAT.md and 64-bit integers written as decimal strings (JSON
 * numbers are doubles to most readers). The parser rebuilds the canonical
 * bytes from the fields it read and verifies them, so what is verified is
 * exactly what the caller gets; unknown or repeated keys are refused, since
 * they would be outside the signature.
 *
 * Ownership: coffer_manifest_parse returns a manifest that
 * coffer_manifest_free releases, tables, files and options included. A
 * caller building one uses coffer_manifest_new and the _add_ functions.
 *
 * Memory: parse refuses input over COFFER_MANIFEST_MAX_BYTES, or with more
 * than COFFER_MANIFEST_MAX_VALUES JSON values, before building any tree.
 */
#ifndef COFFER_COMMON_CRYPTO_MANIFEST_H
#define COFFER_COMMON_CRYPTO_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"

/* Written: 2 (adds schema_query and schema_version). Read: 1 and 2. */
#define COFFER_MANIFEST_FORMAT_VERSION     2
#define COFFER_MANIFEST_FORMAT_MIN         1
#define COFFER_MANIFEST_SCHEMA_QUERY_MAX   4096
#define COFFER_MANIFEST_SCHEMA_VERSION_MAX 1024
#define COFFER_MANIFEST_MAX_BYTES          (64u * 1024 * 1024)
#define COFFER_MANIFEST_MAX_VALUES         (4u * 1024 * 1024)

/* "20261124T155603Z-l-3fa2c1" and a NUL. */
#define COFFER_MANIFEST_ID_LEN  25
#define COFFER_MANIFEST_ID_SIZE 26

#define COFFER_MANIFEST_NAME_MAX   128 /* service, agent, database, key id, schema, table */
#define COFFER_MANIFEST_LSN_MAX    18  /* "FFFFFFFF/FFFFFFFF" */
#define COFFER_MANIFEST_SHA256_HEX 65

typedef enum coffer_manifest_kind {
	COFFER_MANIFEST_LOGICAL = 1,  /* pg_dump -Fc; id letter 'l' */
	COFFER_MANIFEST_PHYSICAL = 2, /* base backup; id letter 'p' */
} coffer_manifest_kind;

typedef struct coffer_manifest_table {
	char schema[COFFER_MANIFEST_NAME_MAX];
	char name[COFFER_MANIFEST_NAME_MAX];
	uint64_t rows;
} coffer_manifest_table;

typedef struct coffer_manifest_file {
	char *path; /* relative to PGDATA; owned by the manifest */
	uint64_t size;
	char sha256[COFFER_MANIFEST_SHA256_HEX];
} coffer_manifest_file;

typedef struct coffer_manifest {
	int format_version; /* set by new/parse; to_json writes the current one */
	char backup_id[COFFER_MANIFEST_ID_SIZE];
	char service[COFFER_MANIFEST_NAME_MAX];
	char agent[COFFER_MANIFEST_NAME_MAX];
	coffer_manifest_kind kind;
	int64_t started_at; /* Unix ms */
	int64_t finished_at;
	int pg_version; /* server_version_num, e.g. 160004 */
	uint64_t system_identifier;
	char database[COFFER_MANIFEST_NAME_MAX];
	uint64_t database_size;
	char lsn_start[COFFER_MANIFEST_LSN_MAX]; /* "0/1A2B3C4D"; may be "" for logical */
	char lsn_stop[COFFER_MANIFEST_LSN_MAX];
	uint32_t timeline; /* may be 0 for logical */
	coffer_manifest_table *tables;
	size_t ntables;
	uint64_t plaintext_bytes;
	uint64_t stored_bytes;
	char plaintext_sha256[COFFER_MANIFEST_SHA256_HEX]; /* lower-case hex */
	char stored_sha256[COFFER_MANIFEST_SHA256_HEX];
	char key_id[COFFER_MANIFEST_NAME_MAX];
	char compression[16]; /* "zstd" or "none" */
	uint32_t chunk_size;  /* sealed stream chunk size */
	char **pg_dump_options;
	size_t npg_dump_options;
	/* Format 2: the service's [backup] schema_query and what it returned in
	 * the backup's snapshot; both "" when none is configured. A drill runs
	 * the query on the restored database and compares. */
	char schema_query[COFFER_MANIFEST_SCHEMA_QUERY_MAX + 1];
	char schema_version[COFFER_MANIFEST_SCHEMA_VERSION_MAX + 1];
	coffer_manifest_file *files; /* physical only; may be empty */
	size_t nfiles;
	uint8_t signature[COFFER_SIGN_BYTES];
	bool is_signed; /* signature holds a signature (parsed or made by to_json) */
	/* private: capacities of the arrays */
	size_t cap_tables;
	size_t cap_files;
	size_t cap_options;
} coffer_manifest;

/* A zeroed manifest with format_version and compression "zstd" set. */
int coffer_manifest_new(coffer_manifest **out, coffer_err *err);
void coffer_manifest_free(coffer_manifest *m);

/* Appending copies the strings. COFFER_EINVAL if one is too long. */
int coffer_manifest_add_table(
    coffer_manifest *m, const char *schema, const char *name, uint64_t rows, coffer_err *err);
int coffer_manifest_add_file(
    coffer_manifest *m, const char *path, uint64_t size, const char *sha256_hex, coffer_err *err);
int coffer_manifest_add_dump_option(coffer_manifest *m, const char *option, coffer_err *err);

/* Checks every field (the same rules parse applies), signs the canonical
 * JSON with key, stores the signature in m and returns the signed JSON in
 * *json (malloc'd, NUL-terminated, ends in a newline; the caller frees it)
 * and its length in *len (may be NULL). */
int coffer_manifest_to_json(
    coffer_manifest *m, const coffer_sign_key *key, char **json, size_t *len, coffer_err *err);

/* Parses and checks a manifest. pub NULL skips the signature check (only for
 * listing; never before trusting contents). COFFER_ETOOBIG over the size
 * limits, COFFER_EVERSION for an unknown format_version, COFFER_ECORRUPT
 * naming the field that is missing, ill-typed or out of range,
 * COFFER_EAUTH if the signature does not verify with pub. */
int coffer_manifest_parse(const char *json, size_t len, const coffer_sign_pubkey *pub,
    coffer_manifest **out, coffer_err *err);

/* Backup ids: "<UTC yyyymmddThhmmssZ>-<l|p>-<6 random hex>", sortable by
 * time. now_ms is the start time (pass coffer_clock_now). */
int coffer_manifest_id_new(
    char id[COFFER_MANIFEST_ID_SIZE], int64_t now_ms, coffer_manifest_kind kind, coffer_err *err);

/* 0 if id is a well-formed backup id (*kind set when kind != NULL), else
 * COFFER_EINVAL saying what is wrong. */
int coffer_manifest_id_check(const char *id, coffer_manifest_kind *kind, coffer_err *err);

/* "logical" / "physical"; parse returns 0 or COFFER_EINVAL. */
const char *coffer_manifest_kind_name(coffer_manifest_kind kind);
int coffer_manifest_kind_parse(const char *text, coffer_manifest_kind *kind);

#endif
