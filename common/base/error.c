#include "common/base/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

const char *
coffer_strerror(int code)
{
	switch (code) {
	case COFFER_OK:
		return ("success");
	case COFFER_EINVAL:
		return ("invalid input");
	case COFFER_ENOMEM:
		return ("out of memory");
	case COFFER_EIO:
		return ("input/output error");
	case COFFER_ENOENT:
		return ("not found");
	case COFFER_EEXIST:
		return ("already exists");
	case COFFER_EPERM:
		return ("not permitted");
	case COFFER_ECORRUPT:
		return ("corrupt data");
	case COFFER_EAUTH:
		return ("authentication failed");
	case COFFER_ETRUNC:
		return ("truncated input");
	case COFFER_ETOOBIG:
		return ("too large");
	case COFFER_EPROTO:
		return ("protocol error");
	case COFFER_EPG:
		return ("postgresql error");
	case COFFER_ECHILD:
		return ("child process failed");
	case COFFER_ECANCELED:
		return ("canceled");
	case COFFER_ETIMEDOUT:
		return ("timed out");
	case COFFER_ENOSPC:
		return ("no space left");
	case COFFER_EUNAVAIL:
		return ("unavailable");
	case COFFER_EREFUSED:
		return ("refused");
	case COFFER_EVERSION:
		return ("unsupported version");
	case COFFER_EINTERNAL:
		return ("internal error");
	}
	return ("unknown error");
}

int
coffer_err_set(coffer_err *err, int code, const char *fmt, ...)
{
	if (err == NULL) {
		return (code);
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	err->hint[0] = '\0';
	return (code);
}

int
coffer_err_hint(coffer_err *err, const char *fmt, ...)
{
	if (err == NULL) {
		return (COFFER_EINTERNAL);
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->hint, sizeof(err->hint), fmt, ap);
	va_end(ap);
	return (err->code);
}

int
coffer_err_wrap(coffer_err *err, const char *fmt, ...)
{
	if (err == NULL) {
		return (COFFER_EINTERNAL);
	}
	char prefix[COFFER_ERR_MSG_MAX];
	char old[COFFER_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Keep as much of both as fits; a cut message is better than none. */
	size_t n = strnlen(prefix, sizeof(err->msg) - 3);
	memcpy(err->msg, prefix, n);
	err->msg[n++] = ':';
	err->msg[n++] = ' ';
	size_t rest = strnlen(old, sizeof(err->msg) - n - 1);
	memcpy(err->msg + n, old, rest);
	err->msg[n + rest] = '\0';
	return (err->code);
}

int
coffer_err_errno(coffer_err *err, int errnum, const char *op, const char *path)
{
	int code;
	switch (errnum) {
	case ENOENT:
		code = COFFER_ENOENT;
		break;
	case EEXIST:
		code = COFFER_EEXIST;
		break;
	case EACCES:
	case EPERM:
	case EROFS:
		code = COFFER_EPERM;
		break;
	case ENOSPC:
	case EDQUOT:
		code = COFFER_ENOSPC;
		break;
	case ENOMEM:
		code = COFFER_ENOMEM;
		break;
	default:
		code = COFFER_EIO;
		break;
	}
	/* Callers name the operation as a verb ("open") or a gerund
	 * ("creating the directory"); both read right. */
	size_t n = strlen(op);
	const char *sp = strchr(op, ' ');
	size_t word = sp != NULL ? (size_t)(sp - op) : n;
	if (word > 3 && strncmp(op + word - 3, "ing", 3) == 0) {
		coffer_err_set(err, code, "%s %s failed: %s", op, path, strerror(errnum));
	} else {
		coffer_err_set(err, code, "cannot %s %s: %s", op, path, strerror(errnum));
	}
	switch (code) {
	case COFFER_ENOSPC:
		coffer_err_hint(err, "free space on the file system that holds %s", path);
		break;
	case COFFER_EPERM:
		coffer_err_hint(err, "check the owner and mode of %s", path);
		break;
	default:
		break;
	}
	return (code);
}

int
coffer_err_openssl(coffer_err *err, int code, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "no detail from openssl";
	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
	}
	ERR_clear_error();
	return (coffer_err_set(err, code, "%s: %s", what, buf));
}

void
coffer_err_clear(coffer_err *err)
{
	if (err != NULL) {
		err->code = 0;
		err->msg[0] = '\0';
		err->hint[0] = '\0';
	}
}

void
coffer_err_print(const char *prog, const coffer_err *err)
{
	const char *msg = err->msg[0] != '\0' ? err->msg : coffer_strerror(err->code);
	if (err->hint[0] != '\0') {
		fprintf(stderr, "%s: %s (hint: %s)\n", prog, msg, err->hint);
	} else {
		fprintf(stderr, "%s: %s\n", prog, msg);
	}
}

int
coffer_err_exit_status(int code)
{
	return (code == COFFER_EINVAL ? 2 : 1);
}
