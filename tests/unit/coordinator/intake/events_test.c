/* One event on its own (coordinator/intake/events.c), without a catalog:
 * a well-formed event of every kind is accepted and has a payload; each rule
 * that stands in for a catalog constraint refuses the value just past its
 * boundary, with its reason, and accepts the value on it; and agent text in
 * a payload comes out cut and clean rather than refused. The catalog's side
 * of the same events is tests/integration/intake.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/name.h"
#include "coordinator/intake/intake_internal.h"

/* 9999-12-31T23:59:59.999Z in Unix ms: the last time the catalog keeps. */
#define LAST_MS INT64_C(253402300799999)

/* An event of every kind, each valid as it comes out of fixture_init. */
typedef struct fixture {
	Coffer__V1__Event ev;
	Coffer__V1__AgentHello hello;
	Coffer__V1__Heartbeat heartbeat;
	Coffer__V1__BackupStarted started;
	Coffer__V1__BackupCompleted completed;
	Coffer__V1__BackupFailed failed;
	Coffer__V1__WalArchived wal;
	Coffer__V1__RestoreCompleted restore;
	Coffer__V1__DrillResult drill;
	Coffer__V1__CheckResult check;
	Coffer__V1__CheckResult *checks[1];
	Coffer__V1__CommandDone done;
	uint8_t sha[2][32];
	char *segments[2];
	ProtobufCBinaryData segment_sha[2];
	uint64_t segment_bytes[2];
} fixture;

static void
fixture_init(fixture *f, Coffer__V1__Event__KindCase kind)
{
	memset(f, 0, sizeof(*f));
	memset(f->sha[0], 0xab, 32);
	memset(f->sha[1], 0x01, 32);
	coffer__v1__event__init(&f->ev);
	f->ev.seq = 7;
	f->ev.service = "billing";
	f->ev.occurred_at_ms = INT64_C(1700000000000);
	f->ev.kind_case = kind;

	coffer__v1__agent_hello__init(&f->hello);
	f->hello.version = "1.4.0";
	f->hello.pg_version = "160002";
	f->hello.hostname = "db-1";

	coffer__v1__heartbeat__init(&f->heartbeat);
	f->heartbeat.outbox_depth = 3;
	f->heartbeat.last_backup_id = "b-1";

	coffer__v1__backup_started__init(&f->started);
	f->started.backup_id = "billing-20240101T000000Z";
	f->started.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;

	coffer__v1__backup_completed__init(&f->completed);
	f->completed.backup_id = "billing-2024-01-01T00:00:00Z";
	f->completed.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL;
	f->completed.started_at_ms = INT64_C(1700000000000);
	f->completed.finished_at_ms = INT64_C(1700000060000);
	f->completed.plain_bytes = 1000;
	f->completed.stored_bytes = 400;
	f->completed.stored_sha256 = (ProtobufCBinaryData) { 32, f->sha[0] };
	f->completed.key_id = "k-2024";
	f->completed.repository = "primary";
	f->completed.start_lsn = "0/2000028";
	f->completed.stop_lsn = "0/2000100";
	f->completed.timeline = 1;

	coffer__v1__backup_failed__init(&f->failed);
	f->failed.backup_id = "b-2";
	f->failed.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	f->failed.reason = "pg_dump exited 1";
	f->failed.stage = "dump";

	coffer__v1__wal_archived__init(&f->wal);
	f->segments[0] = "000000010000000000000002";
	f->segments[1] = "000000010000000000000003";
	for (size_t i = 0; i < 2; i++) {
		f->segment_sha[i] = (ProtobufCBinaryData) { 32, f->sha[i] };
		f->segment_bytes[i] = 16777216;
	}
	f->wal.system_identifier = "7301234567890123456";
	f->wal.timeline = 1;
	f->wal.n_segments = 2;
	f->wal.segments = f->segments;
	f->wal.n_segment_sha256 = 2;
	f->wal.segment_sha256 = f->segment_sha;
	f->wal.n_segment_stored_bytes = 2;
	f->wal.segment_stored_bytes = f->segment_bytes;

	coffer__v1__restore_completed__init(&f->restore);
	f->restore.backup_id = "b-1";
	f->restore.target = "billing_restored";
	f->restore.ok = true;

	coffer__v1__check_result__init(&f->check);
	f->check.name = "row_counts";
	f->check.ok = true;
	f->checks[0] = &f->check;
	coffer__v1__drill_result__init(&f->drill);
	f->drill.drill_id = 9;
	f->drill.backup_id = "b-1";
	f->drill.ok = true;
	f->drill.n_checks = 1;
	f->drill.checks = f->checks;

	coffer__v1__command_done__init(&f->done);
	f->done.command_id = 4;
	f->done.ok = true;

	/* The kinds share a union: only the one of kind may be set. */
	switch (kind) {
	case COFFER__V1__EVENT__KIND_HELLO:
		f->ev.hello = &f->hello;
		break;
	case COFFER__V1__EVENT__KIND_HEARTBEAT:
		f->ev.heartbeat = &f->heartbeat;
		break;
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		f->ev.backup_started = &f->started;
		break;
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED:
		f->ev.backup_completed = &f->completed;
		break;
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED:
		f->ev.backup_failed = &f->failed;
		break;
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED:
		f->ev.wal_archived = &f->wal;
		break;
	case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED:
		f->ev.restore_completed = &f->restore;
		break;
	case COFFER__V1__EVENT__KIND_DRILL_RESULT:
		f->ev.drill_result = &f->drill;
		break;
	case COFFER__V1__EVENT__KIND_COMMAND_DONE:
		f->ev.command_done = &f->done;
		break;
	default:
		break;
	}
}

static void
expect_valid(const Coffer__V1__Event *ev)
{
	char why[200] = "";
	bool ok = intake_event_valid(ev, why, sizeof(why));
	if (!ok) {
		fail_msg("refused: %s", why);
	}
}

static void
expect_refused(const Coffer__V1__Event *ev, const char *reason)
{
	char why[200] = "";
	assert_false(intake_event_valid(ev, why, sizeof(why)));
	assert_string_equal(why, reason);
}

/* A string of n copies of c (malloc'd). */
static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return (s);
}

static const char *
str(const cJSON *obj, const char *key)
{
	return (cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key)));
}

static double
num(const cJSON *obj, const char *key)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, key);
	assert_true(cJSON_IsNumber(n));
	return (cJSON_GetNumberValue(n));
}

static const struct {
	Coffer__V1__Event__KindCase kind;
	const char *type;
} kinds[] = {
	{ COFFER__V1__EVENT__KIND_HELLO, "agent.hello" },
	{ COFFER__V1__EVENT__KIND_HEARTBEAT, "agent.heartbeat" },
	{ COFFER__V1__EVENT__KIND_BACKUP_STARTED, "backup.started" },
	{ COFFER__V1__EVENT__KIND_BACKUP_COMPLETED, "backup.completed" },
	{ COFFER__V1__EVENT__KIND_BACKUP_FAILED, "backup.failed" },
	{ COFFER__V1__EVENT__KIND_WAL_ARCHIVED, "wal.archived" },
	{ COFFER__V1__EVENT__KIND_RESTORE_COMPLETED, "restore.completed" },
	{ COFFER__V1__EVENT__KIND_DRILL_RESULT, "drill.result" },
	{ COFFER__V1__EVENT__KIND_COMMAND_DONE, "command.done" },
};

static void
test_every_kind_valid_with_payload(void **state)
{
	(void)state;
	fixture f;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		fixture_init(&f, kinds[i].kind);
		expect_valid(&f.ev);
		assert_string_equal(coffer_wire_event_type(&f.ev), kinds[i].type);
		cJSON *p = intake_event_payload(&f.ev);
		assert_non_null(p);
		assert_true(num(p, "occurred_at_ms") == 1700000000000.0);
		cJSON_Delete(p);
	}

	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	cJSON *p = intake_event_payload(&f.ev);
	assert_string_equal(str(p, "backup_id"), "billing-2024-01-01T00:00:00Z");
	assert_string_equal(str(p, "stored_sha256"),
	    "abababababababababababababababababababababababababababababababab");
	/* Digests the agent did not send are left out, not written as "". */
	assert_null(cJSON_GetObjectItemCaseSensitive(p, "plain_sha256"));
	assert_null(cJSON_GetObjectItemCaseSensitive(p, "manifest_sha256"));
	assert_true(num(p, "stored_bytes") == 400.0);
	cJSON_Delete(p);

	fixture_init(&f, COFFER__V1__EVENT__KIND_DRILL_RESULT);
	p = intake_event_payload(&f.ev);
	const cJSON *checks = cJSON_GetObjectItemCaseSensitive(p, "checks");
	assert_int_equal(cJSON_GetArraySize(checks), 1);
	assert_string_equal(str(cJSON_GetArrayItem(checks, 0), "name"), "row_counts");
	cJSON_Delete(p);
}

/* The archiver's fields appear only from an agent that reports them, so the
 * WAL watch can tell "not archiving" from "archiving, nothing failed". */
static void
test_heartbeat_archiver_fields(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, COFFER__V1__EVENT__KIND_HEARTBEAT);
	cJSON *p = intake_event_payload(&f.ev);
	assert_null(cJSON_GetObjectItemCaseSensitive(p, "archive_failed_count"));
	cJSON_Delete(p);

	f.heartbeat.current_wal = "000000010000000000000004";
	f.heartbeat.timeline = 1;
	p = intake_event_payload(&f.ev);
	assert_true(num(p, "archive_failed_count") == 0.0);
	assert_string_equal(str(p, "current_wal"), "000000010000000000000004");
	assert_null(cJSON_GetObjectItemCaseSensitive(p, "wal_segment_size"));
	cJSON_Delete(p);

	f.heartbeat.wal_segment_size = 16777216;
	p = intake_event_payload(&f.ev);
	assert_true(num(p, "wal_segment_size") == 16777216.0);
	cJSON_Delete(p);
}

/* A kind from a newer agent: recorded as "unknown", applied to nothing. */
static void
test_unknown_kind(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, COFFER__V1__EVENT__KIND__NOT_SET);
	assert_string_equal(coffer_wire_event_type(&f.ev), "unknown");
	assert_null(intake_event_backup_id(&f.ev));
	expect_valid(&f.ev);
	cJSON *p = intake_event_payload(&f.ev);
	assert_int_equal(cJSON_GetArraySize(p), 1);
	cJSON_Delete(p);

	fixture_init(&f, (Coffer__V1__Event__KindCase)99);
	assert_string_equal(coffer_wire_event_type(&f.ev), "unknown");
	expect_valid(&f.ev);
}

static void
test_backup_ids(void **state)
{
	(void)state;
	static const char why[] = "backup id is not 1-128 of [A-Za-z0-9_.:-]";
	char *longest = repeat('a', 128), *too_long = repeat('a', 129);
	const char *bad[] = { "", too_long, "a b", "a'b", "a,b", "{a}", "a\"b", ":a", "-a", ".a",
		"a/b", "caf\xc3\xa9" };
	const char *good[] = { longest, "a", "9", "b-1_2.3:4", "2024-01-01T00:00:00Z" };
	const Coffer__V1__Event__KindCase with_id[] = { COFFER__V1__EVENT__KIND_BACKUP_STARTED,
		COFFER__V1__EVENT__KIND_BACKUP_COMPLETED, COFFER__V1__EVENT__KIND_BACKUP_FAILED };
	fixture f;
	for (size_t k = 0; k < sizeof(with_id) / sizeof(with_id[0]); k++) {
		for (size_t i = 0;
		     i < sizeof(bad) / sizeof(bad[0]) + sizeof(good) / sizeof(good[0]); i++) {
			bool is_bad = i < sizeof(bad) / sizeof(bad[0]);
			const char *id = is_bad ? bad[i] : good[i - sizeof(bad) / sizeof(bad[0])];
			fixture_init(&f, with_id[k]);
			f.started.backup_id = f.completed.backup_id = f.failed.backup_id =
			    (char *)id;
			assert_string_equal(intake_event_backup_id(&f.ev), id);
			if (is_bad) {
				expect_refused(&f.ev, why);
			} else {
				expect_valid(&f.ev);
			}
		}
	}
	free(longest);
	free(too_long);
}

static void
test_backup_kinds(void **state)
{
	(void)state;
	static const char why[] = "backup kind is not logical or physical";
	fixture f;
	assert_string_equal(
	    intake_kind_text(COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL), "logical");
	assert_string_equal(
	    intake_kind_text(COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL), "physical");
	assert_null(intake_kind_text(COFFER__V1__BACKUP_KIND__BACKUP_KIND_UNSPECIFIED));
	assert_null(intake_kind_text((Coffer__V1__BackupKind)3));

	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_STARTED);
	f.started.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_UNSPECIFIED;
	expect_refused(&f.ev, why);
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	f.completed.kind = (Coffer__V1__BackupKind)3;
	expect_refused(&f.ev, why);
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_FAILED);
	f.failed.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_UNSPECIFIED;
	expect_refused(&f.ev, why);
}

static void
test_lsns(void **state)
{
	(void)state;
	static const char why[] = "an LSN is not of the form X/X";
	const char *good[] = { "", "0/0", "16/B374D848", "FFFFFFFF/ffffffff", "a/1" };
	const char *bad[] = { "0", "/0", "0/", "/", "123456789/0", "0/123456789", "0/G", "0/1/2",
		" 0/1", "0/1 ", "0x1/2", "-1/0" };
	fixture f;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.start_lsn = (char *)good[i];
		expect_valid(&f.ev);
		f.completed.stop_lsn = (char *)good[i];
		expect_valid(&f.ev);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.start_lsn = (char *)bad[i];
		expect_refused(&f.ev, why);
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.stop_lsn = (char *)bad[i];
		expect_refused(&f.ev, why);
	}
}

static void
test_times(void **state)
{
	(void)state;
	assert_false(intake_ms_ok(INT64_MIN));
	assert_false(intake_ms_ok(-1));
	assert_false(intake_ms_ok(0));
	assert_true(intake_ms_ok(1));
	assert_true(intake_ms_ok(LAST_MS));
	assert_false(intake_ms_ok(LAST_MS + 1));
	assert_false(intake_ms_ok(INT64_MAX));

	/* A completed backup needs both times, in order. */
	static const char order[] = "start and finish times are missing or out of order";
	const int64_t bad[][2] = { { 0, 1 }, { 1, 0 }, { -1, 1 }, { 2, 1 }, { 1, LAST_MS + 1 },
		{ LAST_MS + 1, LAST_MS + 1 }, { INT64_MIN, INT64_MAX } };
	const int64_t good[][2] = { { 1, 1 }, { 1, LAST_MS }, { LAST_MS, LAST_MS } };
	fixture f;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.started_at_ms = bad[i][0];
		f.completed.finished_at_ms = bad[i][1];
		expect_refused(&f.ev, order);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.started_at_ms = good[i][0];
		f.completed.finished_at_ms = good[i][1];
		expect_valid(&f.ev);
	}

	/* A failed backup's times are optional (0: not known), but when given
	 * they must be times. */
	static const char range[] = "a time is out of range";
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_FAILED);
	expect_valid(&f.ev);
	f.failed.started_at_ms = 1;
	f.failed.failed_at_ms = LAST_MS;
	expect_valid(&f.ev);
	f.failed.started_at_ms = -1;
	expect_refused(&f.ev, range);
	f.failed.started_at_ms = 0;
	f.failed.failed_at_ms = LAST_MS + 1;
	expect_refused(&f.ev, range);
	f.failed.failed_at_ms = INT64_MIN;
	expect_refused(&f.ev, range);
}

static void
test_completed_digests_sizes_and_names(void **state)
{
	(void)state;
	static const char digest[] = "a SHA-256 digest is missing or not 32 bytes";
	uint8_t big[33] = { 0 };
	fixture f;

	const size_t stored_bad[] = { 0, 31, 33 };
	for (size_t i = 0; i < sizeof(stored_bad) / sizeof(stored_bad[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.stored_sha256 = (ProtobufCBinaryData) { stored_bad[i], big };
		expect_refused(&f.ev, digest);
	}
	/* plain and manifest digests are optional, but 32 bytes when given. */
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	f.completed.plain_sha256 = (ProtobufCBinaryData) { 32, f.sha[1] };
	f.completed.manifest_sha256 = (ProtobufCBinaryData) { 32, f.sha[1] };
	expect_valid(&f.ev);
	f.completed.plain_sha256.len = 16;
	expect_refused(&f.ev, digest);
	f.completed.plain_sha256.len = 32;
	f.completed.manifest_sha256.len = 33;
	f.completed.manifest_sha256.data = big;
	expect_refused(&f.ev, digest);

	/* The key id: oversized text is refused here, not cut, since a cut id
	 * would name a different key. */
	static const char key[] = "key id is missing or too long";
	char *k128 = repeat('k', 128), *k129 = repeat('k', 129);
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	f.completed.key_id = "";
	expect_refused(&f.ev, key);
	f.completed.key_id = k129;
	expect_refused(&f.ev, key);
	f.completed.key_id = k128;
	expect_valid(&f.ev);
	free(k128);
	free(k129);

	/* The repository: empty means "primary"; otherwise the name rule
	 * (common/base/name.h), which stops at COFFER_NAME_MAX bytes. */
	static const char repo[] = "repository name is not " COFFER_NAME_RULE;
	char *r_max = repeat('r', COFFER_NAME_MAX), *r_over = repeat('r', COFFER_NAME_MAX + 1);
	const char *bad_repos[] = { r_over, "-r", "r r", "r:1", "r/1" };
	const char *good_repos[] = { "", "r", "offsite-2", r_max };
	for (size_t i = 0; i < sizeof(bad_repos) / sizeof(bad_repos[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.repository = (char *)bad_repos[i];
		expect_refused(&f.ev, repo);
	}
	for (size_t i = 0; i < sizeof(good_repos) / sizeof(good_repos[0]); i++) {
		fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
		f.completed.repository = (char *)good_repos[i];
		expect_valid(&f.ev);
	}
	free(r_max);
	free(r_over);

	/* bigint and integer columns. */
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	f.completed.plain_bytes = f.completed.stored_bytes = INT64_MAX;
	expect_valid(&f.ev);
	f.completed.plain_bytes = (uint64_t)INT64_MAX + 1;
	expect_refused(&f.ev, "sizes are out of range");
	f.completed.plain_bytes = 0;
	f.completed.stored_bytes = UINT64_MAX;
	expect_refused(&f.ev, "sizes are out of range");
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	f.completed.timeline = INT32_MAX;
	expect_valid(&f.ev);
	f.completed.timeline = (uint32_t)INT32_MAX + 1;
	expect_refused(&f.ev, "timeline is out of range");
}

static void
test_wal_archived(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, COFFER__V1__EVENT__KIND_WAL_ARCHIVED);
	f.wal.timeline = 0;
	expect_refused(&f.ev, "timeline is missing or out of range");
	f.wal.timeline = (uint32_t)INT32_MAX + 1;
	expect_refused(&f.ev, "timeline is missing or out of range");
	f.wal.timeline = INT32_MAX;
	expect_valid(&f.ev);

	/* An older agent sends no digests at all: valid (kept in `events`
	 * only). Some digests but not one per segment is not. */
	fixture_init(&f, COFFER__V1__EVENT__KIND_WAL_ARCHIVED);
	f.wal.n_segment_sha256 = f.wal.n_segment_stored_bytes = 0;
	expect_valid(&f.ev);
	static const char match[] = "segment digests and sizes do not match the segments";
	f.wal.n_segment_sha256 = 2;
	expect_refused(&f.ev, match);
	f.wal.n_segment_sha256 = 0;
	f.wal.n_segment_stored_bytes = 2;
	expect_refused(&f.ev, match);
	f.wal.n_segment_sha256 = 1;
	expect_refused(&f.ev, match);

	static const char seg[] = "a segment digest is not 32 bytes or its size is out of range";
	fixture_init(&f, COFFER__V1__EVENT__KIND_WAL_ARCHIVED);
	f.segment_sha[1].len = 31;
	expect_refused(&f.ev, seg);
	fixture_init(&f, COFFER__V1__EVENT__KIND_WAL_ARCHIVED);
	f.segment_bytes[0] = (uint64_t)INT64_MAX + 1;
	expect_refused(&f.ev, seg);
	f.segment_bytes[0] = INT64_MAX;
	expect_valid(&f.ev);
}

/* Free text is not refused: it is cut and cleaned, so the event still
 * lands and jsonb still takes it. */
static void
test_payload_text_cut_and_cleaned(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, COFFER__V1__EVENT__KIND_BACKUP_FAILED);
	char *huge = repeat('x', 5 * TEXT_MAX);
	f.failed.reason = huge;
	expect_valid(&f.ev);
	cJSON *p = intake_event_payload(&f.ev);
	assert_non_null(p);
	assert_int_equal(strlen(str(p, "reason")), TEXT_MAX);
	cJSON_Delete(p);
	free(huge);

	f.failed.reason = "disk\tfull\n\x1b[31m\xff\xc3";
	f.failed.stage = "caf\xc3\xa9";
	p = intake_event_payload(&f.ev);
	assert_string_equal(str(p, "reason"), "disk?full??[31m??");
	assert_string_equal(str(p, "stage"), "caf\xc3\xa9");
	cJSON_Delete(p);

	/* Lists stop at 256 entries (the count says how many there were),
	 * segment names at 64 bytes. */
	enum {
		N = 300
	};
	char *names[N];
	char *long_name = repeat('0', 100);
	for (size_t i = 0; i < N; i++) {
		names[i] = i == 0 ? long_name : "000000010000000000000002";
	}
	fixture_init(&f, COFFER__V1__EVENT__KIND_WAL_ARCHIVED);
	f.wal.n_segments = N;
	f.wal.segments = names;
	f.wal.n_segment_sha256 = f.wal.n_segment_stored_bytes = 0;
	p = intake_event_payload(&f.ev);
	assert_non_null(p);
	assert_true(num(p, "segment_count") == (double)N);
	const cJSON *segs = cJSON_GetObjectItemCaseSensitive(p, "segments");
	assert_int_equal(cJSON_GetArraySize(segs), 256);
	assert_int_equal(strlen(cJSON_GetStringValue(cJSON_GetArrayItem(segs, 0))), 64);
	cJSON_Delete(p);
	free(long_name);

	Coffer__V1__CheckResult *many[N];
	for (size_t i = 0; i < N; i++) {
		many[i] = &f.check;
	}
	fixture_init(&f, COFFER__V1__EVENT__KIND_DRILL_RESULT);
	f.drill.n_checks = N;
	f.drill.checks = many;
	p = intake_event_payload(&f.ev);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "checks")), 256);
	cJSON_Delete(p);
}

static void
test_text_rules(void **state)
{
	(void)state;
	assert_true(intake_digits_ok("0", 1));
	assert_true(intake_digits_ok("12345678901234567890", 20));
	assert_false(intake_digits_ok("123456789012345678901", 20));
	assert_false(intake_digits_ok("", 20));
	assert_false(intake_digits_ok("12a", 20));
	assert_false(intake_digits_ok("-1", 20));

	assert_true(intake_wal_segment_name("000000010000000A000000FF"));
	assert_true(intake_wal_segment_name("000000010000000A000000FF.partial"));
	assert_false(intake_wal_segment_name("000000010000000a000000ff"));
	assert_false(intake_wal_segment_name("00000002.history"));
	assert_false(intake_wal_segment_name("000000010000000A000000FF.00000028.backup"));
	assert_false(intake_wal_segment_name("000000010000000A000000F"));
	assert_false(intake_wal_segment_name("000000010000000A000000FF.partia"));
	assert_false(intake_wal_segment_name(""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind_valid_with_payload),
		cmocka_unit_test(test_heartbeat_archiver_fields),
		cmocka_unit_test(test_unknown_kind),
		cmocka_unit_test(test_backup_ids),
		cmocka_unit_test(test_backup_kinds),
		cmocka_unit_test(test_lsns),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_completed_digests_sizes_and_names),
		cmocka_unit_test(test_wal_archived),
		cmocka_unit_test(test_payload_text_cut_and_cleaned),
		cmocka_unit_test(test_text_rules),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
