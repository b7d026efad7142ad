/*
 * Errors: every fallible function returns 0 or a negative COFFER_E* code and,
 * when the caller passes a coffer_err, fills in one line that says what is
 * wrong and one that says what to do about it (pgBackRest's message + hint).
 * There is no global error state; the struct lives on the caller's stack.
 */
#ifndef COFFER_COMMON_BASE_ERROR_H
#define COFFER_COMMON_BASE_ERROR_H

#include <stddef.h>

enum {
	COFFER_OK = 0,
	COFFER_EINVAL = -1, /* bad input: config, command line, arguments */
	COFFER_ENOMEM = -2,
	COFFER_EIO = -3,        /* read, write, fsync failed */
	COFFER_ENOENT = -4,     /* no such file, object, key, backup */
	COFFER_EEXIST = -5,     /* already exists */
	COFFER_EPERM = -6,      /* not allowed: mode bits, capability, role */
	COFFER_ECORRUPT = -7,   /* stored data failed a digest or format check */
	COFFER_EAUTH = -8,      /* authentication failed: tag, signature, key */
	COFFER_ETRUNC = -9,     /* input ended early */
	COFFER_ETOOBIG = -10,   /* over a configured size limit */
	COFFER_EPROTO = -11,    /* a peer broke the protocol */
	COFFER_EPG = -12,       /* PostgreSQL said no */
	COFFER_ECHILD = -13,    /* a child process failed */
	COFFER_ECANCELED = -14, /* stopped on request (signal, deadline) */
	COFFER_ETIMEDOUT = -15,
	COFFER_ENOSPC = -16,
	COFFER_EUNAVAIL = -17,  /* a remote service is unreachable */
	COFFER_EREFUSED = -18,  /* policy refuses the request */
	COFFER_EVERSION = -19,  /* a format or schema version we do not know */
	COFFER_EINTERNAL = -20, /* a bug: an invariant did not hold */
};

#define COFFER_ERR_MSG_MAX  512
#define COFFER_ERR_HINT_MAX 256

typedef struct coffer_err {
	int code;
	char msg[COFFER_ERR_MSG_MAX];
	char hint[COFFER_ERR_HINT_MAX];
} coffer_err;

/* A short, fixed name for a code ("invalid input", "corrupt data"). */
const char *coffer_strerror(int code);

/* Sets code and message; returns code so callers can `return coffer_err_set(...)`.
 * err may be NULL. Clears any earlier hint. */
int coffer_err_set(coffer_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds the "what to do" line. Returns err->code (or COFFER_EINTERNAL if err is NULL). */
int coffer_err_hint(coffer_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the message with context ("reading manifest: ..."). Returns err->code. */
int coffer_err_wrap(coffer_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the error from errno, naming the operation and path. */
int coffer_err_errno(coffer_err *err, int errnum, const char *op, const char *path);

/* Sets the error from OpenSSL's error queue (and clears the queue). */
int coffer_err_openssl(coffer_err *err, int code, const char *what);

/* Resets to "no error". */
void coffer_err_clear(coffer_err *err);

/* One line "prog: message (hint: ...)" on stderr. */
void coffer_err_print(const char *prog, const coffer_err *err);

/* Maps an error code to a process exit status: 2 for usage/config errors, 1 otherwise. */
int coffer_err_exit_status(int code);

#endif
