#include "common/stream/progress.h"

#include "common/base/fmt.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	bool json;
	bool drawn;
} progress_filter;

static _Atomic int progress_mode = COFFER_PROGRESS_AUTO;

void
coffer_progress_set_mode(coffer_progress_mode mode)
{
	atomic_store(&progress_mode, (int)mode);
}

int
coffer_progress_mode_parse(const char *text, coffer_progress_mode *mode)
{
	if (strcmp(text, "json") == 0) {
		*mode = COFFER_PROGRESS_JSON;
	} else if (strcmp(text, "tty") == 0 || strcmp(text, "auto") == 0) {
		*mode = COFFER_PROGRESS_AUTO;
	} else if (strcmp(text, "off") == 0 || strcmp(text, "none") == 0) {
		*mode = COFFER_PROGRESS_OFF;
	} else {
		return (COFFER_EINVAL);
	}
	return (0);
}

bool
coffer_progress_wanted(void)
{
	int mode = atomic_load(&progress_mode);
	return (mode == COFFER_PROGRESS_JSON ||
	    (mode == COFFER_PROGRESS_AUTO && isatty(STDERR_FILENO) == 1));
}

/* One JSON line; the phase is a fixed label from our own code. */
static void
emit_json(progress_filter *p, int64_t now, bool done)
{
	double secs = (double)(now - p->started_ms) / 1000.0;
	double per_s = secs > 0 ? (double)p->bytes / secs : 0;
	char eta[32] = "null";
	if (p->expected > p->bytes && per_s > 0) {
		snprintf(eta, sizeof(eta), "%.0f", (double)(p->expected - p->bytes) / per_s);
	} else if (done || (p->expected > 0 && p->bytes >= p->expected)) {
		snprintf(eta, sizeof(eta), "0");
	}
	fprintf(stderr,
	    "{\"event\":\"progress\",\"phase\":\"%s\",\"bytes_done\":%llu,"
	    "\"bytes_total\":%llu,\"rate_bytes_per_s\":%.0f,\"eta_s\":%s,\"done\":%s}\n",
	    p->what, (unsigned long long)p->bytes, (unsigned long long)p->expected, per_s, eta,
	    done ? "true" : "false");
	fflush(stderr);
	p->drawn = true;
	p->drawn_ms = now;
}

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
	if (p->tty || p->json) {
		int64_t now = coffer_clock_monotonic_ms();
		if (now - p->drawn_ms >= 1000 || (p->json && !p->drawn)) {
			if (p->json) {
				emit_json(p, now, false);
			} else {
				draw(p, now);
			}
		}
	}
	return (coffer_filter_write(f->next, buf, len, err));
}

static int
progress_finish(coffer_filter *f, coffer_err *err)
{
	(void)err;
	progress_filter *p = (progress_filter *)f;
	if (p->json) {
		emit_json(p, coffer_clock_monotonic_ms(), true);
		return (0);
	}
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
	int mode = atomic_load(&progress_mode);
	p->json = mode == COFFER_PROGRESS_JSON;
	p->tty = mode == COFFER_PROGRESS_AUTO && isatty(STDERR_FILENO) == 1;
	p->started_ms = coffer_clock_monotonic_ms();
	p->drawn_ms = p->started_ms;
	return (&p->base);
}
