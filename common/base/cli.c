#include "common/base/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/version.h"

static const coffer_cli *cli_running;

const coffer_cli *
coffer_cli_current(void)
{
	return (cli_running);
}

void
coffer_cli_usage(const coffer_cli *cli, const coffer_cmd *cmd)
{
	fprintf(stderr, "usage: %s %s%s%s\n", cli->prog, cmd->name, cmd->args[0] != '\0' ? " " : "",
	    cmd->args);
}

static void
cli_help(const coffer_cli *cli, FILE *out)
{
	fprintf(out,
	    "%s: %s\n\nusage: %s COMMAND [OPTIONS]\n       %s --help | --version\n\ncommands:\n",
	    cli->prog, cli->purpose, cli->prog, cli->prog);
	for (const coffer_cmd *c = cli->cmds; c->name != NULL; c++) {
		fprintf(out, "  %s %s\n      %s\n", c->name, c->args, c->summary);
	}
	if (cli->footer != NULL) {
		fprintf(out, "\n%s", cli->footer);
	}
}

static void
cli_brief_usage(const coffer_cli *cli)
{
	fprintf(stderr, "usage: %s COMMAND [OPTIONS]; commands:", cli->prog);
	const char *last = "";
	size_t last_len = 0;
	for (const coffer_cmd *c = cli->cmds; c->name != NULL; c++) {
		size_t word = strcspn(c->name, " ");
		if (word == last_len && strncmp(c->name, last, word) == 0) {
			continue;
		}
		fprintf(stderr, " %.*s", (int)word, c->name);
		last = c->name;
		last_len = word;
	}
	fprintf(stderr, "; see %s --help\n", cli->prog);
}

int
coffer_cli_usage_error(const coffer_cmd *cmd, const char *fmt, ...)
{
	const coffer_cli *cli = cli_running;
	va_list ap;
	/* Outside coffer_cli_main (a test calling a command's parser) there is
	 * no program to name and no usage to print: the message alone. */
	fprintf(
	    stderr, "%s%s%s: ", cli != NULL ? cli->prog : "", cli != NULL ? " " : "", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cli != NULL) {
		coffer_cli_usage(cli, cmd);
	}
	return (2);
}

/* Does argv[0..] spell the (one- or two-word) command name? Returns the number
 * of words matched, or 0. */
static int
cli_match(const char *name, int argc, char **argv)
{
	const char *space = strchr(name, ' ');
	if (space == NULL) {
		return (strcmp(name, argv[0]) == 0 ? 1 : 0);
	}
	size_t first = (size_t)(space - name);
	if (strlen(argv[0]) != first || strncmp(name, argv[0], first) != 0) {
		return (0);
	}
	return (argc > 1 && strcmp(space + 1, argv[1]) == 0 ? 2 : 0);
}

static bool
cli_is_help(const char *arg)
{
	return (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0);
}

/* Is word the first word of a two-word command (a group such as "backups")? */
static bool
cli_is_group(const coffer_cli *cli, const char *word)
{
	size_t len = strlen(word);
	for (const coffer_cmd *c = cli->cmds; c->name != NULL; c++) {
		if (strncmp(c->name, word, len) == 0 && c->name[len] == ' ') {
			return (true);
		}
	}
	return (false);
}

/* The commands of one group, for its --help (stdout) and for a missing or
 * unknown subcommand (stderr). */
static void
cli_group_help(const coffer_cli *cli, const char *group, FILE *out)
{
	size_t len = strlen(group);
	fprintf(
	    out, "usage: %s %s SUBCOMMAND [OPTIONS]\n\n%s commands:\n", cli->prog, group, group);
	for (const coffer_cmd *c = cli->cmds; c->name != NULL; c++) {
		if (strncmp(c->name, group, len) == 0 && c->name[len] == ' ') {
			fprintf(out, "  %s %s\n      %s\n", c->name, c->args, c->summary);
		}
	}
	fprintf(out, "\nSee %s %s SUBCOMMAND --help for one command.\n", cli->prog, group);
}

/* One command's help: its usage and what it does. */
static void
cli_cmd_help(const coffer_cli *cli, const coffer_cmd *cmd)
{
	printf("usage: %s %s%s%s\n\n  %s\n", cli->prog, cmd->name, cmd->args[0] != '\0' ? " " : "",
	    cmd->args, cmd->summary);
	if (cli->footer != NULL) {
		printf("\n%s", cli->footer);
	}
}

/* --help or -h anywhere among a command's arguments (before a "--") asks
 * for its help, whatever else the line holds: a command never runs, reads
 * stdin or opens a config when help was asked for. */
static bool
cli_wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			return (false);
		}
		if (cli_is_help(argv[i])) {
			return (true);
		}
	}
	return (false);
}

int
coffer_cli_main(const coffer_cli *cli, int argc, char **argv)
{
	cli_running = cli;
	if (argc < 2) {
		fprintf(stderr, "%s: no command given\n", cli->prog);
		cli_brief_usage(cli);
		return (2);
	}
	bool help = false;
	if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
		if (argc == 2) {
			cli_help(cli, stdout);
			return (0);
		}
		/* "prog help backups list" is "prog backups list --help". */
		help = true;
		argc--;
		argv++;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("%s %s\n", cli->prog, COFFER_VERSION_STRING);
		return (0);
	}
	for (const coffer_cmd *c = cli->cmds; c->name != NULL; c++) {
		int words = cli_match(c->name, argc - 1, argv + 1);
		if (words > 0) {
			if (help || cli_wants_help(argc - 1 - words, argv + 1 + words)) {
				cli_cmd_help(cli, c);
				return (0);
			}
			return (c->run(c, argc - 1 - words, argv + 1 + words));
		}
	}
	if (cli_is_group(cli, argv[1])) {
		if (help || argc == 2 || cli_is_help(argv[2])) {
			if (help || argc > 2) {
				cli_group_help(cli, argv[1], stdout);
				return (0);
			}
			fprintf(stderr, "%s: %s needs a subcommand\n", cli->prog, argv[1]);
		} else {
			fprintf(
			    stderr, "%s: unknown subcommand %s %s\n", cli->prog, argv[1], argv[2]);
		}
		cli_group_help(cli, argv[1], stderr);
		return (2);
	}
	if (argv[1][0] == '-') {
		fprintf(stderr, "%s: unknown option %s before the command\n", cli->prog, argv[1]);
	} else {
		fprintf(stderr, "%s: unknown command %s\n", cli->prog, argv[1]);
	}
	cli_brief_usage(cli);
	return (2);
}

int
coffer_opts_collect(int argc, char **argv, const char *name, char *buf, size_t size)
{
	size_t used = 0, nlen = strlen(name);
	int n = 0;
	if (size == 0) {
		return (-1);
	}
	buf[0] = '\0';
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			break;
		}
		const char *v = NULL;
		if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, name, nlen) == 0) {
			if (a[2 + nlen] == '=') {
				v = a + 3 + nlen;
			} else if (a[2 + nlen] == '\0' && i + 1 < argc) {
				v = argv[++i];
			}
		}
		if (v == NULL) {
			continue;
		}
		size_t l = strlen(v);
		if (l == 0 || strchr(v, ',') != NULL || used + l + 2 > size) {
			return (-1);
		}
		if (used > 0) {
			buf[used++] = ',';
		}
		memcpy(buf + used, v, l + 1);
		used += l;
		n++;
	}
	return (n);
}

static const coffer_opt *
opts_find_long(const coffer_opt *opts, const char *name, size_t len)
{
	for (const coffer_opt *o = opts; o != NULL && o->name != NULL; o++) {
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
			return (o);
		}
	}
	return (NULL);
}

static const coffer_opt *
opts_find_short(const coffer_opt *opts, char c)
{
	for (const coffer_opt *o = opts; o != NULL && o->name != NULL; o++) {
		if (o->short_name == c) {
			return (o);
		}
	}
	return (NULL);
}

int
coffer_opts_parse(const coffer_cli *cli, const coffer_cmd *cmd, const coffer_opt *opts, int argc,
    char **argv, int *npos)
{
	int pos = 0;
	bool only_positional = false;
	for (int i = 0; i < argc; i++) {
		char *arg = argv[i];
		if (only_positional || arg[0] != '-' || arg[1] == '\0') {
			argv[pos++] = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			printf("usage: %s %s %s\n  %s\n", cli->prog, cmd->name, cmd->args,
			    cmd->summary);
			return (1);
		}
		const coffer_opt *o;
		const char *inline_value = NULL;
		if (arg[1] == '-') {
			const char *name = arg + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
			o = opts_find_long(opts, name, len);
			if (eq != NULL) {
				inline_value = eq + 1;
			}
		} else {
			o = arg[2] == '\0' ? opts_find_short(opts, arg[1]) : NULL;
		}
		if (o == NULL) {
			coffer_cli_usage_error(cmd, "unknown option %s", arg);
			return (-1);
		}
		if (o->flag != NULL) {
			if (inline_value != NULL) {
				coffer_cli_usage_error(cmd, "option --%s takes no value", o->name);
				return (-1);
			}
			*o->flag = true;
			continue;
		}
		if (inline_value == NULL) {
			if (i + 1 >= argc) {
				coffer_cli_usage_error(cmd, "option --%s needs a value", o->name);
				return (-1);
			}
			inline_value = argv[++i];
		}
		*o->value = inline_value;
	}
	*npos = pos;
	return (0);
}

int
coffer_opts_take(const char *prog, int *argc, char **argv, const char *name, const char **out,
    size_t max, size_t *n)
{
	size_t len = strlen(name);
	int w = 0;
	for (int r = 0; r < *argc; r++) {
		const char *a = argv[r];
		const char *v = NULL;
		if (strcmp(a, "--") == 0) {
			while (r < *argc) {
				argv[w++] = argv[r++];
			}
			break;
		}
		if (strncmp(a, name, len) == 0 && a[len] == '=') {
			v = a + len + 1;
		} else if (strcmp(a, name) == 0) {
			if (r + 1 >= *argc) {
				fprintf(stderr, "%s: %s needs a value\n", prog, name);
				return (-1);
			}
			v = argv[++r];
		}
		if (v == NULL) {
			argv[w++] = argv[r];
			continue;
		}
		if (*n >= max) {
			fprintf(stderr, "%s: at most %zu %s\n", prog, max, name);
			return (-1);
		}
		out[(*n)++] = v;
	}
	*argc = w;
	return (0);
}
