/*
 * fd, buffer and discard sinks, and the fd pump. See common/stream/sink.h for the
 * promises.
 *
 * fsync discipline: a failed fsync is reported and never retried, because
 * after a failure Linux may have dropped the dirty pages and marked them
 * clean, so a second fsync can succeed without the data being on disk
 * (PostgreSQL's "fsyncgate", 2018). The caller must treat the object as lost.
 */
#include "common/stream/sink.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PUMP_DEFAULT_BUF (128 * 1024)
#define BUFFER_SINK_MIN  4096

struct fd_sink {
	coffer_filter base; /* first: the chain sees only this */
	int fd;
	bool fsync;
	uint64_t bytes;
	char name[128];
};

struct buffer_sink {
	coffer_filter base;
	uint8_t *data;
	size_t len;
	size_t cap; /* bytes allocated, including room for the NUL */
	size_t max;
};

/* Blocks until fd is ready for `events`, so non-blocking fds (a pipe from
 * uv_spawn, a socket) work like blocking ones. */
static int
wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;
	do {
		n = poll(&p, 1, -1);
	} while (n < 0 && errno == EINTR);
	return (n < 0 ? -1 : 0);
}

static int
fd_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct fd_sink *s = (struct fd_sink *)f;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(s->fd, buf + done, len - done);
		if (n > 0) {
			done += (size_t)n;
			s->bytes += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(s->fd, POLLOUT) == 0) {
				continue;
			}
		}
		if (n < 0 && errno == EPIPE) {
			coffer_err_set(err, COFFER_EIO,
			    "cannot write %s: the reading end was closed (broken pipe) after %llu "
			    "bytes",
			    s->name, (unsigned long long)s->bytes);
			coffer_err_hint(err,
			    "check why the process reading the output exited "
			    "early; its own error says more");
			return (COFFER_EIO);
		}
		if (n == 0) {
			/* write(2) returning 0 for a non-zero length is not an
			 * error errno describes; refuse it rather than spin. */
			return (coffer_err_set(
			    err, COFFER_EIO, "cannot write %s: it accepted no bytes", s->name));
		}
		return (coffer_err_errno(err, errno, "write", s->name));
	}
	return (0);
}

static int
fd_finish(coffer_filter *f, coffer_err *err)
{
	struct fd_sink *s = (struct fd_sink *)f;
	if (!s->fsync || fsync(s->fd) == 0) {
		return (0);
	}
	int e = errno;
	struct stat st;
	if ((e == EINVAL || e == EROFS) && fstat(s->fd, &st) == 0 && !S_ISREG(st.st_mode) &&
	    !S_ISDIR(st.st_mode)) {
		return (0);
	}
	return (coffer_err_errno(err, e, "fsync", s->name));
}

static void
fd_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops fd_sink_ops = {
	.name = "fd-sink",
	.write = fd_write,
	.finish = fd_finish,
	.destroy = fd_destroy,
};

coffer_filter *
coffer_fd_sink_new(int fd, coffer_err *err)
{
	if (fd < 0) {
		coffer_err_set(
		    err, COFFER_EINTERNAL, "fd sink given the invalid descriptor %d", fd);
		return (NULL);
	}
	struct fd_sink *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate an fd sink");
		return (NULL);
	}
	s->base.ops = &fd_sink_ops;
	s->fd = fd;
	snprintf(s->name, sizeof(s->name), "file descriptor %d", fd);
	return (&s->base);
}

void
coffer_fd_sink_set_name(coffer_filter *f, const char *name)
{
	if (f != NULL && f->ops == &fd_sink_ops && name != NULL) {
		struct fd_sink *s = (struct fd_sink *)f;
		snprintf(s->name, sizeof(s->name), "%s", name);
	}
}

void
coffer_fd_sink_set_fsync(coffer_filter *f, bool on)
{
	if (f != NULL && f->ops == &fd_sink_ops) {
		((struct fd_sink *)f)->fsync = on;
	}
}

uint64_t
coffer_fd_sink_bytes(const coffer_filter *f)
{
	if (f == NULL || f->ops != &fd_sink_ops) {
		return (0);
	}
	return (((const struct fd_sink *)f)->bytes);
}

static int
buffer_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct buffer_sink *b = (struct buffer_sink *)f;
	if (len > b->max - b->len) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "output is larger than the in-memory limit of %zu bytes", b->max);
		coffer_err_hint(err,
		    "this object is unexpectedly large; check its source, or "
		    "stream it to a file instead");
		return (COFFER_ETOOBIG);
	}
	size_t need = b->len + len + 1;
	if (need > b->cap) {
		/* Doubling keeps appends amortised O(1); the cap at max + 1
		 * keeps the promise that memory never exceeds the limit. */
		size_t cap = b->cap < BUFFER_SINK_MIN ? BUFFER_SINK_MIN : b->cap;
		while (cap < need) {
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		}
		/* need <= max + 1 was checked above, so this never cuts below it. */
		if (cap > b->max + 1) {
			cap = b->max + 1;
		}
		uint8_t *p = realloc(b->data, cap);
		if (p == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM,
			    "cannot grow an in-memory buffer to %zu bytes", cap));
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, buf, len);
	b->len += len;
	b->data[b->len] = '\0';
	return (0);
}

static int
nothing_to_finish(coffer_filter *f, coffer_err *err)
{
	(void)f;
	(void)err;
	return (0);
}

static void
buffer_destroy(coffer_filter *f)
{
	struct buffer_sink *b = (struct buffer_sink *)f;
	free(b->data);
	free(b);
}

static const coffer_filter_ops buffer_sink_ops = {
	.name = "buffer-sink",
	.write = buffer_write,
	.finish = nothing_to_finish,
	.destroy = buffer_destroy,
};

coffer_filter *
coffer_buffer_sink_new(size_t max, coffer_err *err)
{
	if (max == SIZE_MAX) {
		coffer_err_set(err, COFFER_EINVAL, "in-memory buffer limit is too large");
		return (NULL);
	}
	struct buffer_sink *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a buffer sink");
		return (NULL);
	}
	b->base.ops = &buffer_sink_ops;
	b->max = max;
	return (&b->base);
}

const uint8_t *
coffer_buffer_sink_data(const coffer_filter *f, size_t *len)
{
	if (f == NULL || f->ops != &buffer_sink_ops) {
		if (len != NULL) {
			*len = 0;
		}
		return (NULL);
	}
	const struct buffer_sink *b = (const struct buffer_sink *)f;
	if (len != NULL) {
		*len = b->len;
	}
	/* An empty sink has no allocation yet; callers still get a valid,
	 * NUL-terminated empty string. */
	return (b->data != NULL ? b->data : (const uint8_t *)"");
}

static int
discard_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	(void)f;
	(void)buf;
	(void)len;
	(void)err;
	return (0);
}

static void
discard_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops discard_sink_ops = {
	.name = "discard-sink",
	.write = discard_write,
	.finish = nothing_to_finish,
	.destroy = discard_destroy,
};

coffer_filter *
coffer_discard_sink_new(coffer_err *err)
{
	coffer_filter *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a discard sink");
		return (NULL);
	}
	f->ops = &discard_sink_ops;
	return (f);
}

int
coffer_filter_pump_fd(int fd, coffer_filter *chain, size_t bufsize, coffer_err *err)
{
	if (chain == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "pump given no filter chain"));
	}
	if (bufsize == 0) {
		bufsize = PUMP_DEFAULT_BUF;
	}
	uint8_t *buf = malloc(bufsize);
	if (buf == NULL) {
		return (coffer_err_set(
		    err, COFFER_ENOMEM, "cannot allocate a %zu-byte read buffer", bufsize));
	}
	int rv = 0;
	for (;;) {
		ssize_t n = read(fd, buf, bufsize);
		if (n > 0) {
			rv = coffer_filter_write(chain, buf, (size_t)n, err);
			if (rv != 0) {
				goto done;
			}
			continue;
		}
		if (n == 0) {
			break;
		}
		if (errno == EINTR) {
			continue;
		}
		if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(fd, POLLIN) == 0) {
			continue;
		}
		char what[64];
		snprintf(what, sizeof(what), "file descriptor %d", fd);
		rv = coffer_err_errno(err, errno, "read", what);
		goto done;
	}
	rv = coffer_filter_finish(chain, err);
done:
	free(buf);
	return (rv);
}
