/*
 * What one agent command works with, opened from agent.conf in one place so
 * every command refuses the same bad setups the same way: the config, the
 * key ring, the signing key, one repository, and the outbox. Each command
 * asks only for what it needs (a `list` needs no key ring), and the
 * repository handle never has the delete capability: an agent cannot remove
 * backups, whatever its code does.
 */
#ifndef COFFER_AGENT_CONTEXT_CONTEXT_H
#define COFFER_AGENT_CONTEXT_CONTEXT_H

#include "agent/context/agent_config.h"
#include "agent/outbox/outbox.h"
#include "common/base/error.h"
#include "common/crypto/keyring.h"
#include "common/crypto/sign.h"
#include "common/repo/repo.h"

enum {
	AGENT_NEED_KEYRING = 0x01, /* encrypt or decrypt */
	AGENT_NEED_SIGN = 0x02,    /* sign manifests (implies the public key) */
	AGENT_NEED_VERIFY = 0x04,  /* check manifest signatures: the own key's public
	                            * half if the key is there, and the coordinator's
	                            * attestations with [keys] coordinator_public_key */
	AGENT_NEED_REPO = 0x08,    /* read the repository */
	AGENT_NEED_REPO_WRITE = 0x10,
	AGENT_NEED_OUTBOX = 0x20,
};

typedef struct agent_ctx {
	agent_config *cfg;
	const char *repo_name; /* "primary" or "dr" */
	coffer_keyring *ring;
	coffer_sign_key *sign_key;
	coffer_sign_pubkey *sign_pub;  /* NULL when only verifying and no signing key */
	coffer_sign_pubkey *coord_pub; /* [keys] coordinator_public_key; NULL if unset */
	coffer_repo *repo;
	agent_outbox *outbox;
} agent_ctx;

/* Opens [repository.<repo_name>] ("primary" or "dr") of cfg, read-only
 * or with AGENT_NEED_REPO_WRITE in needs; never with delete. */
int agent_repo_open(const agent_config *cfg, const char *repo_name, unsigned needs,
    coffer_repo **out, coffer_err *err);

/* repo_name NULL means "primary". */
int agent_ctx_open(const char *config_path, const char *repo_name, unsigned needs, agent_ctx **out,
    coffer_err *err);
void agent_ctx_close(agent_ctx *ctx);

#endif
