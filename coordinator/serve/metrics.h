/*
 * Metrics: the coordinator's and its catalog's state in the Prometheus
 * text exposition format (version 0.0.4), for /metrics
 * (coordinator/serve/http.h serves it).
 *
 * What it promises:
 * - Every family has one HELP and one TYPE line before its samples, also
 *   when it has no samples; names match [a-zA-Z_:][a-zA-Z0-9_:]*; label
 *   values are escaped (\\, \", \n); counters end in _total, times and
 *   durations in _seconds, sizes in _bytes (Prometheus' naming rules;
 *   tests/lint/monitoring.sh and `promtool check metrics` hold them).
 * - Two parts. The catalog's families (coord_metrics_render: every row of
 *   families[] in metrics.c) need the catalog; the coordinator's own
 *   (coord_metrics_compose: catalog_up, build_info, intake and outage
 *   counters kept in memory) never do. A page is always both: when the
 *   catalog cannot be read, the last catalog part that could be read is
 *   served again, and coffer_metrics_catalog_age_seconds says how old it
 *   is; before the first read, the catalog families appear with their HELP
 *   and TYPE and no samples. So a scrape answers 200 whatever the catalog
 *   does, and the set of names on the page never changes.
 * - docs/METRICS.md lists every family, its labels and when it changes;
 *   the service="_coordinator" and service="_drill_runner" conventions are
 *   there too.
 * - Memory is bounded by the catalog's number of services, agents, refusal
 *   reasons and open alerts (all bounded by configuration and by the name
 *   checks), never by the number of backups or events.
 * - Blocking (libpq): call coord_metrics_render off the loop
 *   (coordinator/serve/http.c runs its render callback on the libuv thread
 *   pool). coord_metrics_compose does not block.
 */
#ifndef COFFER_COORDINATOR_SERVE_METRICS_H
#define COFFER_COORDINATOR_SERVE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

/* The exposition's media type, for the Content-Type header. */
#define COORD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Renders the catalog's families at now_ms (Unix ms; ages are measured
 * from it) into a new NUL-terminated buffer *text (free() it) of *len
 * bytes. Runs in one REPEATABLE READ read-only transaction, so the numbers
 * agree with each other. Returns 0 or a catalog error (nothing allocated).
 */
int coord_metrics_render(
    coord_catalog *cat, int64_t now_ms, char **text, size_t *len, coffer_err *err);

/* What a request to the agent endpoint came to, for
 * coffer_intake_requests_total{result}. */
typedef enum coord_metrics_intake {
	COORD_METRICS_INTAKE_OK,          /* applied (or already applied) */
	COORD_METRICS_INTAKE_REFUSED,     /* refused: signature, owner, replay... */
	COORD_METRICS_INTAKE_UNAVAILABLE, /* "retry later": catalog down, queue full, budget */
	COORD_METRICS_INTAKE_DROPPED,     /* not answered: a muted peer, or no reply built */
	COORD_METRICS_INTAKE_N
} coord_metrics_intake;

/* A service's freshness bounds, from its configuration: how old its
 * newest verified backup and its newest passed drill may be before it is
 * late (0: no bound, e.g. no drill.schedule). */
typedef struct coord_metrics_bound {
	const char *service; /* the configuration's */
	int64_t backup_max_age_ms;
	int64_t drill_max_age_ms;
} coord_metrics_bound;

/*
 * The bounds of every service in cfg, into a new array *out (free() it) of
 * cfg->n_services: the longest gap between two consecutive scheduled runs
 * (over the coming year, as scheduled in the service's time zone) plus
 * [alerts] completion_window for backups; plus drill.rto and
 * drill.overdue_after for drills. Computed once, at start (the
 * configuration is read once). Returns 0, COFFER_ENOMEM, or the schedule's
 * or time zone's error (the configuration was checked at load).
 */
int coord_metrics_bounds(
    const coord_config *cfg, int64_t now_ms, coord_metrics_bound **out, coffer_err *err);

/* The coordinator's own alert bounds that alerting rules compare with
 * (coffer_alert_bound_seconds{bound}), from its configuration. */
#define COORD_METRICS_ALERT_BOUNDS 4
typedef struct coord_metrics_alert_bound {
	const char *name; /* "agent_quiet", ... */
	int64_t ms;
} coord_metrics_alert_bound;

/* Fills out[COORD_METRICS_ALERT_BOUNDS] from cfg: [alerts] agent_quiet,
 * agent_clock_skew_max and completion_window, [dr] copy_lag. */
void coord_metrics_alert_bounds(
    const coord_config *cfg, coord_metrics_alert_bound out[COORD_METRICS_ALERT_BOUNDS]);

/* What the coordinator knows without its catalog, at the time of a scrape. */
typedef struct coord_metrics_live {
	int64_t now_ms;           /* the scrape (Unix ms) */
	int64_t started_ms;       /* the coordinator's start (Unix ms) */
	bool catalog_up;          /* the lanes reach the catalog and so did this render */
	int64_t outage_since_ms;  /* the lanes' current outage began (Unix ms); 0: none */
	uint64_t catalog_outages; /* outages the lanes have seen since the start */
	uint64_t intake[COORD_METRICS_INTAKE_N];
	size_t services_configured;
	const coord_metrics_bound *bounds; /* services_configured of them, or NULL */
	coord_metrics_alert_bound alert_bounds[COORD_METRICS_ALERT_BOUNDS]; /* name NULL: none */
	int64_t catalog_read_ms; /* when catalog_text was read (Unix ms); 0: never */
} coord_metrics_live;

/*
 * The whole page: the coordinator's own families from live, then
 * catalog_text (catalog_len bytes, a coord_metrics_render output read at
 * live->catalog_read_ms), or, when catalog_text is NULL, the catalog's
 * families with no samples. Into a new NUL-terminated *text (free() it) of
 * *len bytes. Returns 0 or COFFER_ENOMEM (nothing allocated).
 */
int coord_metrics_compose(const coord_metrics_live *live, const char *catalog_text,
    size_t catalog_len, char **text, size_t *len);

/* The name of every family the coordinator exports, i from 0; NULL past
 * the last. In the order of the page. */
const char *coord_metrics_family_name(size_t i);

/* Writes value into out as a label value: \ " and newline escaped.
 * Always NUL-terminates; returns the length it needed (like snprintf). */
size_t coord_metrics_escape_label(char *out, size_t size, const char *value);

#endif
