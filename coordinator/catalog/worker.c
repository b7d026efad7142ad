/*
 * Background workers (coordinator/catalog/worker.h).
 */
#include "coordinator/catalog/worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/log.h"

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
};

static void *
run(void *arg)
{
	coord_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->pending && !atomic_load(&w->stop)) {
			pthread_cond_wait(&w->cv, &w->mu);
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
		if (w->cat == NULL) {
			w->cat = coord_catalog_open(w->conninfo, &e);
			rv = w->cat == NULL ? e.code : 0;
		} else if (!coord_catalog_ok(w->cat)) {
			rv = coord_catalog_reconnect(w->cat, &e);
		}
		bool again = false;
		if (rv == 0) {
			rv = w->fn(w->arg, w->cat, now, &again, &e);
		}
		if (rv != 0 && rv != COFFER_ECANCELED) {
			char q[COFFER_ERR_MSG_MAX + 8];
			coffer_log_error("background work failed", "work=\"%s\" error=%s", w->name,
			    coffer_log_quote(q, sizeof(q), e.msg));
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
