/*
 * Command-line plumbing shared by coffer-agent, coffer-coordinator and coffer:
 * a table of subcommands (one or two words), --help and --version, and a
 * strict option parser. Usage errors print one line naming the problem plus
 * the usage, and exit 2, so scripts can tell a typo from a failed backup.
 */
#ifndef COFFER_COMMON_BASE_CLI_H
#define COFFER_COMMON_BASE_CLI_H

#include <stdbool.h>
#include <stddef.h>

typedef struct coffer_cmd {
	const char *name;    /* "backup", or two words: "agents enroll" */
	const char *args;    /* synopsis of its arguments, for usage */
	const char *summary; /* one line */
	int (*run)(const struct coffer_cmd *cmd, int argc, char **argv);
} coffer_cmd;

typedef struct coffer_cli {
	const char *prog;       /* "coffer-agent" */
	const char *purpose;    /* one sentence for --help */
	const coffer_cmd *cmds; /* terminated by an entry with name == NULL */
	const char *footer;     /* extra --help text, may be NULL */
} coffer_cli;

/* Runs the subcommand named by argv; returns the process exit status. The
 * command's run gets argv starting after the subcommand's words. */
int coffer_cli_main(const coffer_cli *cli, int argc, char **argv);

typedef struct coffer_opt {
	const char *name;   /* long name without dashes: "config" */
	char short_name;    /* 'c', or 0 */
	const char **value; /* set for options with an argument, else NULL */
	bool *flag;         /* set to true for flags, else NULL */
} coffer_opt;

/* Parses options for cmd; positional arguments are moved to the front of argv
 * and their count stored in *npos. "--" ends options. On a usage error prints
 * one line and the command's usage to stderr and returns -1 (exit 2). Accepts
 * "--name value", "--name=value", "-c value"; "--help" prints the command's
 * usage and returns 1 (exit 0). */
int coffer_opts_parse(const coffer_cli *cli, const coffer_cmd *cmd, const coffer_opt *opts,
    int argc, char **argv, int *npos);

/* For an option that may be given more than once (--service A --service B):
 * joins every value of --name in argv (before a "--") with commas into buf.
 * Returns the number of values, or -1 if they do not fit or a value is
 * empty or holds a comma. coffer_opts_parse then sees only the last. */
int coffer_opts_collect(int argc, char **argv, const char *name, char *buf, size_t size);

/* For an option whose values may hold anything (paths): takes every
 * "--name VALUE" and "--name=VALUE" before a "--" out of argv into out
 * (up to max; *n counts them), so coffer_opts_parse never sees them.
 * -1 after one line on stderr (prog: what is wrong) for a missing value or
 * more than max. */
int coffer_opts_take(const char *prog, int *argc, char **argv, const char *name, const char **out,
    size_t max, size_t *n);

/* Prints "usage: prog name args" for one command. */
void coffer_cli_usage(const coffer_cli *cli, const coffer_cmd *cmd);

/* The coffer_cli currently running, for commands that report usage errors. */
const coffer_cli *coffer_cli_current(void);

/* Prints a usage error (one line + usage) and returns 2. */
int coffer_cli_usage_error(const coffer_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
