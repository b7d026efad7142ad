/*
 * Manifest JSON: building, canonical form, signing, strict parsing, and
 * backup ids. See common/crypto/manifest.h for the rules and docs/FORMAT.md
 * ("Manifest") for the fields.
 *
 * Design notes.
 * One function, canonical(), turns a struct into the signed bytes; both
 * to_json (which signs) and parse (which verifies) go through it, so the two
 * sides cannot disagree about field order or number formatting. Parse
 * checks format_version before anything else, so a manifest from a newer
 * agent is reported as a version problem, not as a pile of unknown fields.
 * Values come back through the same checks to_json applies, so a signed but
 * nonsensical manifest (an agent bug) is refused as well, naming the field.
 * File paths of physical backups are restored under PGDATA, so one that is
 * absolute or climbs with ".." is corrupt, signed or not.
 */
#include "common/crypto/manifest.h"

#include "common/base/hex.h"
#include "common/base/name.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/rand.h>

#define MF_PATH_MAX   4096
#define MF_OPTION_MAX 4096
#define MF_CHUNK_MAX  (1u << 30)

/* Canonical key order; the "signature" key always comes last. */
enum mf_field {
	F_FORMAT_VERSION,
	F_BACKUP_ID,
	F_SERVICE,
	F_AGENT,
	F_KIND,
	F_STARTED_AT,
	F_FINISHED_AT,
	F_PG_VERSION,
	F_SYSTEM_IDENTIFIER,
	F_DATABASE,
	F_DATABASE_SIZE,
	F_LSN_START,
	F_LSN_STOP,
	F_TIMELINE,
	F_TABLES,
	F_PLAINTEXT_BYTES,
	F_STORED_BYTES,
	F_PLAINTEXT_SHA256,
	F_STORED_SHA256,
	F_KEY_ID,
	F_COMPRESSION,
	F_CHUNK_SIZE,
	F_PG_DUMP_OPTIONS,
	F_SCHEMA_QUERY,   /* format 2 */
	F_SCHEMA_VERSION, /* format 2 */
	F_FILES,
	F_SIGNATURE,
	F_COUNT
};

static const char *const mf_names[F_COUNT] = {
	"format_version",
	"backup_id",
	"service",
	"agent",
	"kind",
	"started_at",
	"finished_at",
	"pg_version",
	"system_identifier",
	"database",
	"database_size",
	"lsn_start",
	"lsn_stop",
	"timeline",
	"tables",
	"plaintext_bytes",
	"stored_bytes",
	"plaintext_sha256",
	"stored_sha256",
	"key_id",
	"compression",
	"chunk_size",
	"pg_dump_options",
	"schema_query",
	"schema_version",
	"files",
	"signature",
};

static int corrupt(coffer_err *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Always returns COFFER_ECORRUPT. clang's static analyzer does not step into
 * variadic functions, so it cannot see that: it takes a get_*() that failed
 * through here for one that returned 0 without writing its output, and
 * reports the caller's read of it (tests/lint/analyze.sh). The lines that
 * silence it point here. */
static int
corrupt(coffer_err *err, const char *field, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	coffer_err_set(err, COFFER_ECORRUPT, "manifest field \"%s\" %s", field, what);
	coffer_err_hint(err,
	    "the manifest was damaged or written by a faulty agent; "
	    "verify the backup and use another one");
	return (COFFER_ECORRUPT);
}

/* ---- kind and id ---- */

const char *
coffer_manifest_kind_name(coffer_manifest_kind kind)
{
	switch (kind) {
	case COFFER_MANIFEST_LOGICAL:
		return ("logical");
	case COFFER_MANIFEST_PHYSICAL:
		return ("physical");
	}
	return ("unknown");
}

int
coffer_manifest_kind_parse(const char *text, coffer_manifest_kind *kind)
{
	if (strcmp(text, "logical") == 0) {
		*kind = COFFER_MANIFEST_LOGICAL;
		return (0);
	}
	if (strcmp(text, "physical") == 0) {
		*kind = COFFER_MANIFEST_PHYSICAL;
		return (0);
	}
	return (COFFER_EINVAL);
}

static char
kind_letter(coffer_manifest_kind kind)
{
	return (kind == COFFER_MANIFEST_PHYSICAL ? 'p' : 'l');
}

int
coffer_manifest_id_new(
    char id[COFFER_MANIFEST_ID_SIZE], int64_t now_ms, coffer_manifest_kind kind, coffer_err *err)
{
	id[0] = '\0';
	if (kind != COFFER_MANIFEST_LOGICAL && kind != COFFER_MANIFEST_PHYSICAL) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "backup id for unknown kind %d", (int)kind));
	}
	time_t secs = (time_t)(now_ms / 1000);
	struct tm tm;
	if (now_ms < 0 || gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > 9999) {
		return (coffer_err_set(
		    err, COFFER_EINVAL, "cannot make a backup id for time %" PRId64 " ms", now_ms));
	}
	uint8_t rnd[3];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "no random bytes for a backup id"));
	}
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "%04d%02d%02dT%02d%02d%02dZ-%c-%02x%02x%02x",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    kind_letter(kind), rnd[0], rnd[1], rnd[2]);
	if (n != COFFER_MANIFEST_ID_LEN) {
		return (
		    coffer_err_set(err, COFFER_EINTERNAL, "backup id came out %d bytes long", n));
	}
	memcpy(id, buf, COFFER_MANIFEST_ID_SIZE);
	return (0);
}

static int
id_fail(coffer_err *err, const char *id, const char *why)
{
	coffer_err_set(err, COFFER_EINVAL, "\"%.40s\" is not a backup id: %s", id, why);
	coffer_err_hint(err,
	    "a backup id looks like 20261124T155603Z-l-3fa2c1; list "
	    "the backups to find one");
	return (COFFER_EINVAL);
}

static int
digits(const char *p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9') {
			return (-1);
		}
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return (0);
}

int
coffer_manifest_id_check(const char *id, coffer_manifest_kind *kind, coffer_err *err)
{
	if (strnlen(id, COFFER_MANIFEST_ID_SIZE) != COFFER_MANIFEST_ID_LEN) {
		return (id_fail(err, id, "it must be 25 characters long"));
	}
	int y, mo, d, h, mi, s;
	if (digits(id, 4, &y) != 0 || digits(id + 4, 2, &mo) != 0 || digits(id + 6, 2, &d) != 0 ||
	    id[8] != 'T' || digits(id + 9, 2, &h) != 0 || digits(id + 11, 2, &mi) != 0 ||
	    digits(id + 13, 2, &s) != 0 || id[15] != 'Z' || id[16] != '-' || id[18] != '-') {
		return (id_fail(err, id, "it must start with a UTC time yyyymmddThhmmssZ-"));
	}
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    s > 60) {
		return (id_fail(err, id, "its time is not a valid date and time"));
	}
	if (id[17] != 'l' && id[17] != 'p') {
		return (id_fail(err, id, "the kind letter after the time must be l or p"));
	}
	if (!coffer_hex_is_lower(id + 19, 6)) {
		return (id_fail(err, id, "it must end in 6 lower-case hex digits"));
	}
	if (kind != NULL) {
		*kind = id[17] == 'p' ? COFFER_MANIFEST_PHYSICAL : COFFER_MANIFEST_LOGICAL;
	}
	return (0);
}

/* ---- building ---- */

int
coffer_manifest_new(coffer_manifest **out, coffer_err *err)
{
	coffer_manifest *m = calloc(1, sizeof(*m));
	*out = m;
	if (m == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for a manifest"));
	}
	m->format_version = COFFER_MANIFEST_FORMAT_VERSION;
	snprintf(m->compression, sizeof(m->compression), "zstd");
	return (0);
}

void
coffer_manifest_free(coffer_manifest *m)
{
	if (m == NULL) {
		return;
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		free(m->files[i].path);
	}
	for (size_t i = 0; i < m->npg_dump_options; i++) {
		free(m->pg_dump_options[i]);
	}
	free(m->files);
	free(m->pg_dump_options);
	free(m->tables);
	free(m);
}

/* Grows an array so one more element fits. */
static int
grow(void **arr, size_t *cap, size_t n, size_t elem, coffer_err *err)
{
	if (n < *cap) {
		return (0);
	}
	size_t ncap = *cap == 0 ? 16 : *cap * 2;
	void *p = realloc(*arr, ncap * elem);
	if (p == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for manifest entries"));
	}
	*arr = p;
	*cap = ncap;
	return (0);
}

static int
copy_name(char *dst, size_t size, const char *src, const char *what, coffer_err *err)
{
	size_t n = strnlen(src, size);
	if (n == 0 || n >= size) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "manifest %s \"%.60s\" must be 1 to %zu "
		    "bytes",
		    what, src, size - 1));
	}
	memcpy(dst, src, n + 1);
	return (0);
}

int
coffer_manifest_add_table(
    coffer_manifest *m, const char *schema, const char *name, uint64_t rows, coffer_err *err)
{
	int rc = grow((void **)&m->tables, &m->cap_tables, m->ntables, sizeof(*m->tables), err);
	if (rc != 0) {
		return (rc);
	}
	coffer_manifest_table *t = &m->tables[m->ntables];
	if ((rc = copy_name(t->schema, sizeof(t->schema), schema, "table schema", err)) != 0 ||
	    (rc = copy_name(t->name, sizeof(t->name), name, "table name", err)) != 0) {
		return (rc);
	}
	t->rows = rows;
	m->ntables++;
	return (0);
}

int
coffer_manifest_add_file(
    coffer_manifest *m, const char *path, uint64_t size, const char *sha256_hex, coffer_err *err)
{
	int rc = grow((void **)&m->files, &m->cap_files, m->nfiles, sizeof(*m->files), err);
	if (rc != 0) {
		return (rc);
	}
	if (strnlen(sha256_hex, COFFER_MANIFEST_SHA256_HEX) != COFFER_MANIFEST_SHA256_HEX - 1) {
		return (coffer_err_set(
		    err, COFFER_EINVAL, "sha-256 of %s must be 64 hex digits", path));
	}
	coffer_manifest_file *f = &m->files[m->nfiles];
	f->path = strndup(path, MF_PATH_MAX + 1);
	if (f->path == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for a manifest file"));
	}
	f->size = size;
	memcpy(f->sha256, sha256_hex, COFFER_MANIFEST_SHA256_HEX);
	m->nfiles++;
	return (0);
}

int
coffer_manifest_add_dump_option(coffer_manifest *m, const char *option, coffer_err *err)
{
	int rc = grow((void **)&m->pg_dump_options, &m->cap_options, m->npg_dump_options,
	    sizeof(*m->pg_dump_options), err);
	if (rc != 0) {
		return (rc);
	}
	char *copy = strndup(option, MF_OPTION_MAX + 1);
	if (copy == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for a pg_dump option"));
	}
	m->pg_dump_options[m->npg_dump_options++] = copy;
	return (0);
}

/* ---- checks shared by to_json and parse ---- */

/* Non-empty, no control characters (names may be any UTF-8 otherwise). */
static int
check_text(const char *v)
{
	if (v[0] == '\0') {
		return (-1);
	}
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			return (-1);
		}
	}
	return (0);
}

static int
check_sha256(const char *v)
{
	if (strlen(v) != 64) {
		return (-1);
	}
	return (coffer_hex_is_lower(v, 64) ? 0 : -1);
}

static int
check_lsn(const char *v)
{
	if (v[0] == '\0') {
		return (0);
	}
	const char *slash = strchr(v, '/');
	if (slash == NULL || slash == v || slash - v > 8 || strlen(slash + 1) == 0 ||
	    strlen(slash + 1) > 8) {
		return (-1);
	}
	for (const char *p = v; *p != '\0'; p++) {
		if (p != slash && strchr("0123456789ABCDEFabcdef", *p) == NULL) {
			return (-1);
		}
	}
	return (0);
}

/* Relative to PGDATA, and staying below it. */
static int
check_rel_path(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > MF_PATH_MAX || v[0] == '/' || check_text(v) != 0) {
		return (-1);
	}
	const char *seg = v;
	for (;;) {
		const char *slash = strchr(seg, '/');
		size_t len = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
		if (len == 0 || (len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.')) {
			return (-1);
		}
		if (slash == NULL) {
			return (0);
		}
		seg = slash + 1;
	}
}

static int
check_fields(const coffer_manifest *m, coffer_err *err)
{
	coffer_manifest_kind id_kind;
	if (m->format_version < COFFER_MANIFEST_FORMAT_MIN ||
	    m->format_version > COFFER_MANIFEST_FORMAT_VERSION) {
		coffer_err_set(err, COFFER_EVERSION,
		    "manifest format_version %d is not one this "
		    "program knows (it knows %d to %d)",
		    m->format_version, COFFER_MANIFEST_FORMAT_MIN, COFFER_MANIFEST_FORMAT_VERSION);
		coffer_err_hint(err,
		    "use a coffer release at least as new as the agent "
		    "that wrote the backup");
		return (COFFER_EVERSION);
	}
	if (m->format_version == 1 &&
	    (m->schema_query[0] != '\0' || m->schema_version[0] != '\0')) {
		return (corrupt(err, "schema_query", "is not a field of format version 1%s", ""));
	}
	if (coffer_manifest_id_check(m->backup_id, &id_kind, NULL) != 0) {
		return (corrupt(err, "backup_id", "is not a backup id: \"%.40s\"", m->backup_id));
	}
	if (m->kind != COFFER_MANIFEST_LOGICAL && m->kind != COFFER_MANIFEST_PHYSICAL) {
		return (corrupt(err, "kind", "must be logical or physical%s", ""));
	}
	if (id_kind != m->kind) {
		return (corrupt(
		    err, "kind", "does not match the kind letter of backup_id %s", m->backup_id));
	}
	if (!coffer_name_valid(m->service)) {
		return (
		    corrupt(err, "service", "must be " COFFER_NAME_RULE ": \"%.70s\"", m->service));
	}
	if (!coffer_name_valid(m->agent)) {
		return (corrupt(err, "agent", "must be " COFFER_NAME_RULE ": \"%.70s\"", m->agent));
	}
	if (m->started_at < 0) {
		return (corrupt(err, "started_at", "is before 1970%s", ""));
	}
	if (m->finished_at < m->started_at) {
		return (corrupt(err, "finished_at", "is before started_at%s", ""));
	}
	if (m->pg_version < 0) {
		return (corrupt(err, "pg_version", "is negative%s", ""));
	}
	if (check_text(m->database) != 0) {
		return (corrupt(err, "database",
		    "must be a non-empty name without control "
		    "characters%s",
		    ""));
	}
	if (check_lsn(m->lsn_start) != 0) {
		return (corrupt(
		    err, "lsn_start", "is not an LSN like 0/1A2B3C4D: \"%.20s\"", m->lsn_start));
	}
	if (check_lsn(m->lsn_stop) != 0) {
		return (corrupt(
		    err, "lsn_stop", "is not an LSN like 0/1A2B3C4D: \"%.20s\"", m->lsn_stop));
	}
	if (m->kind == COFFER_MANIFEST_PHYSICAL &&
	    (m->lsn_start[0] == '\0' || m->lsn_stop[0] == '\0' || m->timeline == 0)) {
		return (corrupt(err, "lsn_start", "%s",
		    "lsn_start, lsn_stop and timeline are "
		    "required for a physical backup"));
	}
	for (size_t i = 0; i < m->ntables; i++) {
		if (check_text(m->tables[i].schema) != 0 || check_text(m->tables[i].name) != 0) {
			char field[48];
			snprintf(field, sizeof(field), "tables[%zu]", i);
			return (corrupt(err, field,
			    "needs a schema and a name without control "
			    "characters%s",
			    ""));
		}
	}
	if (check_sha256(m->plaintext_sha256) != 0) {
		return (corrupt(err, "plaintext_sha256", "must be 64 lower-case hex digits%s", ""));
	}
	if (check_sha256(m->stored_sha256) != 0) {
		return (corrupt(err, "stored_sha256", "must be 64 lower-case hex digits%s", ""));
	}
	if (check_text(m->key_id) != 0) {
		return (corrupt(err, "key_id", "must name the key that sealed the data%s", ""));
	}
	if (strcmp(m->compression, "zstd") != 0 && strcmp(m->compression, "none") != 0) {
		return (corrupt(err, "compression", "must be \"zstd\" or \"none\", not \"%.20s\"",
		    m->compression));
	}
	if (m->chunk_size == 0 || m->chunk_size > MF_CHUNK_MAX) {
		return (corrupt(err, "chunk_size", "must be between 1 byte and 1 GiB%s", ""));
	}
	for (size_t i = 0; i < m->npg_dump_options; i++) {
		if (strlen(m->pg_dump_options[i]) > MF_OPTION_MAX) {
			return (
			    corrupt(err, "pg_dump_options", "has an option over 4096 bytes%s", ""));
		}
	}
	if (m->kind == COFFER_MANIFEST_LOGICAL && m->nfiles > 0) {
		return (corrupt(err, "files", "is only for physical backups%s", ""));
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		char field[48];
		snprintf(field, sizeof(field), "files[%zu]", i);
		if (check_rel_path(m->files[i].path) != 0) {
			return (corrupt(err, field,
			    "has a path that is not relative to PGDATA: "
			    "\"%.80s\"",
			    m->files[i].path));
		}
		if (check_sha256(m->files[i].sha256) != 0) {
			return (corrupt(err, field,
			    "has a sha256 that is not 64 lower-case hex "
			    "digits%s",
			    ""));
		}
	}
	return (0);
}

/* ---- canonical JSON ---- */

struct jb {
	int failed;
};

static cJSON *
add(struct jb *b, cJSON *obj, const char *name, cJSON *item)
{
	if (item == NULL || obj == NULL) {
		cJSON_Delete(item);
		b->failed = 1;
		return (NULL);
	}
	if (cJSON_IsArray(obj)) {
		cJSON_AddItemToArray(obj, item);
	} else {
		cJSON_AddItemToObject(obj, name, item);
	}
	return (item);
}

static void
add_str(struct jb *b, cJSON *obj, const char *name, const char *v)
{
	add(b, obj, name, cJSON_CreateString(v));
}

static void
add_u64(struct jb *b, cJSON *obj, const char *name, uint64_t v)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	add(b, obj, name, cJSON_CreateString(buf));
}

static void
add_num(struct jb *b, cJSON *obj, const char *name, double v)
{
	add(b, obj, name, cJSON_CreateNumber(v));
}

/* The manifest as a cJSON tree in canonical order, without "signature". */
static cJSON *
build_tree(const coffer_manifest *m)
{
	struct jb b = { 0 };
	cJSON *root = cJSON_CreateObject();
	add_num(&b, root, mf_names[F_FORMAT_VERSION], m->format_version);
	add_str(&b, root, mf_names[F_BACKUP_ID], m->backup_id);
	add_str(&b, root, mf_names[F_SERVICE], m->service);
	add_str(&b, root, mf_names[F_AGENT], m->agent);
	add_str(&b, root, mf_names[F_KIND], coffer_manifest_kind_name(m->kind));
	add_u64(&b, root, mf_names[F_STARTED_AT], (uint64_t)m->started_at);
	add_u64(&b, root, mf_names[F_FINISHED_AT], (uint64_t)m->finished_at);
	add_num(&b, root, mf_names[F_PG_VERSION], m->pg_version);
	add_u64(&b, root, mf_names[F_SYSTEM_IDENTIFIER], m->system_identifier);
	add_str(&b, root, mf_names[F_DATABASE], m->database);
	add_u64(&b, root, mf_names[F_DATABASE_SIZE], m->database_size);
	add_str(&b, root, mf_names[F_LSN_START], m->lsn_start);
	add_str(&b, root, mf_names[F_LSN_STOP], m->lsn_stop);
	add_num(&b, root, mf_names[F_TIMELINE], m->timeline);
	cJSON *tables = add(&b, root, mf_names[F_TABLES], cJSON_CreateArray());
	for (size_t i = 0; i < m->ntables && !b.failed; i++) {
		cJSON *t = add(&b, tables, NULL, cJSON_CreateObject());
		add_str(&b, t, "schema", m->tables[i].schema);
		add_str(&b, t, "name", m->tables[i].name);
		add_u64(&b, t, "rows", m->tables[i].rows);
	}
	add_u64(&b, root, mf_names[F_PLAINTEXT_BYTES], m->plaintext_bytes);
	add_u64(&b, root, mf_names[F_STORED_BYTES], m->stored_bytes);
	add_str(&b, root, mf_names[F_PLAINTEXT_SHA256], m->plaintext_sha256);
	add_str(&b, root, mf_names[F_STORED_SHA256], m->stored_sha256);
	add_str(&b, root, mf_names[F_KEY_ID], m->key_id);
	add_str(&b, root, mf_names[F_COMPRESSION], m->compression);
	add_num(&b, root, mf_names[F_CHUNK_SIZE], m->chunk_size);
	cJSON *opts = add(&b, root, mf_names[F_PG_DUMP_OPTIONS], cJSON_CreateArray());
	for (size_t i = 0; i < m->npg_dump_options && !b.failed; i++) {
		add_str(&b, opts, NULL, m->pg_dump_options[i]);
	}
	if (m->format_version >= 2) {
		add_str(&b, root, mf_names[F_SCHEMA_QUERY], m->schema_query);
		add_str(&b, root, mf_names[F_SCHEMA_VERSION], m->schema_version);
	}
	cJSON *files = add(&b, root, mf_names[F_FILES], cJSON_CreateArray());
	for (size_t i = 0; i < m->nfiles && !b.failed; i++) {
		cJSON *f = add(&b, files, NULL, cJSON_CreateObject());
		add_str(&b, f, "path", m->files[i].path);
		add_u64(&b, f, "size", m->files[i].size);
		add_str(&b, f, "sha256", m->files[i].sha256);
	}
	if (b.failed) {
		cJSON_Delete(root);
		return (NULL);
	}
	return (root);
}

/* The signed bytes: malloc'd, NUL-terminated. */
static int
canonical(const coffer_manifest *m, char **out, coffer_err *err)
{
	cJSON *root = build_tree(m);
	*out = root != NULL ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (*out == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory building a manifest"));
	}
	return (0);
}

int
coffer_manifest_to_json(
    coffer_manifest *m, const coffer_sign_key *key, char **json, size_t *len, coffer_err *err)
{
	*json = NULL;
	int rc = check_fields(m, err);
	if (rc != 0) {
		coffer_err_wrap(err, "refusing to write manifest of %s", m->backup_id);
		return (rc);
	}
	char *canon = NULL;
	rc = canonical(m, &canon, err);
	if (rc != 0) {
		return (rc);
	}
	rc = coffer_sign(key, canon, strlen(canon), m->signature, err);
	if (rc != 0) {
		free(canon);
		return (rc);
	}
	m->is_signed = true;
	/* Canonical bytes end in '}': splice the signature in before it. */
	char hex[2 * COFFER_SIGN_BYTES + 1];
	coffer_hex_encode(m->signature, COFFER_SIGN_BYTES, hex);
	size_t clen = strlen(canon);
	size_t total = clen - 1 + strlen(",\"signature\":\"\"}\n") + sizeof(hex) - 1;
	char *outb = malloc(total + 1);
	if (outb == NULL) {
		free(canon);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory building a manifest"));
	}
	memcpy(outb, canon, clen - 1);
	snprintf(outb + clen - 1, total + 1 - (clen - 1), ",\"signature\":\"%s\"}\n", hex);
	free(canon);
	*json = outb;
	if (len != NULL) {
		*len = total;
	}
	return (0);
}

/* ---- parsing ---- */

/* Counts JSON values from above without building anything, so a small file
 * of many tiny values cannot make a huge tree: every value but the first in a
 * container follows a ',', and every container opens with '[' or '{'. */
static size_t
count_values(const char *s, size_t len)
{
	size_t n = 1;
	int in_str = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\') {
				i++;
			} else if (c == '"') {
				in_str = 0;
			}
		} else if (c == '"') {
			in_str = 1;
		} else if (c == ',' || c == '[' || c == '{') {
			n++;
		}
	}
	return (n);
}

static int
get_str(
    const cJSON *obj, const char *field, const char *name, char *dst, size_t size, coffer_err *err)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (it == NULL) {
		return (corrupt(err, field, "is missing%s", ""));
	}
	if (!cJSON_IsString(it) || it->valuestring == NULL) {
		return (corrupt(err, field, "must be a string%s", ""));
	}
	size_t n = strlen(it->valuestring);
	if (n >= size) {
		char max[32];
		snprintf(max, sizeof(max), "%zu", size - 1);
		return (corrupt(err, field, "is longer than %s bytes", max));
	}
	memcpy(dst, it->valuestring, n + 1);
	return (0);
}

static int
get_u64(const cJSON *obj, const char *field, const char *name, uint64_t max, uint64_t *out,
    coffer_err *err)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (it != NULL && !cJSON_IsString(it)) {
		/* A JSON number would be a double to most readers: 2^53 + 1 is lost. */
		return (corrupt(err, field, "must be a decimal string%s", ""));
	}
	char buf[24];
	int rc = get_str(obj, field, name, buf, sizeof(buf), err);
	if (rc != 0) {
		return (rc);
	}
	/* Canonical decimal only: one spelling per value. */
	/* Set: get_str() returned 0 (the analyzer misreads corrupt(), see there). */
	/* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
	if (buf[0] == '\0' || (buf[0] == '0' && buf[1] != '\0') ||
	    strspn(buf, "0123456789") != strlen(buf)) {
		return (corrupt(err, field, "must be a decimal integer, not \"%s\"", buf));
	}
	errno = 0;
	unsigned long long v = strtoull(buf, NULL, 10);
	if (errno != 0 || v > max) {
		return (corrupt(err, field, "is out of range: %s", buf));
	}
	*out = v;
	return (0);
}

static int
get_int(const cJSON *obj, const char *field, const char *name, double min, double max, double *out,
    coffer_err *err)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (it == NULL) {
		return (corrupt(err, field, "is missing%s", ""));
	}
	if (!cJSON_IsNumber(it)) {
		return (corrupt(err, field, "must be a number%s", ""));
	}
	double v = it->valuedouble;
	if (!isfinite(v) || v != floor(v) || v < min || v > max) {
		return (corrupt(err, field, "must be a whole number in range%s", ""));
	}
	*out = v;
	return (0);
}

/* Refuses keys outside names[0..n) and repeated keys. */
static int
only_known(const cJSON *obj, const char *where, const char *const *names, size_t n, coffer_err *err)
{
	uint32_t seen = 0;
	for (const cJSON *c = obj->child; c != NULL; c = c->next) {
		size_t i = 0;
		while (i < n && (c->string == NULL || strcmp(c->string, names[i]) != 0)) {
			i++;
		}
		if (i == n) {
			char field[160];
			snprintf(field, sizeof(field), "%s%.100s", where,
			    c->string != NULL ? c->string : "");
			return (corrupt(err, field, "is not a manifest field%s", ""));
		}
		if ((seen & (1u << i)) != 0) {
			char field[160];
			snprintf(field, sizeof(field), "%s%s", where, names[i]);
			return (corrupt(err, field, "appears twice%s", ""));
		}
		seen |= 1u << i;
	}
	return (0);
}

static const cJSON *
get_array(const cJSON *obj, const char *name, coffer_err *err)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (it == NULL) {
		corrupt(err, name, "is missing%s", "");
		return (NULL);
	}
	if (!cJSON_IsArray(it)) {
		corrupt(err, name, "must be an array%s", "");
		return (NULL);
	}
	return (it);
}

static int
parse_tables(const cJSON *root, coffer_manifest *m, coffer_err *err)
{
	static const char *const names[] = { "schema", "name", "rows" };
	const cJSON *arr = get_array(root, "tables", err);
	if (arr == NULL) {
		return (COFFER_ECORRUPT);
	}
	size_t i = 0;
	for (const cJSON *t = arr->child; t != NULL; t = t->next, i++) {
		char field[64];
		snprintf(field, sizeof(field), "tables[%zu]", i);
		if (!cJSON_IsObject(t)) {
			return (corrupt(err, field, "must be an object%s", ""));
		}
		char where[72];
		snprintf(where, sizeof(where), "%s.", field);
		int rc = only_known(t, where, names, 3, err);
		if (rc != 0) {
			return (rc);
		}
		rc = grow((void **)&m->tables, &m->cap_tables, m->ntables, sizeof(*m->tables), err);
		if (rc != 0) {
			return (rc);
		}
		coffer_manifest_table *tb = &m->tables[m->ntables];
		char f2[96];
		snprintf(f2, sizeof(f2), "%s.schema", field);
		if ((rc = get_str(t, f2, "schema", tb->schema, sizeof(tb->schema), err)) != 0) {
			return (rc);
		}
		snprintf(f2, sizeof(f2), "%s.name", field);
		if ((rc = get_str(t, f2, "name", tb->name, sizeof(tb->name), err)) != 0) {
			return (rc);
		}
		snprintf(f2, sizeof(f2), "%s.rows", field);
		if ((rc = get_u64(t, f2, "rows", UINT64_MAX, &tb->rows, err)) != 0) {
			return (rc);
		}
		m->ntables++;
	}
	return (0);
}

static int
parse_files(const cJSON *root, coffer_manifest *m, coffer_err *err)
{
	static const char *const names[] = { "path", "size", "sha256" };
	const cJSON *arr = get_array(root, "files", err);
	if (arr == NULL) {
		return (COFFER_ECORRUPT);
	}
	size_t i = 0;
	for (const cJSON *f = arr->child; f != NULL; f = f->next, i++) {
		char field[64];
		snprintf(field, sizeof(field), "files[%zu]", i);
		if (!cJSON_IsObject(f)) {
			return (corrupt(err, field, "must be an object%s", ""));
		}
		char where[72];
		snprintf(where, sizeof(where), "%s.", field);
		int rc = only_known(f, where, names, 3, err);
		if (rc != 0) {
			return (rc);
		}
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
		char f2[96];
		snprintf(f2, sizeof(f2), "%s.path", field);
		if (p == NULL) {
			return (corrupt(err, f2, "is missing%s", ""));
		}
		if (!cJSON_IsString(p) || p->valuestring == NULL) {
			return (corrupt(err, f2, "must be a string%s", ""));
		}
		uint64_t size;
		snprintf(f2, sizeof(f2), "%s.size", field);
		if ((rc = get_u64(f, f2, "size", UINT64_MAX, &size, err)) != 0) {
			return (rc);
		}
		char sha[COFFER_MANIFEST_SHA256_HEX];
		snprintf(f2, sizeof(f2), "%s.sha256", field);
		if ((rc = get_str(f, f2, "sha256", sha, sizeof(sha), err)) != 0) {
			return (rc);
		}
		if (strlen(sha) != 64) {
			return (corrupt(err, f2, "must be 64 lower-case hex digits%s", ""));
		}
		/* Set: get_u64() returned 0 (the analyzer misreads corrupt(), see there). */
		/* NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
		if ((rc = coffer_manifest_add_file(m, p->valuestring, size, sha, err)) != 0) {
			return (rc);
		}
	}
	return (0);
}

static int
parse_options(const cJSON *root, coffer_manifest *m, coffer_err *err)
{
	const cJSON *arr = get_array(root, "pg_dump_options", err);
	if (arr == NULL) {
		return (COFFER_ECORRUPT);
	}
	for (const cJSON *o = arr->child; o != NULL; o = o->next) {
		if (!cJSON_IsString(o) || o->valuestring == NULL) {
			return (corrupt(err, "pg_dump_options", "must hold only strings%s", ""));
		}
		int rc = coffer_manifest_add_dump_option(m, o->valuestring, err);
		if (rc != 0) {
			return (rc);
		}
	}
	return (0);
}

static int
parse_fields(const cJSON *root, coffer_manifest *m, coffer_err *err)
{
	int rc;
	double d;
	char kind[16];
	uint64_t u;
	if ((rc = get_str(
	         root, "backup_id", "backup_id", m->backup_id, sizeof(m->backup_id), err)) != 0 ||
	    (rc = get_str(root, "service", "service", m->service, sizeof(m->service), err)) != 0 ||
	    (rc = get_str(root, "agent", "agent", m->agent, sizeof(m->agent), err)) != 0 ||
	    (rc = get_str(root, "kind", "kind", kind, sizeof(kind), err)) != 0) {
		return (rc);
	}
	if (coffer_manifest_kind_parse(kind, &m->kind) != 0) {
		return (corrupt(err, "kind", "must be logical or physical, not \"%s\"", kind));
	}
	if ((rc = get_u64(root, "started_at", "started_at", INT64_MAX, &u, err)) != 0) {
		return (rc);
	}
	/* Set: get_u64() returned 0 (the analyzer misreads corrupt(), see there). */
	/* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
	m->started_at = (int64_t)u;
	if ((rc = get_u64(root, "finished_at", "finished_at", INT64_MAX, &u, err)) != 0) {
		return (rc);
	}
	m->finished_at = (int64_t)u;
	if ((rc = get_int(root, "pg_version", "pg_version", 0, 2147483647.0, &d, err)) != 0) {
		return (rc);
	}
	/* Set: get_int() returned 0 (the analyzer misreads corrupt(), see there). */
	/* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
	m->pg_version = (int)d;
	if ((rc = get_u64(root, "system_identifier", "system_identifier", UINT64_MAX,
	         &m->system_identifier, err)) != 0 ||
	    (rc = get_str(root, "database", "database", m->database, sizeof(m->database), err)) !=
	        0 ||
	    (rc = get_u64(root, "database_size", "database_size", UINT64_MAX, &m->database_size,
	         err)) != 0 ||
	    (rc = get_str(
	         root, "lsn_start", "lsn_start", m->lsn_start, sizeof(m->lsn_start), err)) != 0 ||
	    (rc = get_str(root, "lsn_stop", "lsn_stop", m->lsn_stop, sizeof(m->lsn_stop), err)) !=
	        0) {
		return (rc);
	}
	if ((rc = get_int(root, "timeline", "timeline", 0, 4294967295.0, &d, err)) != 0) {
		return (rc);
	}
	m->timeline = (uint32_t)d;
	if ((rc = parse_tables(root, m, err)) != 0 ||
	    (rc = get_u64(root, "plaintext_bytes", "plaintext_bytes", UINT64_MAX,
	         &m->plaintext_bytes, err)) != 0 ||
	    (rc = get_u64(
	         root, "stored_bytes", "stored_bytes", UINT64_MAX, &m->stored_bytes, err)) != 0 ||
	    (rc = get_str(root, "plaintext_sha256", "plaintext_sha256", m->plaintext_sha256,
	         sizeof(m->plaintext_sha256), err)) != 0 ||
	    (rc = get_str(root, "stored_sha256", "stored_sha256", m->stored_sha256,
	         sizeof(m->stored_sha256), err)) != 0 ||
	    (rc = get_str(root, "key_id", "key_id", m->key_id, sizeof(m->key_id), err)) != 0 ||
	    (rc = get_str(root, "compression", "compression", m->compression,
	         sizeof(m->compression), err)) != 0) {
		return (rc);
	}
	if ((rc = get_int(root, "chunk_size", "chunk_size", 0, 4294967295.0, &d, err)) != 0) {
		return (rc);
	}
	m->chunk_size = (uint32_t)d;
	if ((rc = parse_options(root, m, err)) != 0) {
		return (rc);
	}
	if (m->format_version >= 2 &&
	    ((rc = get_str(root, "schema_query", "schema_query", m->schema_query,
	          sizeof(m->schema_query), err)) != 0 ||
	        (rc = get_str(root, "schema_version", "schema_version", m->schema_version,
	             sizeof(m->schema_version), err)) != 0)) {
		return (rc);
	}
	if ((rc = parse_files(root, m, err)) != 0) {
		return (rc);
	}
	char sig[2 * COFFER_SIGN_BYTES + 2];
	if ((rc = get_str(root, "signature", "signature", sig, sizeof(sig), err)) != 0) {
		return (rc);
	}
	if (strlen(sig) != 2 * COFFER_SIGN_BYTES ||
	    !coffer_hex_is_lower(sig, 2 * COFFER_SIGN_BYTES) ||
	    !coffer_hex_to_bytes(sig, strlen(sig), m->signature, COFFER_SIGN_BYTES)) {
		return (corrupt(err, "signature", "must be 128 lower-case hex digits%s", ""));
	}
	m->is_signed = true;
	return (0);
}

int
coffer_manifest_parse(const char *json, size_t len, const coffer_sign_pubkey *pub,
    coffer_manifest **out, coffer_err *err)
{
	*out = NULL;
	if (len > COFFER_MANIFEST_MAX_BYTES) {
		coffer_err_set(err, COFFER_ETOOBIG, "manifest is %zu bytes, over the limit of %u",
		    len, COFFER_MANIFEST_MAX_BYTES);
		coffer_err_hint(err, "this is not a manifest written by coffer-agent");
		return (COFFER_ETOOBIG);
	}
	if (count_values(json, len) > COFFER_MANIFEST_MAX_VALUES) {
		coffer_err_set(err, COFFER_ETOOBIG, "manifest has more than %u JSON values",
		    COFFER_MANIFEST_MAX_VALUES);
		coffer_err_hint(err, "this is not a manifest written by coffer-agent");
		return (COFFER_ETOOBIG);
	}
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (root != NULL) {
		/* One object and nothing after it but blank space. */
		size_t off = (size_t)(end - json);
		while (off < len &&
		    (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' ||
		        json[off] == '\r')) {
			off++;
		}
		if (off < len) {
			cJSON_Delete(root);
			coffer_err_set(err, COFFER_ECORRUPT,
			    "manifest has bytes after its JSON object "
			    "(at byte %zu)",
			    off);
			coffer_err_hint(err,
			    "the manifest was damaged; verify the backup and use "
			    "another one");
			return (COFFER_ECORRUPT);
		}
	}
	if (root == NULL) {
		const char *at = cJSON_GetErrorPtr();
		size_t off = at != NULL && at >= json && at <= json + len ? (size_t)(at - json) : 0;
		coffer_err_set(
		    err, COFFER_ECORRUPT, "manifest is not valid JSON (near byte %zu)", off);
		coffer_err_hint(err,
		    "the manifest was damaged; verify the backup and use "
		    "another one");
		return (COFFER_ECORRUPT);
	}
	coffer_manifest *m = NULL;
	int rc;
	if (!cJSON_IsObject(root)) {
		rc = coffer_err_set(err, COFFER_ECORRUPT, "manifest is not a JSON object");
		coffer_err_hint(err,
		    "the manifest was damaged; verify the backup and use another "
		    "one");
		goto out;
	}
	rc = coffer_manifest_new(&m, err);
	if (rc != 0) {
		goto out;
	}
	/* Version first: a newer format may legitimately have other fields. */
	double v;
	rc = get_int(root, "format_version", "format_version", 0, 2147483647.0, &v, err);
	if (rc != 0) {
		goto out;
	}
	/* Set: get_int() returned 0 (the analyzer misreads corrupt(), see there). */
	/* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
	m->format_version = (int)v;
	if (m->format_version < COFFER_MANIFEST_FORMAT_MIN ||
	    m->format_version > COFFER_MANIFEST_FORMAT_VERSION) {
		rc = check_fields(m, err);
		goto out;
	}
	/* Format 1 had no schema fields: they are unknown keys there. */
	const char *v1_names[F_COUNT];
	size_t nv1 = 0;
	for (size_t i = 0; i < F_COUNT; i++) {
		if (i != F_SCHEMA_QUERY && i != F_SCHEMA_VERSION) {
			v1_names[nv1++] = mf_names[i];
		}
	}
	if ((rc = m->format_version == 1 ? only_known(root, "", v1_names, nv1, err)
	                                 : only_known(root, "", mf_names, F_COUNT, err)) != 0 ||
	    (rc = parse_fields(root, m, err)) != 0 || (rc = check_fields(m, err)) != 0) {
		goto out;
	}
	if (pub != NULL) {
		char *canon = NULL;
		rc = canonical(m, &canon, err);
		if (rc != 0) {
			goto out;
		}
		rc = coffer_sign_verify(pub, canon, strlen(canon), m->signature, err);
		free(canon);
		if (rc != 0) {
			coffer_err_wrap(err, "manifest of backup %s", m->backup_id);
			coffer_err_hint(err,
			    "the manifest was changed after the agent signed it, or "
			    "it was signed by another key; do not restore from it");
			goto out;
		}
	}
out:
	cJSON_Delete(root);
	if (rc != 0) {
		coffer_manifest_free(m);
		return (rc);
	}
	*out = m;
	return (0);
}
