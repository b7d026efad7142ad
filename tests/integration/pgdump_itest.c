/*
 * Driver for tests/integration/pgdump.sh: the agent's PostgreSQL side of a
 * logical backup against a live server.
 *
 *   pgdump_itest snapshot CONNINFO
 *	opens a snapshot, prints its metadata and row counts, closes it.
 *   pgdump_itest dump CONNINFO OUTFILE [--pg-dump PATH] [--extra-opts WORDS]
 *		[--deadline-ms N] [--grace-ms N] [--cancel-after-ms N]
 *		[--pause-file FILE] [--timeout S]
 *	opens a snapshot and prints it as above; with --pause-file, creates
 *	FILE and waits until the script removes it (so the script can change
 *	the database while the snapshot is held); then runs pg_dump in that
 *	snapshot into OUTFILE through SHA-256 -> fd sink, and prints the
 *	digest and byte count. SIGUSR1 cancels the dump, as a signal handler
 *	in the daemon would.
 *   pgdump_itest rowcounts CONNINFO
 *   pgdump_itest dbexists CONNINFO NAME      prints "yes" or "no"
 *   pgdump_itest createdb CONNINFO NAME
 *   pgdump_itest hastables CONNINFO          prints "yes" or "no"
 *
 * Output lines are "key value" or "table<TAB>schema<TAB>name<TAB>rows".
 * Failures print "error <code>: <message>" and "hint: <hint>" on stderr and
 * exit 1; usage errors exit 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/pg/child.h"
#include "agent/pg/dump.h"
#include "agent/pg/pg.h"
#include "common/base/clock.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

static agent_cancel *the_cancel;

static const char *
code_name(int code)
{
	switch (code) {
	case COFFER_EINVAL:
		return ("EINVAL");
	case COFFER_ENOMEM:
		return ("ENOMEM");
	case COFFER_EIO:
		return ("EIO");
	case COFFER_ENOENT:
		return ("ENOENT");
	case COFFER_EEXIST:
		return ("EEXIST");
	case COFFER_EPERM:
		return ("EPERM");
	case COFFER_EAUTH:
		return ("EAUTH");
	case COFFER_ETOOBIG:
		return ("ETOOBIG");
	case COFFER_EPROTO:
		return ("EPROTO");
	case COFFER_EPG:
		return ("EPG");
	case COFFER_ECHILD:
		return ("ECHILD");
	case COFFER_ECANCELED:
		return ("ECANCELED");
	case COFFER_ETIMEDOUT:
		return ("ETIMEDOUT");
	case COFFER_ENOSPC:
		return ("ENOSPC");
	case COFFER_EUNAVAIL:
		return ("EUNAVAIL");
	case COFFER_EVERSION:
		return ("EVERSION");
	case COFFER_EINTERNAL:
		return ("EINTERNAL");
	}
	return ("E?");
}

static int
report(const coffer_err *err)
{
	fprintf(stderr, "error %s: %s\n", code_name(err->code), err->msg);
	if (err->hint[0] != '\0') {
		fprintf(stderr, "hint: %s\n", err->hint);
	}
	return (1);
}

static int
usage(void)
{
	fprintf(stderr,
	    "usage: pgdump_itest snapshot|dump|rowcounts|dbexists|createdb|hastables "
	    "CONNINFO ... (see the source)\n");
	return (2);
}

static void
print_tables(const agent_pg_tables *t)
{
	for (size_t i = 0; i < t->n; i++) {
		printf("table\t%s\t%s\t%" PRId64 "\n", t->v[i].schema, t->v[i].name, t->v[i].rows);
	}
}

static void
print_snapshot(const agent_pg_snapshot *s)
{
	const agent_pg_meta *m = agent_pg_snapshot_meta(s);
	printf("snapshot %s\n", agent_pg_snapshot_id(s));
	printf("server_version_num %d\n", m->server_version_num);
	printf("server_version %s\n", m->server_version);
	printf("system_identifier %s\n", m->system_identifier);
	printf("database %s\n", m->database);
	printf("database_size %" PRId64 "\n", m->database_size);
	printf("in_recovery %d\n", m->in_recovery ? 1 : 0);
	printf("lsn %s\n", m->lsn);
	print_tables(agent_pg_snapshot_tables(s));
	fflush(stdout);
}

static void
on_usr1(int sig)
{
	(void)sig;
	agent_cancel_trigger(the_cancel);
}

static void *
cancel_later(void *arg)
{
	long ms = *(long *)arg;
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
	agent_cancel_trigger(the_cancel);
	return (NULL);
}

static int
wait_pause(const char *path, coffer_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "creating", path));
	}
	close(fd);
	for (int i = 0; i < 2400; i++) { /* two minutes at most */
		if (access(path, F_OK) != 0) {
			return (0);
		}
		usleep(50 * 1000);
	}
	return (coffer_err_set(err, COFFER_ETIMEDOUT, "nobody removed the pause file %s", path));
}

static int
run_dump(int argc, char **argv)
{
	if (argc < 2) {
		return (usage());
	}
	const char *conninfo = argv[0];
	const char *outfile = argv[1];
	const char *pg_dump = "pg_dump";
	const char *extra = NULL;
	const char *pause = NULL;
	long deadline_ms = 0;
	long grace_ms = 0;
	long cancel_ms = -1;
	int timeout_s = 10;
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc) {
			return (usage());
		}
		const char *o = argv[i];
		const char *v = argv[++i];
		if (strcmp(o, "--pg-dump") == 0) {
			pg_dump = v;
		} else if (strcmp(o, "--extra-opts") == 0) {
			extra = v;
		} else if (strcmp(o, "--pause-file") == 0) {
			pause = v;
		} else if (strcmp(o, "--deadline-ms") == 0) {
			deadline_ms = atol(v);
		} else if (strcmp(o, "--grace-ms") == 0) {
			grace_ms = atol(v);
		} else if (strcmp(o, "--cancel-after-ms") == 0) {
			cancel_ms = atol(v);
		} else if (strcmp(o, "--timeout") == 0) {
			timeout_s = atoi(v);
		} else {
			return (usage());
		}
	}

	coffer_err err = { 0 };
	agent_pg_snapshot *snap = NULL;
	coffer_filter *hash = NULL;
	coffer_filter *sink = NULL;
	char **dargv = NULL;
	int fd = -1;
	int rv = agent_cancel_new(&the_cancel, &err);
	if (rv == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_usr1;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
		rv = agent_pg_snapshot_open(conninfo, timeout_s, &snap, &err);
	}
	if (rv == 0) {
		print_snapshot(snap);
		if (pause != NULL) {
			rv = wait_pause(pause, &err);
		}
	}
	if (rv == 0) {
		rv = agent_dump_argv(
		    pg_dump, agent_pg_snapshot_id(snap), conninfo, extra, &dargv, &err);
	}
	if (rv == 0) {
		fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			rv = coffer_err_errno(&err, errno, "opening", outfile);
		}
	}
	if (rv == 0 && (sink = coffer_fd_sink_new(fd, &err)) == NULL) {
		rv = err.code;
	}
	if (rv == 0) {
		coffer_fd_sink_set_name(sink, outfile);
		if ((hash = coffer_sha256_filter_new(sink, &err)) == NULL) {
			rv = err.code; /* and sink is gone with it */
		}
	}
	pthread_t th;
	bool have_thread = false;
	agent_child_result res;
	if (rv == 0) {
		if (cancel_ms >= 0) {
			have_thread = pthread_create(&th, NULL, cancel_later, &cancel_ms) == 0;
		}
		char window[64];
		snprintf(window, sizeof(window), "--deadline-ms %ld", deadline_ms);
		agent_child_spec spec = {
			.argv = (const char *const *)dargv,
			.name = "pg_dump",
			.stdout_chain = hash,
			.deadline_ms =
			    deadline_ms > 0 ? coffer_clock_monotonic_ms() + deadline_ms : 0,
			.deadline_what = window,
			.kill_grace_ms = grace_ms,
			.cancel = the_cancel,
			.not_found_hint =
			    "install the PostgreSQL client, or set [postgres] bin_dir to "
			    "the directory that holds pg_dump",
		};
		rv = agent_child_run(&spec, &res, &err);
		printf("stdout_bytes %" PRIu64 "\n", res.stdout_bytes);
		printf("stderr_len %zu\n", res.stderr_len);
		printf("wall_ms %" PRId64 "\n", res.wall_ms);
		if (have_thread) {
			pthread_join(th, NULL);
		}
	}
	if (rv == 0) {
		uint8_t d[COFFER_SHA256_LEN];
		char hex[COFFER_SHA256_HEX_LEN + 1];
		coffer_sha256_filter_digest(hash, d);
		coffer_hex_encode(d, sizeof(d), hex);
		printf("sha256 %s\n", hex);
		printf("bytes %" PRIu64 "\n", coffer_fd_sink_bytes(sink));
	}
	fflush(stdout);
	coffer_filter_free_chain(hash); /* sink exists only linked after hash */
	if (fd >= 0) {
		close(fd);
	}
	agent_dump_argv_free(dargv);
	agent_pg_snapshot_close(snap);
	signal(SIGUSR1, SIG_DFL);
	agent_cancel_free(the_cancel);
	return (rv == 0 ? 0 : report(&err));
}

int
main(int argc, char **argv)
{
	if (argc < 3) {
		return (usage());
	}
	signal(SIGPIPE, SIG_IGN);
	const char *cmd = argv[1];
	const char *conninfo = argv[2];
	coffer_err err = { 0 };
	int rv;
	if (strcmp(cmd, "snapshot") == 0) {
		agent_pg_snapshot *snap;
		rv = agent_pg_snapshot_open(conninfo, 10, &snap, &err);
		if (rv == 0) {
			print_snapshot(snap);
			agent_pg_snapshot_close(snap);
		}
	} else if (strcmp(cmd, "dump") == 0) {
		return (run_dump(argc - 2, argv + 2));
	} else if (strcmp(cmd, "rowcounts") == 0) {
		agent_pg_tables t;
		rv = agent_pg_row_counts(conninfo, 10, &t, &err);
		if (rv == 0) {
			print_tables(&t);
			agent_pg_tables_fini(&t);
		}
	} else if (strcmp(cmd, "dbexists") == 0 && argc == 4) {
		bool yes;
		rv = agent_pg_database_exists(conninfo, 10, argv[3], &yes, &err);
		if (rv == 0) {
			printf("%s\n", yes ? "yes" : "no");
		}
	} else if (strcmp(cmd, "createdb") == 0 && argc == 4) {
		rv = agent_pg_database_create(conninfo, 10, argv[3], &err);
	} else if (strcmp(cmd, "hastables") == 0) {
		bool yes;
		rv = agent_pg_has_user_tables(conninfo, 10, &yes, &err);
		if (rv == 0) {
			printf("%s\n", yes ? "yes" : "no");
		}
	} else {
		return (usage());
	}
	return (rv == 0 ? 0 : report(&err));
}
