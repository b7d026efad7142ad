/*
 * The report of a `check` command (coffer-agent check, coffer-coordinator
 * check): one result per prerequisite, each naming what was checked, how it
 * went and, when it did not go well, the fix. Text results are printed as
 * they come, one line each, so an operator watching a slow check (a WAL
 * segment on its way to the repository) sees every earlier one at once;
 * JSON is one array printed at the end: [{check, status, detail, fix}].
 * The exit status follows the Nagios convention: 0 when every result is ok,
 * 1 when the worst is a warning, 2 when one is critical.
 *
 * Callers put no secret in a detail or fix (no conninfo, key or token):
 * they are printed as given, made one line of valid UTF-8.
 *
 * Memory: at most COFFER_CHECKLIST_MAX results of bounded text; past that a
 * result still counts for the exit status and is printed in text mode, but
 * is left out of the JSON array.
 */
#ifndef COFFER_COMMON_BASE_CHECKLIST_H
#define COFFER_COMMON_BASE_CHECKLIST_H

#include <stdbool.h>
#include <stddef.h>

#define COFFER_CHECKLIST_MAX        64
#define COFFER_CHECKLIST_NAME_MAX   32
#define COFFER_CHECKLIST_DETAIL_MAX 768
#define COFFER_CHECKLIST_FIX_MAX    384

typedef enum coffer_check_status {
	COFFER_CHECK_OK = 0,
	COFFER_CHECK_WARNING = 1,
	COFFER_CHECK_CRITICAL = 2,
} coffer_check_status;

typedef struct coffer_check_result {
	char name[COFFER_CHECKLIST_NAME_MAX];
	coffer_check_status status;
	char detail[COFFER_CHECKLIST_DETAIL_MAX];
	char fix[COFFER_CHECKLIST_FIX_MAX]; /* "" when there is nothing to do */
} coffer_check_result;

typedef struct coffer_checklist {
	bool json;
	coffer_check_result results[COFFER_CHECKLIST_MAX];
	size_t n;
	size_t counts[3]; /* results per status, the ones past MAX included */
	coffer_check_status worst;
} coffer_checklist;

/* Starts an empty report; json selects the output. */
void coffer_checklist_init(coffer_checklist *cl, bool json);

/* Records one result (fix may be NULL or ""), and prints it at once in text
 * mode: "CRITICAL name             detail; fix: ...". */
void coffer_checklist_add(coffer_checklist *cl, const char *name, coffer_check_status status,
    const char *fix, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The word for a status: "ok", "warning", "critical". */
const char *coffer_check_status_name(coffer_check_status status);

/* A duration for a reader, rounded to what matters at its size: "250ms",
 * "12.3s", "5m 3s", "2h 0m", "3d 4h". Negative durations print as their
 * magnitude. Returns buf. */
char *coffer_checklist_duration(char *buf, size_t size, long long ms);

/* Prints the summary line (text) or the JSON array, and returns the exit
 * status: 0, 1 or 2 as the worst result says (1 at least when stdout
 * cannot be written). */
int coffer_checklist_end(coffer_checklist *cl);

#endif
