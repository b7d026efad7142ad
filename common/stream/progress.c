#include "common/stream/progress.h"

#include "common/base/fmt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/base/clock.h"

typedef struct progress_filter {
	coffer_filter base;
	const char *what;
	uint64_t expected;
	uint64_t bytes;
	int64_t started_ms;
	int64_t drawn_ms;
	bool tty;
	bool drawn;
} progress_filter;

static void
draw(progress_filter *p, int64_t now)
{
	char done[COFFER_FMT_BYTES_SIZE], rate[COFFER_FMT_BYTES_SIZE], eta[48] = "";
	double secs = (double)(now - p->started_ms) / 1000.0;
	double per_s = secs > 0 ? (double)p->bytes / secs : 0;
	coffer_fmt_bytes(done, (double)p->bytes);
	coffer_fmt_bytes(rate, per_s);
	/* The expected size is an estimate (a dump is not the size of the
	 * database), so the ETA is only shown while it still makes sense. */
	if (p->expected > p->bytes && per_s > 0) {
		snprintf(
		    eta, sizeof(eta), ", ~%.0fs left", (double)(p->expected - p->bytes) / per_s);
	}
	fprintf(stderr, "\r%s: %s, %s/s%s\033[K", p->what, done, rate, eta);
	fflush(stderr);
	p->drawn = true;
	p->drawn_ms = now;
}

static int
progress_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	progress_filter *p = (progress_filter *)f;
	p->bytes += len;
	if (p->tty) {
		int64_t now = coffer_clock_monotonic_ms();
		if (now - p->drawn_ms >= 1000) {
			draw(p, now);
		}
	}
	return (coffer_filter_write(f->next, buf, len, err));
}

static int
progress_finish(coffer_filter *f, coffer_err *err)
{
	(void)err;
	progress_filter *p = (progress_filter *)f;
	if (p->tty && p->drawn) {
		draw(p, coffer_clock_monotonic_ms());
		fputc('\n', stderr);
	}
	return (0);
}

static void
progress_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops progress_ops = {
	.name = "progress",
	.write = progress_write,
	.finish = progress_finish,
	.destroy = progress_destroy,
};

coffer_filter *
coffer_progress_filter_new(
    coffer_filter *next, const char *what, uint64_t expected, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	progress_filter *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	p->base.ops = &progress_ops;
	p->base.next = next;
	p->what = what;
	p->expected = expected;
	p->tty = isatty(STDERR_FILENO) == 1;
	p->started_ms = coffer_clock_monotonic_ms();
	p->drawn_ms = p->started_ms;
	return (&p->base);
}
