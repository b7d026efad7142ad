/*
 * A background worker: one thread with a catalog connection of its own
 * that runs a job when the maintenance tick asks for one, so reading and
 * writing large repository objects (the integrity sweep, the DR copy) never
 * holds up the catalog lanes that answer agents and operators.
 *
 * The job runs at most once at a time; asking while it runs, or while a
 * run is already asked for, changes nothing (a run does everything due).
 * The connection is opened from conninfo on first use and reconnected after
 * a loss. A job may ask to run again at once (it stopped at its per-run
 * bound with more to do).
 */
#ifndef COFFER_COORDINATOR_CATALOG_WORKER_H
#define COFFER_COORDINATOR_CATALOG_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"

/* One run at now_ms (the tick's time that asked for it). Return 0 or an
 * error (logged by the worker as "<name> failed" unless COFFER_ECANCELED);
 * set *again to run once more without waiting for a tick. */
typedef int (*coord_worker_fn)(
    void *arg, coord_catalog *cat, int64_t now_ms, bool *again, coffer_err *err);

typedef struct coord_worker coord_worker;

/* name is for logs ("integrity sweep"); conninfo, fn and arg are borrowed
 * and must outlive the worker. */
int coord_worker_start(const char *name, const char *conninfo, coord_worker_fn fn, void *arg,
    coord_worker **out, coffer_err *err);

/* Asks for a run at now_ms, unless one runs or is asked for already. */
void coord_worker_kick(coord_worker *w, int64_t now_ms);

/* Waits for a run in progress (the owner first tells its job to stop, e.g.
 * with its own stop flag), joins, closes the connection and frees. NULL is
 * fine. */
void coord_worker_stop(coord_worker *w);

#endif
