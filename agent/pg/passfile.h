/*
 * Passfile: keeps a database password out of a child's command line.
 *
 * pg_dump and pg_restore take their connection as --dbname=CONNINFO, and a
 * command line is readable by every user of the host (/proc/PID/cmdline,
 * ps). So a conninfo that carries a password is rewritten without it, and
 * the password goes into a libpq passfile ("*:*:*:*:password", mode 0600)
 * in a fresh directory of its own (mode 0700, under $TMPDIR or /tmp) that
 * the rewritten conninfo names with passfile='...'. A passfile rather than
 * PGPASSWORD: the environment of a process is readable by its user's other
 * processes, and libpq's own docs advise against it.
 *
 * Memory: *out is the caller's (free). The passfile is removed, with its
 * directory, by agent_passfile_remove, which is safe on a passfile that was
 * never written and a second time.
 */
#ifndef COFFER_AGENT_PG_PASSFILE_H
#define COFFER_AGENT_PG_PASSFILE_H

#include <stdbool.h>

#include "common/base/error.h"

typedef struct agent_passfile {
	char dir[256];
	char path[272];
	bool written;
} agent_passfile;

/* conninfo (key=value or URI) as key='value' pairs without its password;
 * with one, the passfile is written and named in *out. COFFER_EINVAL for a
 * conninfo libpq cannot parse (the message never quotes it). */
int agent_passfile_conninfo(const char *conninfo, agent_passfile *pf, char **out, coffer_err *err);

void agent_passfile_remove(agent_passfile *pf);

#endif
