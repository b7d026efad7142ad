/*
 * Status page: the fleet at a glance as one server-rendered HTML page, for
 * GET /status on the metrics listener (coordinator/serve/http.h serves it,
 * behind the same token as /metrics).
 *
 * What it promises:
 * - Five sections, in this order: services (newest verified backup, its
 *   age against the service's RPO with a red or green state, its kind, the
 *   next scheduled run), open alerts (check, service and agent, since
 *   when, dedup key), restore drills (the last drill per service, its
 *   result, its measured restore time against the RTO), DR copy lag (per
 *   service: copies not yet verified in DR, the oldest backup among them,
 *   since when, bytes pending) and legal holds (backup, reason, who, since).
 * - Every text that comes from an operator, an agent or the catalog goes
 *   through coffer_html_escape: the page never holds an element, attribute
 *   or entity that the coordinator did not write itself. It holds no
 *   script, no form, no link to another origin and no external resource:
 *   its Content-Security-Policy (COORD_STATUSPAGE_CSP) forbids them all.
 * - Bounded: at most COORD_STATUSPAGE_MAX_ROWS rows a section, the rest
 *   counted ("N more"); services that miss their RPO come first.
 * - The figures come from the reads `coffer status` makes
 *   (coord_admin_status_read) and the alert list `coffer alerts list`
 *   reads, in one REPEATABLE READ read-only snapshot, so the page, the CLI
 *   and each other agree.
 * - Without the catalog the page still answers, with a banner naming since
 *   when the catalog is unreachable, what the configuration says (services,
 *   RPO, RTO, next runs) and the last snapshot it read, labelled with its
 *   time; coord_statuspage_render then asks for HTTP 503.
 */
#ifndef COFFER_COORDINATOR_SERVE_STATUSPAGE_H
#define COFFER_COORDINATOR_SERVE_STATUSPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_STATUSPAGE_MAX_ROWS 200

#define COORD_STATUSPAGE_CONTENT_TYPE "text/html; charset=utf-8"
/* Nothing may load or run; only the page's own <style> applies. */
#define COORD_STATUSPAGE_CSP                                                                   \
	"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; " \
	"frame-ancestors 'none'"

/*
 * Reads the page's figures at now_ms into *snap (cJSON_Delete it): the
 * status overview (coord_admin_status_read: "services", "holds"), plus
 * "alerts" (the open ones, at most COORD_STATUSPAGE_MAX_ROWS),
 * "alerts_open" and "holds_active" (how many in all). One REPEATABLE READ
 * read-only transaction. Blocking (libpq): off the loop.
 */
int coord_statuspage_collect(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, cJSON **snap, coffer_err *err);

/* What one rendering shows besides the configuration. */
typedef struct coord_statuspage_input {
	int64_t now_ms;
	const cJSON *snap;  /* coord_statuspage_collect's; NULL: none read yet */
	int64_t snap_at_ms; /* when snap was read */
	bool catalog_up;
	int64_t down_since_ms; /* !catalog_up: since when (0: unknown) */
	/* Per cfg->services[i]: its RPO (coord_config_rpo), 0 when it could
	 * not be derived, and whether it was derived. NULL: none known. */
	const int64_t *rpo_ms;
	const bool *rpo_derived;
} coord_statuspage_input;

/* Renders the page into *html (malloc'd, NUL-terminated, *len bytes).
 * Needs no catalog: this is what the unit test feeds. 0 or COFFER_ENOMEM. */
int coord_statuspage_html(
    const coord_config *cfg, const coord_statuspage_input *in, char **html, size_t *len);

/* The page's state across renderings: the last snapshot read and each
 * service's RPO (derived at most once an hour). One rendering at a time. */
typedef struct coord_statuspage coord_statuspage;

coord_statuspage *coord_statuspage_new(const coord_config *cfg);
void coord_statuspage_free(coord_statuspage *sp);

/*
 * One rendering at now_ms: reads a new snapshot when cat is not NULL and
 * catalog_up (a failed read counts as the catalog being down since now,
 * unless down_since_ms says earlier), else shows the last one. Fills
 * *html, *len and *http_status: 200, or 503 when the catalog could not be
 * read. 0, or COFFER_ENOMEM.
 */
int coord_statuspage_render(coord_statuspage *sp, coord_catalog *cat, bool catalog_up,
    int64_t down_since_ms, int64_t now_ms, char **html, size_t *len, int *http_status);

#endif
