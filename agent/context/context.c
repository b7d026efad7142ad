#include "agent/context/context.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * A posix repository isolates services only through the file system: each
 * service directory has its own owner and nobody else may write it. One that
 * others may write (or a services/ directory they may write without the
 * sticky bit, where they could rename it away) lets another service's agent
 * plant or replace objects, so the agent refuses to use it. Group write is
 * the operator's to give, to the coordinator's group alone (retention
 * deletes there): the agent cannot tell who else is in a group. A service
 * directory that does not exist yet is created by the first write, 0750.
 */
static int
check_posix_dirs(const char *root, const char *service, coffer_err *err)
{
	char dir[4096];
	struct stat st;
	snprintf(dir, sizeof(dir), "%s/services", root);
	if (stat(dir, &st) == 0 && (st.st_mode & 002) != 0 && (st.st_mode & S_ISVTX) == 0) {
		coffer_err_set(err, COFFER_EPERM,
		    "repository directory %.3000s is writable by others (mode %04o): "
		    "anyone who may write it can rename a service's directory away",
		    dir, (unsigned)(st.st_mode & 07777));
		return (coffer_err_hint(err,
		    "chmod o-w %.3000s (or chmod +t), docs/S3.md \"Posix "
		    "repositories\"",
		    dir));
	}
	snprintf(dir, sizeof(dir), "%s/services/%s", root, service);
	if (stat(dir, &st) == 0 && (st.st_mode & 002) != 0) {
		coffer_err_set(err, COFFER_EPERM,
		    "service directory %.3000s is writable by others (mode %04o): another "
		    "service's agent could plant or replace its backups and WAL",
		    dir, (unsigned)(st.st_mode & 07777));
		return (coffer_err_hint(err,
		    "chmod -R o-w %.3000s, owned by this service's agent user alone "
		    "(docs/S3.md \"Posix repositories\")",
		    dir));
	}
	return (0);
}

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
	if (rc->type != AGENT_REPO_S3 && rc->path != NULL && cfg->service != NULL) {
		int rv = check_posix_dirs(rc->path, cfg->service, err);
		if (rv != 0) {
			return (coffer_err_wrap(err, "repository %s", repo_name));
		}
	}
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
