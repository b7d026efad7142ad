/* Manifests: round trip through signed JSON; a change to any field, a wrong
 * key, an unknown version, missing, ill-typed, unknown and repeated fields,
 * oversized input and unsafe file paths are all refused with the right
 * code; backup ids. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "common/crypto/manifest.h"

#define T0 1795999563000LL /* 2026-11-30T00:46:03Z */

struct fixture {
	coffer_sign_key *key;
	coffer_sign_pubkey *pub;
	coffer_sign_pubkey *other;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	coffer_err err = { 0 };
	coffer_sign_key *k2;
	if (coffer_sign_key_generate(&f->key, &err) != 0 ||
	    coffer_sign_key_public(f->key, &f->pub, &err) != 0 ||
	    coffer_sign_key_generate(&k2, &err) != 0 ||
	    coffer_sign_key_public(k2, &f->other, &err) != 0) {
		return (-1);
	}
	coffer_sign_key_free(k2);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	coffer_sign_key_free(f->key);
	coffer_sign_pubkey_free(f->pub);
	coffer_sign_pubkey_free(f->other);
	free(f);
	return (0);
}

static const char sha_a[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
static const char sha_b[] = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

static coffer_manifest *
sample(coffer_manifest_kind kind)
{
	coffer_manifest *m;
	coffer_err err = { 0 };
	assert_int_equal(coffer_manifest_new(&m, &err), 0);
	assert_int_equal(coffer_manifest_id_new(m->backup_id, T0, kind, &err), 0);
	snprintf(m->service, sizeof(m->service), "billing");
	snprintf(m->agent, sizeof(m->agent), "billing-db-1");
	m->kind = kind;
	m->started_at = T0;
	m->finished_at = T0 + 93000;
	m->pg_version = 160004;
	m->system_identifier = 7312345678901234567ull; /* > 2^53: must survive exactly */
	snprintf(m->database, sizeof(m->database), "billing");
	m->database_size = 123456789012ull;
	snprintf(m->lsn_start, sizeof(m->lsn_start), "0/1A2B3C4D");
	snprintf(m->lsn_stop, sizeof(m->lsn_stop), "1/FF000028");
	m->timeline = 3;
	assert_int_equal(
	    coffer_manifest_add_table(m, "public", "invoices", 18446744073709551615ull, &err), 0);
	assert_int_equal(coffer_manifest_add_table(m, "public", "customers", 42, &err), 0);
	assert_int_equal(
	    coffer_manifest_add_table(m, "audit", "événements \"quoted\"", 0, &err), 0);
	m->plaintext_bytes = 9007199254740993ull; /* 2^53 + 1 */
	m->stored_bytes = 4000000000ull;
	snprintf(m->plaintext_sha256, sizeof(m->plaintext_sha256), "%s", sha_a);
	snprintf(m->stored_sha256, sizeof(m->stored_sha256), "%s", sha_b);
	snprintf(m->key_id, sizeof(m->key_id), "k2026-11");
	m->chunk_size = 65536;
	snprintf(
	    m->schema_query, sizeof(m->schema_query), "SELECT max(version) FROM schema_migrations");
	snprintf(m->schema_version, sizeof(m->schema_version), "20261101");
	assert_int_equal(coffer_manifest_add_dump_option(m, "--no-owner", &err), 0);
	assert_int_equal(coffer_manifest_add_dump_option(m, "--exclude-table=tmp_*", &err), 0);
	if (kind == COFFER_MANIFEST_PHYSICAL) {
		assert_int_equal(coffer_manifest_add_file(m, "base/1/1259", 8192, sha_a, &err), 0);
		assert_int_equal(
		    coffer_manifest_add_file(m, "global/pg_control", 8192, sha_b, &err), 0);
	}
	return (m);
}

static char *
signed_json(struct fixture *f, coffer_manifest *m)
{
	char *json = NULL;
	size_t len = 0;
	coffer_err err = { 0 };
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, &len, &err), 0);
	assert_int_equal(strlen(json), len);
	assert_true(m->is_signed);
	return (json);
}

static void
assert_same(const coffer_manifest *a, const coffer_manifest *b)
{
	assert_int_equal(a->format_version, b->format_version);
	assert_string_equal(a->schema_query, b->schema_query);
	assert_string_equal(a->schema_version, b->schema_version);
	assert_string_equal(a->backup_id, b->backup_id);
	assert_string_equal(a->service, b->service);
	assert_string_equal(a->agent, b->agent);
	assert_int_equal(a->kind, b->kind);
	assert_int_equal(a->started_at, b->started_at);
	assert_int_equal(a->finished_at, b->finished_at);
	assert_int_equal(a->pg_version, b->pg_version);
	assert_true(a->system_identifier == b->system_identifier);
	assert_string_equal(a->database, b->database);
	assert_true(a->database_size == b->database_size);
	assert_string_equal(a->lsn_start, b->lsn_start);
	assert_string_equal(a->lsn_stop, b->lsn_stop);
	assert_int_equal(a->timeline, b->timeline);
	assert_int_equal(a->ntables, b->ntables);
	for (size_t i = 0; i < a->ntables; i++) {
		assert_string_equal(a->tables[i].schema, b->tables[i].schema);
		assert_string_equal(a->tables[i].name, b->tables[i].name);
		assert_true(a->tables[i].rows == b->tables[i].rows);
	}
	assert_true(a->plaintext_bytes == b->plaintext_bytes);
	assert_true(a->stored_bytes == b->stored_bytes);
	assert_string_equal(a->plaintext_sha256, b->plaintext_sha256);
	assert_string_equal(a->stored_sha256, b->stored_sha256);
	assert_string_equal(a->key_id, b->key_id);
	assert_string_equal(a->compression, b->compression);
	assert_int_equal(a->chunk_size, b->chunk_size);
	assert_int_equal(a->npg_dump_options, b->npg_dump_options);
	for (size_t i = 0; i < a->npg_dump_options; i++) {
		assert_string_equal(a->pg_dump_options[i], b->pg_dump_options[i]);
	}
	assert_int_equal(a->nfiles, b->nfiles);
	for (size_t i = 0; i < a->nfiles; i++) {
		assert_string_equal(a->files[i].path, b->files[i].path);
		assert_true(a->files[i].size == b->files[i].size);
		assert_string_equal(a->files[i].sha256, b->files[i].sha256);
	}
	assert_memory_equal(a->signature, b->signature, COFFER_SIGN_BYTES);
}

static void
test_round_trip(void **state)
{
	struct fixture *f = *state;
	for (int k = 1; k <= 2; k++) {
		coffer_manifest *m = sample((coffer_manifest_kind)k);
		char *json = signed_json(f, m);
		assert_non_null(strstr(json, "\"system_identifier\":\"7312345678901234567\""));
		assert_non_null(strstr(json, "\"plaintext_bytes\":\"9007199254740993\""));
		coffer_manifest *back;
		coffer_err err = { 0 };
		assert_int_equal(coffer_manifest_parse(json, strlen(json), f->pub, &back, &err), 0);
		assert_same(m, back);
		/* Deterministic: the parsed copy signs to the same bytes (Ed25519 is). */
		char *again = signed_json(f, back);
		assert_string_equal(json, again);
		coffer_manifest *listed;
		assert_int_equal(coffer_manifest_parse(json, strlen(json), NULL, &listed, &err), 0);
		assert_same(m, listed);
		coffer_manifest_free(listed);
		coffer_manifest_free(back);
		free(again);
		free(json);
		coffer_manifest_free(m);
	}
}

/* Changes a JSON string value to another value of the same shape. */
static void
mutate_string(char *s)
{
	size_t n = strlen(s);
	if (n == 0) {
		return;
	}
	char *c = &s[n - 1];
	if (*c == '0') {
		*c = '1';
	} else if (*c >= '1' && *c <= '9') {
		(*c)--; /* down, so UINT64_MAX stays in range */
	} else if ((*c >= 'a' && *c <= 'e') || (*c >= 'A' && *c <= 'E')) {
		(*c)++;
	} else if (*c == 'f' || *c == 'F') {
		(*c)--;
	} else if (islower((unsigned char)*c)) {
		*c = (char)toupper((unsigned char)*c);
	} else {
		*c = 'x';
	}
}

/* Mutates one value in place (the first leaf under item). */
static void
mutate(cJSON *item)
{
	if (cJSON_IsString(item)) {
		mutate_string(item->valuestring);
	} else if (cJSON_IsNumber(item)) {
		cJSON_SetNumberValue(item, item->valuedouble + 1);
	}
}

static int
parse_text(const char *text, const coffer_sign_pubkey *pub, coffer_err *err)
{
	coffer_manifest *m = NULL;
	int rc = coffer_manifest_parse(text, strlen(text), pub, &m, err);
	if (rc == 0) {
		assert_non_null(m);
	} else {
		assert_null(m);
	}
	coffer_manifest_free(m);
	return (rc);
}

static void
test_tamper_every_field(void **state)
{
	struct fixture *f = *state;
	coffer_manifest *m = sample(COFFER_MANIFEST_PHYSICAL);
	char *json = signed_json(f, m);
	cJSON *orig = cJSON_Parse(json);
	assert_non_null(orig);
	int checked = 0;
	for (cJSON *field = orig->child; field != NULL; field = field->next) {
		if (strcmp(field->string, "signature") == 0 ||
		    strcmp(field->string, "format_version") == 0) {
			continue;
		}
		/* Leaves: the field itself, or each member of each array element. */
		int nleaves = 1;
		if (cJSON_IsArray(field)) {
			nleaves = 0;
			for (cJSON *e = field->child; e != NULL; e = e->next) {
				nleaves += cJSON_IsObject(e) ? cJSON_GetArraySize(e) : 1;
			}
		}
		for (int leaf = 0; leaf < nleaves; leaf++) {
			cJSON *copy = cJSON_Duplicate(orig, 1);
			cJSON *target = cJSON_GetObjectItemCaseSensitive(copy, field->string);
			if (cJSON_IsArray(target)) {
				int k = leaf;
				for (cJSON *e = target->child; e != NULL; e = e->next) {
					int n = cJSON_IsObject(e) ? cJSON_GetArraySize(e) : 1;
					if (k < n) {
						mutate(cJSON_IsObject(e) ? cJSON_GetArrayItem(e, k)
						                         : e);
						break;
					}
					k -= n;
				}
			} else if (strcmp(field->string, "compression") == 0) {
				/* The one other valid value, so the signature is what refuses it. */
				cJSON_ReplaceItemInObjectCaseSensitive(
				    copy, "compression", cJSON_CreateString("none"));
			} else {
				mutate(target);
			}
			char *text = cJSON_PrintUnformatted(copy);
			assert_string_not_equal(text, json);
			coffer_err err = { 0 };
			int rc = parse_text(text, f->pub, &err);
			if (strcmp(field->string, "kind") == 0) {
				/* "physicaL" is no kind at all: refused before the signature. */
				assert_int_equal(rc, COFFER_ECORRUPT);
			} else {
				if (rc != COFFER_EAUTH) {
					print_error("field %s leaf %d: rc %d %s\n", field->string,
					    leaf, rc, err.msg);
				}
				assert_int_equal(rc, COFFER_EAUTH);
				assert_non_null(strstr(err.msg, "signature does not match"));
				assert_true(err.hint[0] != '\0');
			}
			checked++;
			free(text);
			cJSON_Delete(copy);
		}
	}
	assert_true(checked >= 23 + 3 * 3 + 2 * 3 + 2 - 3);

	/* Dropping a table, or an option, is tampering too. */
	cJSON *copy = cJSON_Duplicate(orig, 1);
	cJSON_DeleteItemFromArray(cJSON_GetObjectItemCaseSensitive(copy, "tables"), 1);
	char *text = cJSON_PrintUnformatted(copy);
	coffer_err err = { 0 };
	assert_int_equal(parse_text(text, f->pub, &err), COFFER_EAUTH);
	free(text);
	cJSON_Delete(copy);

	/* A flipped bit of the signature itself. */
	copy = cJSON_Duplicate(orig, 1);
	mutate(cJSON_GetObjectItemCaseSensitive(copy, "signature"));
	text = cJSON_PrintUnformatted(copy);
	assert_int_equal(parse_text(text, f->pub, &err), COFFER_EAUTH);
	/* ...which a listing (no key) does not check. */
	assert_int_equal(parse_text(text, NULL, &err), 0);
	free(text);
	cJSON_Delete(copy);

	/* Layout alone (pretty-printing) is not tampering. */
	text = cJSON_Print(orig);
	assert_int_equal(parse_text(text, f->pub, &err), 0);
	free(text);

	cJSON_Delete(orig);
	free(json);
	coffer_manifest_free(m);
}

static void
test_wrong_key(void **state)
{
	struct fixture *f = *state;
	coffer_manifest *m = sample(COFFER_MANIFEST_LOGICAL);
	char *json = signed_json(f, m);
	coffer_err err = { 0 };
	assert_int_equal(parse_text(json, f->other, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "signature does not match"));
	free(json);
	coffer_manifest_free(m);
}

/* Format 1 (before schema_query/schema_version) still reads, signature
 * and all; the schema fields are unknown there. */
static void
test_format_1(void **state)
{
	struct fixture *f = *state;
	coffer_manifest *m = sample(COFFER_MANIFEST_LOGICAL);
	coffer_err err = { 0 };
	m->format_version = 1;
	char *json = NULL;
	/* Version 1 cannot carry the schema fields: refused, not dropped. */
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "schema_query"));
	m->schema_query[0] = m->schema_version[0] = '\0';
	json = signed_json(f, m);
	assert_null(strstr(json, "schema_"));
	coffer_manifest *back = NULL;
	assert_int_equal(coffer_manifest_parse(json, strlen(json), f->pub, &back, &err), 0);
	assert_int_equal(back->format_version, 1);
	assert_string_equal(back->schema_query, "");
	coffer_manifest_free(back);
	/* A version-1 manifest with a schema field is not version 1. */
	char *p = strstr(json, "\"files\"");
	assert_non_null(p);
	size_t at = (size_t)(p - json);
	char *bad = malloc(strlen(json) + 64);
	memcpy(bad, json, at);
	strcpy(bad + at, "\"schema_query\":\"\",");
	strcat(bad, json + at);
	assert_int_equal(parse_text(bad, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "schema_query"));
	free(bad);
	free(json);
	coffer_manifest_free(m);
}

static void
test_unknown_version(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	/* A future manifest: other fields, no signature we understand. */
	static const char v3[] = "{\"format_version\":3,\"something_new\":[1,2,3]}";
	assert_int_equal(parse_text(v3, f->pub, &err), COFFER_EVERSION);
	assert_non_null(strstr(err.msg, "format_version 3"));
	assert_true(err.hint[0] != '\0');
	assert_int_equal(parse_text("{\"format_version\":0}", NULL, &err), COFFER_EVERSION);

	coffer_manifest *m = sample(COFFER_MANIFEST_LOGICAL);
	char *json = signed_json(f, m);
	char *p = strstr(json, "\"format_version\":2");
	assert_non_null(p);
	p[strlen("\"format_version\":")] = '7';
	assert_int_equal(parse_text(json, f->pub, &err), COFFER_EVERSION);
	free(json);
	/* to_json refuses to write a version it does not know. */
	m->format_version = 3;
	json = NULL;
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_EVERSION);
	assert_null(json);
	coffer_manifest_free(m);
}

static void
test_missing_and_ill_typed(void **state)
{
	struct fixture *f = *state;
	coffer_manifest *m = sample(COFFER_MANIFEST_PHYSICAL);
	char *json = signed_json(f, m);
	cJSON *orig = cJSON_Parse(json);
	for (cJSON *field = orig->child; field != NULL; field = field->next) {
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "\"%s\"", field->string);
		/* Missing. */
		cJSON *copy = cJSON_Duplicate(orig, 1);
		cJSON_DeleteItemFromObjectCaseSensitive(copy, field->string);
		char *text = cJSON_PrintUnformatted(copy);
		coffer_err err = { 0 };
		assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
		assert_non_null(strstr(err.msg, quoted));
		assert_non_null(strstr(err.msg, "missing"));
		free(text);
		cJSON_Delete(copy);
		/* Ill-typed: an object where anything else belongs. */
		copy = cJSON_Duplicate(orig, 1);
		cJSON_ReplaceItemInObjectCaseSensitive(copy, field->string, cJSON_CreateObject());
		text = cJSON_PrintUnformatted(copy);
		assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
		assert_non_null(strstr(err.msg, quoted));
		free(text);
		cJSON_Delete(copy);
	}
	/* Nested: a table without rows; rows as a JSON number (loses precision). */
	cJSON *copy = cJSON_Duplicate(orig, 1);
	cJSON *t1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(copy, "tables"), 1);
	cJSON_DeleteItemFromObjectCaseSensitive(t1, "rows");
	char *text = cJSON_PrintUnformatted(copy);
	coffer_err err = { 0 };
	assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "tables[1].rows"));
	free(text);
	cJSON_AddNumberToObject(t1, "rows", 42);
	text = cJSON_PrintUnformatted(copy);
	assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "decimal string"));
	free(text);
	cJSON_Delete(copy);

	/* Non-canonical decimals and out-of-range values. */
	static const char *const bad_u64[] = { "", "007", "-1", "1e3", " 1", "18446744073709551616",
		"0x10" };
	for (size_t i = 0; i < sizeof(bad_u64) / sizeof(bad_u64[0]); i++) {
		copy = cJSON_Duplicate(orig, 1);
		cJSON_ReplaceItemInObjectCaseSensitive(
		    copy, "database_size", cJSON_CreateString(bad_u64[i]));
		text = cJSON_PrintUnformatted(copy);
		assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
		assert_non_null(strstr(err.msg, "\"database_size\""));
		free(text);
		cJSON_Delete(copy);
	}
	/* A fractional or negative small number. */
	copy = cJSON_Duplicate(orig, 1);
	cJSON_ReplaceItemInObjectCaseSensitive(copy, "timeline", cJSON_CreateNumber(1.5));
	text = cJSON_PrintUnformatted(copy);
	assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
	free(text);
	cJSON_Delete(copy);
	copy = cJSON_Duplicate(orig, 1);
	cJSON_ReplaceItemInObjectCaseSensitive(copy, "chunk_size", cJSON_CreateNumber(0));
	text = cJSON_PrintUnformatted(copy);
	assert_int_equal(parse_text(text, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "chunk_size"));
	free(text);
	cJSON_Delete(copy);

	cJSON_Delete(orig);
	free(json);
	coffer_manifest_free(m);
}

static void
test_unknown_repeated_and_garbage(void **state)
{
	struct fixture *f = *state;
	coffer_manifest *m = sample(COFFER_MANIFEST_LOGICAL);
	char *json = signed_json(f, m);
	coffer_err err = { 0 };

	/* An extra field would sit outside the signature: refused. */
	size_t n = strlen(json);
	char *extra = malloc(n + 64);
	memcpy(extra, json, n);
	snprintf(extra + n - 2, 64, ",\"restore_to\":\"/etc\"}");
	assert_int_equal(parse_text(extra, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "restore_to"));
	/* A repeated key: the first would be verified, the second believed. */
	snprintf(extra + n - 2, 64, ",\"service\":\"payroll\"}");
	assert_int_equal(parse_text(extra, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "twice"));
	free(extra);

	static const char *const garbage[] = {
		"",
		"{",
		"[]",
		"null",
		"\"manifest\"",
		"{\"format_version\":\"1\"}",
		"{\"format_version\":1}",
		"{\"format_version\":1.5}",
		"{\"format_version\":1e400}",
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		int rc = parse_text(garbage[i], f->pub, &err);
		assert_int_equal(rc, COFFER_ECORRUPT);
		assert_true(err.msg[0] != '\0');
	}
	/* Bytes after the object. */
	n = strlen(json);
	char *tail = malloc(n + 8);
	memcpy(tail, json, n);
	memcpy(tail + n, "{}", 3);
	assert_int_equal(parse_text(tail, f->pub, &err), COFFER_ECORRUPT);
	free(tail);
	free(json);
	coffer_manifest_free(m);
}

static void
test_size_limits(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_manifest *m = NULL;
	size_t big = (size_t)COFFER_MANIFEST_MAX_BYTES + 1;
	char *buf = malloc(big);
	memset(buf, ' ', big);
	buf[0] = '{';
	buf[big - 1] = '}';
	assert_int_equal(coffer_manifest_parse(buf, big, NULL, &m, &err), COFFER_ETOOBIG);
	assert_null(m);
	/* Many tiny values in a small file are refused before any tree is built. */
	size_t values = COFFER_MANIFEST_MAX_VALUES + 10;
	size_t len = 1 + 2 * values;
	buf[0] = '[';
	for (size_t i = 0; i < values; i++) {
		buf[1 + 2 * i] = '0';
		buf[2 + 2 * i] = ',';
	}
	buf[len - 1] = ']';
	assert_int_equal(coffer_manifest_parse(buf, len, NULL, &m, &err), COFFER_ETOOBIG);
	/* Commas inside strings do not count. */
	buf[0] = '"';
	memset(buf + 1, ',', len - 2);
	buf[len - 1] = '"';
	assert_int_equal(coffer_manifest_parse(buf, len, NULL, &m, &err), COFFER_ECORRUPT);
	free(buf);
}

static void
test_semantic_checks(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	char *json = NULL;
	coffer_manifest *m = sample(COFFER_MANIFEST_PHYSICAL);

	/* Paths that would escape PGDATA on restore. */
	static const char *const bad_paths[] = { "/etc/passwd", "../x", "base/../../x", "a//b",
		"./a", "a/", "" };
	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		free(m->files[0].path);
		m->files[0].path = strdup(bad_paths[i]);
		assert_int_equal(
		    coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
		assert_non_null(strstr(err.msg, "files[0]"));
		assert_null(json);
	}
	free(m->files[0].path);
	m->files[0].path = strdup("base/1/1259");

	char saved[COFFER_MANIFEST_SHA256_HEX];
	memcpy(saved, m->stored_sha256, sizeof(saved));
	m->stored_sha256[3] = 'G';
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "stored_sha256"));
	memcpy(m->stored_sha256, saved, sizeof(saved));

	m->finished_at = m->started_at - 1;
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "finished_at"));
	m->finished_at = m->started_at;

	m->kind = COFFER_MANIFEST_LOGICAL; /* the id says physical */
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "kind"));
	m->kind = COFFER_MANIFEST_PHYSICAL;

	snprintf(m->service, sizeof(m->service), "bill/ing");
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "service"));
	snprintf(m->service, sizeof(m->service), "billing");

	snprintf(m->lsn_stop, sizeof(m->lsn_stop), "0/XYZ");
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "lsn_stop"));
	m->lsn_stop[0] = '\0'; /* physical backups need their LSN range */
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	snprintf(m->lsn_stop, sizeof(m->lsn_stop), "1/FF000028");

	snprintf(m->compression, sizeof(m->compression), "lz4");
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "compression"));
	snprintf(m->compression, sizeof(m->compression), "none");

	m->key_id[0] = '\0';
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "key_id"));
	snprintf(m->key_id, sizeof(m->key_id), "k1");

	/* All fixed: it signs. Logical backups carry no file list. */
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), 0);
	free(json);
	coffer_manifest_free(m);
	m = sample(COFFER_MANIFEST_LOGICAL);
	assert_int_equal(coffer_manifest_add_file(m, "base/1/1", 1, sha_a, &err), 0);
	assert_int_equal(coffer_manifest_to_json(m, f->key, &json, NULL, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "files"));

	/* Builders refuse what cannot fit. */
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(coffer_manifest_add_table(m, "public", longname, 1, &err), COFFER_EINVAL);
	assert_int_equal(coffer_manifest_add_table(m, "", "t", 1, &err), COFFER_EINVAL);
	assert_int_equal(coffer_manifest_add_file(m, "p", 1, "abc", &err), COFFER_EINVAL);
	coffer_manifest_free(m);
}

static void
test_backup_ids(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	char a[COFFER_MANIFEST_ID_SIZE];
	char b[COFFER_MANIFEST_ID_SIZE];
	char c[COFFER_MANIFEST_ID_SIZE];
	assert_int_equal(coffer_manifest_id_new(a, T0, COFFER_MANIFEST_LOGICAL, &err), 0);
	assert_int_equal(strlen(a), COFFER_MANIFEST_ID_LEN);
	assert_memory_equal(a, "20261130T004603Z-l-", 19);
	assert_int_equal(coffer_manifest_id_new(b, T0 + 1000, COFFER_MANIFEST_PHYSICAL, &err), 0);
	assert_memory_equal(b, "20261130T004604Z-p-", 19);
	assert_true(strcmp(a, b) < 0); /* sortable by time */
	assert_int_equal(coffer_manifest_id_new(c, T0, COFFER_MANIFEST_LOGICAL, &err), 0);
	/* Same second: the random part tells them apart (1 in 2^24 to collide). */
	assert_string_not_equal(a, c);
	coffer_manifest_kind kind;
	assert_int_equal(coffer_manifest_id_check(a, &kind, &err), 0);
	assert_int_equal(kind, COFFER_MANIFEST_LOGICAL);
	assert_int_equal(coffer_manifest_id_check(b, &kind, &err), 0);
	assert_int_equal(kind, COFFER_MANIFEST_PHYSICAL);

	static const char *const bad[] = {
		"",
		"latest",
		"20261130T004603Z-l-3fa2c",
		"20261130T004603Z-l-3fa2c1x",
		"20261130T004603Z-x-3fa2c1",
		"20261130T004603Z-l-3FA2C1",
		"20261330T004603Z-l-3fa2c1",
		"20261131T004603Z-l-3fa2c1" /* no Nov 31st */,
		"20261130T244603Z-l-3fa2c1",
		"20261130 004603Z-l-3fa2c1",
		"20261130T004603+l-3fa2c1",
		"../../../../../etc/passwd",
		"19691231T235959Z-l-3fa2c1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = coffer_manifest_id_check(bad[i], NULL, &err);
		if (rc != COFFER_EINVAL) {
			print_error("accepted bad id %s\n", bad[i]);
		}
		assert_int_equal(rc, COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "is not a backup id"));
		assert_int_equal(coffer_manifest_id_check(bad[i], NULL, NULL), COFFER_EINVAL);
	}
	assert_int_equal(
	    coffer_manifest_id_new(a, -1, COFFER_MANIFEST_LOGICAL, &err), COFFER_EINVAL);
	assert_string_equal(coffer_manifest_kind_name(COFFER_MANIFEST_PHYSICAL), "physical");
	assert_int_equal(coffer_manifest_kind_parse("logical", &kind), 0);
	assert_int_equal(coffer_manifest_kind_parse("Logical", &kind), COFFER_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_every_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_ill_typed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_repeated_and_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_semantic_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backup_ids, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
