/*
 * coffer-agent seal / unseal: the sealed stream format (common/crypto/seal.h) on
 * stdin and stdout, for operators and scripts that need to open a backup
 * object by hand or seal something the same way the agent does.
 *
 * unseal writes each chunk as soon as it is authenticated, so on failure
 * stdout may already hold the authentic part before the damage; the exit
 * status (1) and the message on stderr say the output is incomplete.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/cmd/commands.h"
#include "common/base/error.h"
#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"
#include "common/stream/sink.h"

/* "65536", "64k", "1m" (binary units). Returns 0 or -1. */
static int
seal_parse_size(const char *text, size_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || text[0] == '-') {
		return (-1);
	}
	unsigned long long mult = 1;
	if (*end == 'k' || *end == 'K') {
		mult = 1024;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		mult = 1024 * 1024;
		end++;
	}
	if (*end != '\0' || v > COFFER_SEAL_CHUNK_MAX / mult) {
		return (-1);
	}
	*out = (size_t)(v * mult);
	return (0);
}

/* The end of both chains: standard output. */
static coffer_filter *
seal_stdout(coffer_err *err)
{
	/* A closed stdout must be an error message, not a silent SIGPIPE death. */
	signal(SIGPIPE, SIG_IGN);
	coffer_filter *sink = coffer_fd_sink_new(STDOUT_FILENO, err);
	if (sink != NULL) {
		coffer_fd_sink_set_name(sink, "standard output");
	}
	return (sink);
}

/* Runs stdin through chain (NULL: building it failed, err says why), then
 * frees it. */
static int
seal_run(const char *prog, coffer_filter *chain, coffer_err *err)
{
	if (chain == NULL) {
		coffer_err_print(prog, err);
		return (1);
	}
	int rv = coffer_filter_pump_fd(STDIN_FILENO, chain, 0, err);
	coffer_filter_free_chain(chain);
	if (rv != 0) {
		coffer_err_print(prog, err);
		return (1);
	}
	return (0);
}

static int
seal_load_ring(const char *prog, const char *path, coffer_keyring **ring, coffer_err *err)
{
	int rv = coffer_keyring_load(path, ring, err);
	if (rv != 0) {
		coffer_err_print(prog, err);
		return (1);
	}
	return (0);
}

int
agent_cmd_seal(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *keyring = NULL;
	const char *key_id = NULL;
	const char *chunk_text = NULL;
	const coffer_opt opts[] = {
		{ "keyring", 'k', &keyring, NULL },
		{ "key-id", 0, &key_id, NULL },
		{ "chunk-size", 0, &chunk_text, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(
		    cmd, "unexpected argument %s (input is stdin)", argv[0]));
	}
	if (keyring == NULL) {
		return (coffer_cli_usage_error(cmd, "--keyring FILE is required"));
	}
	size_t chunk = 0;
	if (chunk_text != NULL &&
	    (seal_parse_size(chunk_text, &chunk) != 0 || chunk < COFFER_SEAL_CHUNK_MIN)) {
		return (coffer_cli_usage_error(cmd,
		    "--chunk-size %s is not a size from %zu to %zu "
		    "bytes (suffixes k and m allowed)",
		    chunk_text, COFFER_SEAL_CHUNK_MIN, COFFER_SEAL_CHUNK_MAX));
	}
	const char *prog = "coffer-agent seal";
	coffer_err err;
	coffer_err_clear(&err);
	coffer_keyring *ring = NULL;
	if (seal_load_ring(prog, keyring, &ring, &err) != 0) {
		return (1);
	}
	coffer_filter *f = coffer_seal_filter_new(seal_stdout(&err), ring, key_id, chunk, &err);
	coffer_keyring_free(ring); /* the seal filter keeps only the data key */
	return (seal_run(prog, f, &err));
}

int
agent_cmd_unseal(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *keyring = NULL;
	const coffer_opt opts[] = {
		{ "keyring", 'k', &keyring, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(
		    cmd, "unexpected argument %s (input is stdin)", argv[0]));
	}
	if (keyring == NULL) {
		return (coffer_cli_usage_error(cmd, "--keyring FILE is required"));
	}
	const char *prog = "coffer-agent unseal";
	coffer_err err;
	coffer_err_clear(&err);
	coffer_keyring *ring = NULL;
	if (seal_load_ring(prog, keyring, &ring, &err) != 0) {
		return (1);
	}
	rv = seal_run(prog, coffer_unseal_filter_new(seal_stdout(&err), ring, &err), &err);
	coffer_keyring_free(ring);
	return (rv);
}
