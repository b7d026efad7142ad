#include "agent/context/context.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int
agent_repo_open(const agent_config *cfg, const char *repo_name, unsigned needs, coffer_repo **out,
    coffer_err *err)
{
	const agent_repo_config *rc =
	    strcmp(repo_name, "dr") == 0 ? &cfg->repo_dr : &cfg->repo_primary;
	if (!rc->present) {
		return (coffer_err_set(err, COFFER_EINVAL, "%s: no [repository.%s] section",
		            coffer_config_path(cfg->ini), repo_name),
		    coffer_err_hint(err,
		        "add [repository.%s] to the agent's config, or use "
		        "--repo primary",
		        repo_name));
	}
	coffer_repo_config repo_cfg = {
		.type = rc->type == AGENT_REPO_S3 ? "s3" : "posix",
		.path = rc->path,
		.endpoint = rc->endpoint,
		.region = rc->region,
		.bucket = rc->bucket,
		.prefix = rc->prefix,
		.access_key = rc->access_key,
		.secret_key = rc->secret_key,
		.insecure_http = rc->insecure_http,
		.session_token = rc->session_token,
		.path_style = rc->path_style,
	};
	/* Never COFFER_REPO_DELETE: retention belongs to the coordinator. */
	unsigned caps = COFFER_REPO_READ;
	if (needs & AGENT_NEED_REPO_WRITE) {
		caps |= COFFER_REPO_WRITE;
	}
	if (coffer_repo_open(&repo_cfg, caps, out, err) != 0) {
		return (coffer_err_wrap(err, "repository %s", repo_name));
	}
	return (0);
}

static int
open_repo(agent_ctx *ctx, unsigned needs, coffer_err *err)
{
	return (agent_repo_open(ctx->cfg, ctx->repo_name, needs, &ctx->repo, err));
}

int
agent_ctx_open(const char *config_path, const char *repo_name, unsigned needs, agent_ctx **out,
    coffer_err *err)
{
	*out = NULL;
	if (repo_name == NULL) {
		repo_name = "primary";
	}
	if (strcmp(repo_name, "primary") != 0 && strcmp(repo_name, "dr") != 0) {
		return (coffer_err_set(err, COFFER_EINVAL, "unknown repository '%s'", repo_name),
		    coffer_err_hint(err, "use --repo primary or --repo dr"));
	}
	agent_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	ctx->repo_name = repo_name;
	int rc = agent_config_load(config_path, &ctx->cfg, err);
	if (rc == 0 && (needs & AGENT_NEED_KEYRING)) {
		rc = coffer_keyring_load(ctx->cfg->key_ring, &ctx->ring, err);
	}
	if (rc == 0 && (needs & AGENT_NEED_VERIFY) && ctx->cfg->coordinator_public_key != NULL) {
		rc =
		    coffer_sign_pubkey_load(ctx->cfg->coordinator_public_key, &ctx->coord_pub, err);
		if (rc != 0) {
			coffer_err_wrap(err, "[keys] coordinator_public_key");
		}
	}
	if (rc == 0 && (needs & (AGENT_NEED_SIGN | AGENT_NEED_VERIFY))) {
		rc = coffer_sign_key_load(ctx->cfg->signing_key, &ctx->sign_key, err);
		/* A restore host needs no signing key: attestations vouch. */
		if (rc == COFFER_ENOENT && !(needs & AGENT_NEED_SIGN) && ctx->coord_pub != NULL) {
			coffer_err_clear(err);
			rc = 0;
		} else if (rc == COFFER_ENOENT) {
			coffer_err_hint(
			    err, "create it with `coffer-agent init -c %s`", config_path);
		}
		if (rc == 0 && ctx->sign_key != NULL) {
			rc = coffer_sign_key_public(ctx->sign_key, &ctx->sign_pub, err);
		}
	}
	if (rc == 0 && (needs & (AGENT_NEED_REPO | AGENT_NEED_REPO_WRITE))) {
		rc = open_repo(ctx, needs, err);
	}
	if (rc == 0 && (needs & AGENT_NEED_OUTBOX)) {
		if (mkdir(ctx->cfg->state_dir, 0700) != 0 && errno != EEXIST) {
			rc =
			    coffer_err_errno(err, errno, "creating state_dir", ctx->cfg->state_dir);
		}
		if (rc == 0) {
			rc = agent_outbox_open(ctx->cfg->state_dir, NULL, &ctx->outbox, err);
		}
	}
	if (rc != 0) {
		agent_ctx_close(ctx);
		return (rc);
	}
	*out = ctx;
	return (0);
}

void
agent_ctx_close(agent_ctx *ctx)
{
	if (ctx == NULL) {
		return;
	}
	agent_outbox_close(ctx->outbox);
	coffer_repo_close(ctx->repo);
	coffer_sign_pubkey_free(ctx->sign_pub);
	coffer_sign_pubkey_free(ctx->coord_pub);
	coffer_sign_key_free(ctx->sign_key);
	coffer_keyring_free(ctx->ring);
	agent_config_free(ctx->cfg);
	free(ctx);
}
