/* Keeping a password out of a child's command line; see agent/pg/passfile.h. */
#include "agent/pg/passfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

/* Appends key='value' with libpq's quoting. */
static size_t
put_pair(char *out, size_t n, const char *key, const char *val)
{
	n += (size_t)sprintf(out + n, "%s%s='", n > 0 ? " " : "", key);
	for (const char *p = val; *p != '\0'; p++) {
		if (*p == '\'' || *p == '\\') {
			out[n++] = '\\';
		}
		out[n++] = *p;
	}
	out[n++] = '\'';
	out[n] = '\0';
	return (n);
}

/* The passfile line: every field a wildcard but the password, whose ':'
 * and '\' are escaped as libpq reads them. */
static int
write_passfile(agent_passfile *pf, const char *password, coffer_err *err)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(pf->dir, sizeof(pf->dir), "%s/coffer-pg.XXXXXX",
	    tmp != NULL && tmp[0] == '/' && strlen(tmp) < 200 ? tmp : "/tmp");
	if (mkdtemp(pf->dir) == NULL) {
		pf->dir[0] = '\0';
		return (coffer_err_set(err, COFFER_EIO,
		    "cannot make a private directory for the database password: %s",
		    strerror(errno)));
	}
	snprintf(pf->path, sizeof(pf->path), "%s/pgpass", pf->dir);
	int fd = open(pf->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		return (coffer_err_set(err, COFFER_EIO, "cannot write a passfile in %s: %s",
		    pf->dir, strerror(errno)));
	}
	pf->written = true;
	size_t cap = 2 * strlen(password) + 16;
	char *line = malloc(cap);
	if (line == NULL) {
		close(fd);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	size_t n = (size_t)snprintf(line, cap, "*:*:*:*:");
	for (const char *p = password; *p != '\0'; p++) {
		if (*p == ':' || *p == '\\') {
			line[n++] = '\\';
		}
		line[n++] = *p;
	}
	line[n++] = '\n';
	ssize_t w = write(fd, line, n);
	explicit_bzero(line, cap);
	free(line);
	if (close(fd) != 0 || w != (ssize_t)n) {
		return (coffer_err_set(err, COFFER_EIO, "cannot write the passfile %s", pf->path));
	}
	return (0);
}

int
agent_passfile_conninfo(const char *conninfo, agent_passfile *pf, char **out, coffer_err *err)
{
	memset(pf, 0, sizeof(*pf));
	*out = NULL;
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	if (opts == NULL) {
		/* libpq's message never quotes the string, so no password in it. */
		coffer_err_set(err, COFFER_EINVAL, "not a valid libpq connection string: %s",
		    perr != NULL ? perr : "out of memory");
		PQfreemem(perr);
		return (COFFER_EINVAL);
	}
	size_t cap = 64 + sizeof(pf->path) * 2;
	const char *password = NULL;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL) {
			cap += strlen(o->keyword) + 2 * strlen(o->val) + 8;
			if (strcmp(o->keyword, "password") == 0 && o->val[0] != '\0') {
				password = o->val;
			}
		}
	}
	char *s = malloc(cap);
	if (s == NULL) {
		PQconninfoFree(opts);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	size_t n = 0;
	s[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || strcmp(o->keyword, "password") == 0 ||
		    (password != NULL && strcmp(o->keyword, "passfile") == 0)) {
			continue;
		}
		n = put_pair(s, n, o->keyword, o->val);
	}
	int rc = 0;
	if (password != NULL) {
		rc = write_passfile(pf, password, err);
		if (rc == 0) {
			put_pair(s, n, "passfile", pf->path);
		}
	}
	/* The parsed options hold the password too. */
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL && strcmp(o->keyword, "password") == 0) {
			explicit_bzero(o->val, strlen(o->val));
		}
	}
	PQconninfoFree(opts);
	if (rc != 0) {
		agent_passfile_remove(pf);
		free(s);
		return (rc);
	}
	*out = s;
	return (0);
}

void
agent_passfile_remove(agent_passfile *pf)
{
	if (pf->written) {
		unlink(pf->path);
		pf->written = false;
	}
	if (pf->dir[0] != '\0') {
		rmdir(pf->dir);
		pf->dir[0] = '\0';
	}
}
