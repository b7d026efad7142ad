/*
 * coffer-agent wal-push -c FILE PATH      (archive_command ... %p)
 * coffer-agent wal-fetch -c FILE [--repo primary|dr] [--system-identifier ID] NAME PATH
 *                                          (restore_command ... %f %p)
 * PostgreSQL runs these, reads only the exit status and copies stderr into
 * its log: every failure exits non-zero (so the archiver retries and
 * pg_stat_archiver counts it) and says why on one line. A file that is not
 * in the repository exits 1 without a word: recovery asks for files that
 * never existed (the next timeline's history, the segment after the last).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/backup/wal.h"
#include "agent/cmd/commands.h"
#include "common/base/log.h"

static int
parse(const coffer_cmd *cmd, int argc, char **argv, int want, const char **config,
    const char **repo, const char **sysid)
{
	*config = NULL;
	/* --repo and --system-identifier only for fetching: the agent never
	 * writes to the DR repository, and pushes only its own cluster's WAL. */
	const coffer_opt opts[] = {
		{ "config", 'c', config, NULL },
		{ repo != NULL ? "repo" : NULL, 0, repo, NULL },
		{ sysid != NULL ? "system-identifier" : NULL, 0, sysid, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? -1 : 2);
	}
	if (*config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	if (npos != want) {
		return (coffer_cli_usage_error(
		    cmd, "expected %d argument%s, got %d", want, want == 1 ? "" : "s", npos));
	}
	return (0);
}

int
agent_cmd_wal_push(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL;
	int rv = parse(cmd, argc, argv, 1, &config, NULL, NULL);
	if (rv != 0) {
		return (rv < 0 ? 0 : rv);
	}
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, NULL,
	    AGENT_NEED_KEYRING | AGENT_NEED_REPO_WRITE | AGENT_NEED_OUTBOX, &ctx, &err);
	if (rv == 0) {
		coffer_log_init("coffer-agent", ctx->cfg->log_level);
		agent_wal_push_result res;
		rv = agent_wal_push(ctx, argv[0], &res, &err);
	}
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent wal-push", &err);
		return (coffer_err_exit_status(rv) != 0 ? coffer_err_exit_status(rv) : 1);
	}
	return (0);
}

/* Fetches the next segments in a detached process, so recovery replays
 * this one while the following ones are on their way. Double fork: the
 * prefetcher is nobody's child to reap, and its stdio is /dev/null so it
 * holds no pipe of the server's. Failure here is never the fetch's failure:
 * recovery just asks for the segment itself. */
static void
start_prefetch(
    const char *config, const char *repo, uint64_t sysid, const char *name, const char *dest)
{
	struct stat st;
	agent_wal_kind kind;
	uint32_t tl;
	if (agent_wal_name_parse(name, &kind, &tl, NULL) != 0 || kind != AGENT_WAL_SEGMENT ||
	    stat(dest, &st) != 0) {
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		return;
	}
	if (pid > 0) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
			;
		}
		return;
	}
	if (fork() != 0) {
		_exit(0);
	}
	setsid();
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
	}
	agent_ctx *ctx = NULL;
	coffer_err err = { 0 };
	if (agent_ctx_open(config, repo, AGENT_NEED_KEYRING | AGENT_NEED_REPO, &ctx, &err) == 0) {
		(void)agent_wal_prefetch(
		    ctx, sysid, name, (uint64_t)st.st_size, AGENT_WAL_PREFETCH, &err);
		agent_ctx_close(ctx);
	}
	_exit(0);
}

int
agent_cmd_wal_fetch(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *repo = NULL, *sysid_text = NULL;
	int rv = parse(cmd, argc, argv, 2, &config, &repo, &sysid_text);
	if (rv != 0) {
		return (rv < 0 ? 0 : rv);
	}
	uint64_t sysid = 0;
	if (sysid_text != NULL) {
		char *end = NULL;
		errno = 0;
		sysid = strtoull(sysid_text, &end, 10);
		if (sysid_text[0] < '1' || sysid_text[0] > '9' || *end != '\0' || errno != 0) {
			return (coffer_cli_usage_error(cmd,
			    "--system-identifier '%s' is not a "
			    "cluster's system identifier (a positive decimal number)",
			    sysid_text));
		}
	}
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, repo, AGENT_NEED_KEYRING | AGENT_NEED_REPO, &ctx, &err);
	bool opened = rv == 0;
	if (opened) {
		coffer_log_init("coffer-agent", ctx->cfg->log_level);
		/* Without --system-identifier: the cluster this agent serves (a
		 * standby of it, say). A restore names the backup's own. */
		if (sysid == 0) {
			rv = agent_wal_system_identifier(ctx->cfg, &sysid, &err);
		}
		if (rv == 0) {
			rv = agent_wal_fetch(ctx, sysid, argv[0], argv[1], &err);
		}
	}
	agent_ctx_close(ctx);
	if (rv == 0) {
		start_prefetch(config, repo, sysid, argv[0], argv[1]);
	}
	if (rv == COFFER_ENOENT && opened) {
		return (1);
	}
	if (rv != 0) {
		coffer_err_print("coffer-agent wal-fetch", &err);
		return (coffer_err_exit_status(rv) != 0 ? coffer_err_exit_status(rv) : 1);
	}
	return (0);
}
