#include "common/filter.h"

#include <stdarg.h>

coffer_filter *
coffer_filter_link(coffer_filter *first, ...)
{
	va_list ap;
	va_start(ap, first);
	coffer_filter *prev = first;
	coffer_filter *f;
	while ((f = va_arg(ap, coffer_filter *)) != NULL) {
		prev->next = f;
		prev = f;
	}
	va_end(ap);
	return (first);
}

int
coffer_filter_write(coffer_filter *f, const void *buf, size_t len, coffer_err *err)
{
	if (f->failed) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "filter %s used after it failed", f->ops->name));
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
