/*
 * Hop filter; see common/stream/hop.h.
 *
 * Design note: a ring of fixed slots with a mutex and two condition
 * variables. The writer fills the slot at `fill` and publishes it; the
 * worker writes published slots downstream in order, then gives them back.
 * Copying into slots (instead of handing over the caller's buffer) is what
 * lets the caller reuse its buffer at once, the only way the two threads
 * can actually overlap.
 */
#include "common/stream/hop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
	uint8_t *buf;
	size_t len;
} slot;

typedef struct hop {
	coffer_filter f;
	slot *slots;
	size_t nslots, slot_size;
	size_t head;  /* next slot the worker writes (mu) */
	size_t count; /* published slots not yet written (mu) */
	size_t fill;  /* slot the writer fills; not published */
	bool busy;    /* the worker is writing a slot downstream (mu) */
	bool stop;    /* mu */
	bool failed;  /* mu: a downstream write failed; err holds why */
	coffer_err err;
	pthread_mutex_t mu;
	pthread_cond_t work, room;
	pthread_t thread;
	bool started;
} hop;

static void *
hop_main(void *arg)
{
	hop *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->count == 0 && !h->stop) {
			pthread_cond_wait(&h->work, &h->mu);
		}
		if (h->count == 0 && h->stop) {
			break;
		}
		slot *s = &h->slots[h->head];
		h->busy = true;
		bool skip = h->failed;
		pthread_mutex_unlock(&h->mu);
		coffer_err e = { 0 };
		int rv = skip ? 0 : coffer_filter_write(h->f.next, s->buf, s->len, &e);
		pthread_mutex_lock(&h->mu);
		if (rv != 0 && !h->failed) {
			h->failed = true;
			h->err = e;
		}
		s->len = 0;
		h->head = (h->head + 1) % h->nslots;
		h->count--;
		h->busy = false;
		pthread_cond_broadcast(&h->room);
	}
	pthread_mutex_unlock(&h->mu);
	return (NULL);
}

static int
failure(hop *h, coffer_err *err)
{
	coffer_err_set(err, h->err.code != 0 ? h->err.code : COFFER_EIO, "%s", h->err.msg);
	if (h->err.hint[0] != '\0') {
		coffer_err_hint(err, "%s", h->err.hint);
	}
	return (err != NULL ? err->code : COFFER_EIO);
}

/* Publishes the slot being filled and waits for a free one. mu held. */
static int
publish(hop *h, coffer_err *err)
{
	h->count++;
	pthread_cond_signal(&h->work);
	h->fill = (h->fill + 1) % h->nslots;
	while (h->count == h->nslots && !h->failed) {
		pthread_cond_wait(&h->room, &h->mu);
	}
	return (h->failed ? failure(h, err) : 0);
}

static int
hop_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	hop *h = (hop *)f;
	int rv = 0;
	pthread_mutex_lock(&h->mu);
	if (h->failed) {
		rv = failure(h, err);
	}
	while (rv == 0 && len > 0) {
		slot *s = &h->slots[h->fill];
		size_t n = h->slot_size - s->len;
		if (n > len) {
			n = len;
		}
		/* The slot being filled is never the worker's: it is published
		 * only when full, so copying needs no lock; holding it is simpler
		 * and costs nothing measurable at these slot sizes. */
		memcpy(s->buf + s->len, buf, n);
		s->len += n;
		buf += n;
		len -= n;
		if (s->len == h->slot_size) {
			rv = publish(h, err);
		}
	}
	pthread_mutex_unlock(&h->mu);
	return (rv);
}

static int
hop_finish(coffer_filter *f, coffer_err *err)
{
	hop *h = (hop *)f;
	int rv = 0;
	pthread_mutex_lock(&h->mu);
	if (h->slots[h->fill].len > 0 && !h->failed) {
		h->count++;
		pthread_cond_signal(&h->work);
		h->fill = (h->fill + 1) % h->nslots;
	}
	while ((h->count > 0 || h->busy) && !h->failed) {
		pthread_cond_wait(&h->room, &h->mu);
	}
	/* A failure stops the copying, but the worker may still be in a write:
	 * wait for it so the caller never meets a busy downstream filter. */
	while (h->busy) {
		pthread_cond_wait(&h->room, &h->mu);
	}
	if (h->failed) {
		rv = failure(h, err);
	}
	pthread_mutex_unlock(&h->mu);
	return (rv);
}

static void
hop_destroy(coffer_filter *f)
{
	hop *h = (hop *)f;
	if (h->started) {
		pthread_mutex_lock(&h->mu);
		h->stop = true;
		h->failed = true; /* drop what is queued: nobody wants it now */
		pthread_cond_signal(&h->work);
		pthread_mutex_unlock(&h->mu);
		pthread_join(h->thread, NULL);
	}
	/* slots is NULL when coffer_hop_filter_new could not allocate it. */
	for (size_t i = 0; h->slots != NULL && i < h->nslots; i++) {
		free(h->slots[i].buf);
	}
	free(h->slots);
	pthread_cond_destroy(&h->work);
	pthread_cond_destroy(&h->room);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static const coffer_filter_ops hop_ops = {
	.name = "hop",
	.write = hop_write,
	.finish = hop_finish,
	.destroy = hop_destroy,
};

coffer_filter *
coffer_hop_filter_new(coffer_filter *next, size_t slots, size_t slot_size, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	if (slots < 2 || slots > 64 || slot_size < 4096 || slot_size > (16u << 20)) {
		coffer_err_set(err, COFFER_EINVAL, "hop: %zu slots of %zu bytes is out of range",
		    slots, slot_size);
		coffer_filter_free_chain(next);
		return (NULL);
	}
	hop *h = calloc(1, sizeof(*h));
	if (h == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory for a hop filter");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	h->f.ops = &hop_ops;
	h->f.next = next;
	h->nslots = slots;
	h->slot_size = slot_size;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->work, NULL);
	pthread_cond_init(&h->room, NULL);
	h->slots = calloc(slots, sizeof(*h->slots));
	bool ok = h->slots != NULL;
	for (size_t i = 0; ok && i < slots; i++) {
		ok = (h->slots[i].buf = malloc(slot_size)) != NULL;
	}
	if (!ok) {
		coffer_filter_free_chain(&h->f);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory for a hop filter");
		return (NULL);
	}
	int prv = pthread_create(&h->thread, NULL, hop_main, h);
	if (prv != 0) {
		coffer_filter_free_chain(&h->f);
		coffer_err_set(err, COFFER_ENOMEM, "cannot start a hop thread");
		return (NULL);
	}
	h->started = true;
	return (&h->f);
}
