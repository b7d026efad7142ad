/*
 * History: pruning `events` and `refusals`; see
 * coordinator/catalog/history.h.
 *
 * Design notes.
 * Batches of COORD_HISTORY_BATCH rows, each its own statement and commit,
 * so the lock footprint and the WAL of one statement stay small and intake
 * never waits behind a long delete. events has no btree on received_at
 * (migration 11 dropped it: every event paid for it); migration 17 adds a
 * BRIN index instead, a few pages for the whole table, which insertion in
 * time order keeps tight and which finds the oldest block ranges for the
 * delete. The audit row comes last, alone, once per pass that removed
 * something: pruning is a state change, but a row per batch would be noise.
 */
#include "coordinator/catalog/history.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/clock.h"

static int
delete_batch(coord_catalog *cat, const char *cutoff, uint64_t *n, coffer_err *err)
{
	int rv = 0;
	const char *vals[] = { cutoff };
	PGresult *res = coord_catalog_query(cat,
	    "WITH d AS (DELETE FROM events WHERE id IN (SELECT id FROM events "
	    "WHERE received_at < to_timestamp($1::bigint / 1000.0) LIMIT 5000) RETURNING 1) "
	    "SELECT count(*) FROM d",
	    1, vals, "pruning old events", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	*n = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return (0);
}

int
coord_history_prune(coord_catalog *cat, const coord_audit_key *key, int64_t events_keep_ms,
    int64_t refusals_keep_ms, int64_t now, coord_history_stats *st, coffer_err *err)
{
	st->events = st->refusals = 0;
	st->more = false;
	char ev_cut[24], ref_cut[24];
	snprintf(ev_cut, sizeof(ev_cut), "%" PRId64, now - events_keep_ms);
	snprintf(ref_cut, sizeof(ref_cut), "%" PRId64, now - refusals_keep_ms);
	int rv = 0;
	for (int i = 0; i < COORD_HISTORY_MAX_BATCHES; i++) {
		uint64_t n = 0;
		if ((rv = delete_batch(cat, ev_cut, &n, err)) != 0) {
			return (rv);
		}
		st->events += n;
		if (n < COORD_HISTORY_BATCH) {
			break;
		}
		st->more = i + 1 == COORD_HISTORY_MAX_BATCHES;
	}
	const char *vals[] = { ref_cut };
	PGresult *res = coord_catalog_query(cat,
	    "WITH d AS (DELETE FROM refusals WHERE last_at < to_timestamp($1::bigint / 1000.0) "
	    "RETURNING 1) SELECT count(*) FROM d",
	    1, vals, "pruning old refusal counters", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	st->refusals = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (st->events == 0 && st->refusals == 0) {
		return (0);
	}
	cJSON *d = cJSON_CreateObject();
	char t1[40], t2[40];
	cJSON_AddNumberToObject(d, "events", (double)st->events);
	cJSON_AddNumberToObject(d, "refusals", (double)st->refusals);
	cJSON_AddStringToObject(
	    d, "events_before", coffer_time_format(t1, sizeof(t1), now - events_keep_ms));
	cJSON_AddStringToObject(
	    d, "refusals_before", coffer_time_format(t2, sizeof(t2), now - refusals_keep_ms));
	cJSON_AddBoolToObject(d, "more", st->more);
	char *details = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (details == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory to audit pruning"));
	}
	rv = coord_audit_append(
	    cat, key, "coordinator", "catalog.pruned", "events", details, NULL, err);
	cJSON_free(details);
	return (rv);
}
