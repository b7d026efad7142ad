#include "common/stream/filter.h"

#include <stdlib.h>

int
coffer_filter_write(coffer_filter *f, const void *buf, size_t len, coffer_err *err)
{
	if (f->failed) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "filter %s used after it failed", f->ops->name));
	}
	if (len == 0) {
		return (0);
	}
	int rv = f->ops->write(f, buf, len, err);
	if (rv != 0) {
		f->failed = 1;
	}
	return (rv);
}

int
coffer_filter_finish(coffer_filter *f, coffer_err *err)
{
	for (; f != NULL; f = f->next) {
		if (f->failed) {
			return (coffer_err_set(err, COFFER_EINTERNAL,
			    "filter %s finished after it failed", f->ops->name));
		}
		int rv = f->ops->finish(f, err);
		if (rv != 0) {
			f->failed = 1;
			return (rv);
		}
	}
	return (0);
}

void
coffer_filter_free(coffer_filter *f)
{
	if (f != NULL) {
		f->ops->destroy(f);
	}
}

void
coffer_filter_free_chain(coffer_filter *head)
{
	while (head != NULL) {
		coffer_filter *next = head->next;
		coffer_filter_free(head);
		head = next;
	}
}

typedef struct stop_filter {
	coffer_filter base;
	const atomic_bool *stop;
	const char *what;
} stop_filter;

static int
stop_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	stop_filter *s = (stop_filter *)f;
	if (atomic_load(s->stop)) {
		return (coffer_err_set(err, COFFER_ECANCELED, "%s was stopped", s->what));
	}
	return (coffer_filter_write(f->next, buf, len, err));
}

static int
stop_finish(coffer_filter *f, coffer_err *err)
{
	(void)f;
	(void)err;
	return (0);
}

static void
stop_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops stop_ops = { "stop", stop_write, stop_finish, stop_destroy };

coffer_filter *
coffer_stop_filter_new(
    coffer_filter *next, const atomic_bool *stop, const char *what, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	stop_filter *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	s->base.ops = &stop_ops;
	s->base.next = next;
	s->stop = stop;
	s->what = what;
	return (&s->base);
}

typedef struct borrow_filter {
	coffer_filter base;
	coffer_filter *chain; /* the lender's; never freed here */
} borrow_filter;

static int
borrow_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	return (coffer_filter_write(((borrow_filter *)f)->chain, buf, len, err));
}

static int
borrow_finish(coffer_filter *f, coffer_err *err)
{
	return (coffer_filter_finish(((borrow_filter *)f)->chain, err));
}

static void
borrow_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops borrow_ops = { "borrow", borrow_write, borrow_finish,
	borrow_destroy };

coffer_filter *
coffer_borrow_filter_new(coffer_filter *chain, coffer_err *err)
{
	if (chain == NULL) {
		coffer_err_set(err, COFFER_EINTERNAL, "borrow filter given no chain");
		return (NULL);
	}
	borrow_filter *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		return (NULL);
	}
	b->base.ops = &borrow_ops;
	b->chain = chain;
	return (&b->base);
}
