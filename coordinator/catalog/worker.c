/*
 * Background workers (coordinator/catalog/worker.h).
 *
 * Design notes.
 * The connection follows coordinator/catalog/reconnect.h like the lanes'.
 * A worker whose connection is down waits out its backoff and reconnects
 * by itself, also when nobody asks for a run, so it neither holds a dead
 * connection until the next tick nor fails every run in the meantime; a
 * run asked for while down tries at once (the tick that asked has just
 * used the catalog, so it is likely back).
 */
#include "coordinator/catalog/worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "coordinator/catalog/reconnect.h"

struct coord_worker {
	const char *name;
	const char *conninfo;
	coord_worker_fn fn;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_bool stop;
	bool pending;        /* mu */
	bool busy;           /* mu */
	int64_t pending_now; /* mu */
	coord_catalog *cat;  /* the worker's thread only */
	coord_reconnect rc;  /* the worker's thread only */
};

static void
log_down(coord_worker *w, const char *why)
{
	coffer_log_warn("background work lost the catalog; reconnecting with backoff",
	    "work=\"%s\" error=%s", w->name, why);
}

/* Reconnects a down worker now; true once it has a usable connection. */
static bool
revive(coord_worker *w, coffer_err *e)
{
	if (w->cat == NULL) {
		w->cat = coord_catalog_open(w->conninfo, e);
		if (w->cat == NULL) {
			(void)coord_reconnect_failed(&w->rc);
			return (false);
		}
		if (coord_catalog_check(w->cat, e) != 0) {
			(void)coord_reconnect_failed(&w->rc);
			return (false);
		}
		w->rc.down = false;
		return (true);
	}
	if (!w->rc.down) {
		return (true);
	}
	if (coord_reconnect_try(&w->rc, w->cat, e) == COORD_RECONNECT_BACK) {
		coffer_log_info(
		    "background work reached the catalog again", "work=\"%s\"", w->name);
		return (true);
	}
	return (false);
}

/* Waits on cv until a run is asked for, stop, or (when down) the next
 * reconnect attempt is due. Called with mu held. */
static void
wait_for_work(coord_worker *w)
{
	int64_t wait = coord_reconnect_wait_ms(&w->rc, coffer_clock_monotonic_ms());
	if (wait < 0) {
		pthread_cond_wait(&w->cv, &w->mu);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += wait / 1000;
	ts.tv_nsec += (long)(wait % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

static void *
run(void *arg)
{
	coord_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->pending && !atomic_load(&w->stop)) {
			if (w->rc.down &&
			    coord_reconnect_wait_ms(&w->rc, coffer_clock_monotonic_ms()) == 0) {
				pthread_mutex_unlock(&w->mu);
				coffer_err e;
				coffer_err_clear(&e);
				(void)revive(w, &e);
				pthread_mutex_lock(&w->mu);
				continue;
			}
			wait_for_work(w);
		}
		if (atomic_load(&w->stop)) {
			break;
		}
		int64_t now = w->pending_now;
		w->pending = false;
		w->busy = true;
		pthread_mutex_unlock(&w->mu);
		coffer_err e;
		coffer_err_clear(&e);
		int rv = 0;
		bool was_down = w->rc.down;
		if (!revive(w, &e)) {
			rv = e.code != 0 ? e.code : COFFER_EUNAVAIL;
		}
		bool again = false;
		if (rv == 0) {
			rv = w->fn(w->arg, w->cat, now, &again, &e);
			coffer_err rerr;
			coffer_err_clear(&rerr);
			if (coord_reconnect_after(&w->rc, w->cat, &rerr) ==
			    COORD_RECONNECT_WENT_DOWN) {
				log_down(w, rerr.msg);
			}
		} else if (!was_down) {
			log_down(w, e.msg);
		}
		if (rv != 0 && rv != COFFER_ECANCELED) {
			coffer_log_error(
			    "background work failed", "work=\"%s\" error=%s", w->name, e.msg);
		}
		pthread_mutex_lock(&w->mu);
		w->busy = false;
		if (rv == 0 && again && !w->pending) {
			w->pending = true;
			w->pending_now = coffer_clock_now(NULL);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return (NULL);
}

int
coord_worker_start(const char *name, const char *conninfo, coord_worker_fn fn, void *arg,
    coord_worker **out, coffer_err *err)
{
	*out = NULL;
	coord_worker *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the %s", name));
	}
	w->name = name;
	w->conninfo = conninfo;
	w->fn = fn;
	w->arg = arg;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	int prv = pthread_create(&w->thread, NULL, run, w);
	if (prv != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return (coffer_err_set(
		    err, COFFER_ENOMEM, "cannot start the %s: %s", name, strerror(prv)));
	}
	*out = w;
	return (0);
}

void
coord_worker_kick(coord_worker *w, int64_t now_ms)
{
	pthread_mutex_lock(&w->mu);
	if (!w->busy && !w->pending) {
		w->pending = true;
		w->pending_now = now_ms;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
}

void
coord_worker_stop(coord_worker *w)
{
	if (w == NULL) {
		return;
	}
	atomic_store(&w->stop, true);
	pthread_mutex_lock(&w->mu);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	coord_catalog_close(w->cat);
	free(w);
}
