/*
 * The primary bucket's policy (coordinator/policy/s3policy.h).
 *
 * Design notes.
 * Principals are per service, not per agent: every agent of a service
 * writes the same prefix with the same key ring, so a separate principal
 * per agent would isolate nothing from its siblings. The price is that
 * revoking one agent means rotating the service's access keys, which
 * coord_s3policy_revoke_note says and `s3-policy --revoked` lists.
 */
#include "coordinator/policy/s3policy.h"

#include <stdio.h>
#include <string.h>

static const char *
primary_str(const coord_config *cfg, const char *key)
{
	if (!coffer_config_has_section(cfg->ini, "repository.primary") ||
	    !coffer_config_has(cfg->ini, "repository.primary", key)) {
		return (NULL);
	}
	return (coffer_config_str(cfg->ini, "repository.primary", key));
}

/* The prefix without leading or trailing slashes, as repo_s3.c uses it. */
static void
trimmed_prefix(const coord_config *cfg, char *buf, size_t size)
{
	const char *p = primary_str(cfg, "prefix");
	p = p != NULL ? p : "";
	while (*p == '/') {
		p++;
	}
	size_t n = strlen(p);
	while (n > 0 && p[n - 1] == '/') {
		n--;
	}
	snprintf(buf, size, "%.*s", (int)n, p);
}

int
coord_s3policy_service_prefix(const coord_config *cfg, const char *service, char *buf, size_t size)
{
	char pfx[600];
	trimmed_prefix(cfg, pfx, sizeof(pfx));
	int n = snprintf(buf, size, "%s%sservices/%s/", pfx, pfx[0] != '\0' ? "/" : "", service);
	return (n < 0 || (size_t)n >= size ? COFFER_ETOOBIG : 0);
}

static cJSON *
strings(const char *const *v, size_t n)
{
	return (cJSON_CreateStringArray(v, (int)n));
}

/* One statement. action_key is "Action" or "NotAction", resource_key
 * "Resource" or "NotResource". */
static cJSON *
statement(const char *sid, const char *effect, const char *principal, const char *action_key,
    const char *const *actions, size_t n_actions, const char *resource_key,
    const char *const *resources, size_t n_resources)
{
	cJSON *st = cJSON_CreateObject();
	cJSON *pr = cJSON_CreateObject();
	if (st == NULL || pr == NULL) {
		cJSON_Delete(st);
		cJSON_Delete(pr);
		return (NULL);
	}
	const char *pv[] = { principal };
	cJSON_AddStringToObject(st, "Sid", sid);
	cJSON_AddStringToObject(st, "Effect", effect);
	cJSON_AddItemToObject(pr, "AWS", strings(pv, 1));
	cJSON_AddItemToObject(st, "Principal", pr);
	cJSON_AddItemToObject(st, action_key, strings(actions, n_actions));
	cJSON_AddItemToObject(st, resource_key, strings(resources, n_resources));
	return (st);
}

static void
add_condition(cJSON *st, const char *op, const char *key, const char *value)
{
	cJSON *cond = cJSON_AddObjectToObject(st, "Condition");
	cJSON *o = cond != NULL ? cJSON_AddObjectToObject(cond, op) : NULL;
	const char *v[] = { value };
	if (o != NULL) {
		cJSON_AddItemToObject(o, key, strings(v, 1));
	}
}

#define ARN_MAX 1200
#define N(a)    (sizeof(a) / sizeof((a)[0]))

static bool
add(cJSON *list, cJSON *st)
{
	if (st == NULL) {
		return (false);
	}
	return (cJSON_AddItemToArray(list, st));
}

static bool
service_statements(cJSON *list, const char *bucket, const char *prefix,
    const coord_service_policy *p, coord_s3policy_dialect dialect)
{
	char bucket_arn[ARN_MAX], objects_arn[ARN_MAX], all_arn[ARN_MAX], like[ARN_MAX];
	char sid[128];
	snprintf(bucket_arn, sizeof(bucket_arn), "arn:aws:s3:::%s", bucket);
	snprintf(objects_arn, sizeof(objects_arn), "arn:aws:s3:::%s/%s*", bucket, prefix);
	snprintf(all_arn, sizeof(all_arn), "arn:aws:s3:::%s/*", bucket);
	snprintf(like, sizeof(like), "%s*", prefix);

	static const char *const object_actions[] = { "s3:PutObject", "s3:GetObject",
		"s3:GetObjectVersion", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts" };
	/* ListBucketVersions: a restore reads the version the agent wrote
	 * (the oldest) when a newer one replaced it (docs/S3.md). */
	static const char *const list_actions[] = { "s3:ListBucket", "s3:ListBucketVersions" };
	static const char *const all_actions[] = { "s3:*" };
	static const char *const delete_actions[] = { "s3:DeleteObject", "s3:DeleteObjectVersion",
		"s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention",
		"s3:PutObjectAcl", "s3:PutObjectVersionAcl" };
	static const char *const deny_list_actions[] = { "s3:ListBucket", "s3:ListBucketVersions" };
	const char *objects[] = { objects_arn };
	const char *bucket_only[] = { bucket_arn };
	const char *not_mine[] = { objects_arn, bucket_arn };
	const char *everything[] = { all_arn };

	snprintf(sid, sizeof(sid), "coffer-%s-objects", p->name);
	if (!add(list,
	        statement(sid, "Allow", p->s3_principal, "Action", object_actions,
	            N(object_actions), "Resource", objects, 1))) {
		return (false);
	}
	snprintf(sid, sizeof(sid), "coffer-%s-list", p->name);
	cJSON *st = statement(sid, "Allow", p->s3_principal, "Action", list_actions,
	    N(list_actions), "Resource", bucket_only, 1);
	if (st != NULL) {
		add_condition(st, "StringLike", "s3:prefix", like);
	}
	if (!add(list, st)) {
		return (false);
	}
	snprintf(sid, sizeof(sid), "coffer-%s-deny-outside", p->name);
	if (!add(list,
	        statement(sid, "Deny", p->s3_principal, "Action", all_actions, N(all_actions),
	            "NotResource", not_mine, N(not_mine)))) {
		return (false);
	}
	snprintf(sid, sizeof(sid), "coffer-%s-deny-delete", p->name);
	if (!add(list,
	        statement(sid, "Deny", p->s3_principal, "Action", delete_actions, N(delete_actions),
	            "Resource", everything, 1))) {
		return (false);
	}
	if (dialect == COORD_S3POLICY_AWS) {
		snprintf(sid, sizeof(sid), "coffer-%s-deny-list-outside", p->name);
		st = statement(sid, "Deny", p->s3_principal, "Action", deny_list_actions,
		    N(deny_list_actions), "Resource", bucket_only, 1);
		if (st != NULL) {
			add_condition(st, "StringNotLike", "s3:prefix", like);
		}
		if (!add(list, st)) {
			return (false);
		}
		/* NotAction on the bucket itself: its policy, versioning,
		 * lifecycle and lock stay the owner's whatever IAM grants. */
		static const char *const bucket_ok[] = { "s3:ListBucket", "s3:ListBucketVersions" };
		snprintf(sid, sizeof(sid), "coffer-%s-deny-bucket", p->name);
		if (!add(list,
		        statement(sid, "Deny", p->s3_principal, "NotAction", bucket_ok,
		            N(bucket_ok), "Resource", bucket_only, 1))) {
			return (false);
		}
	}
	return (true);
}

static bool
coordinator_statement(cJSON *list, const char *bucket, const char *principal)
{
	char bucket_arn[ARN_MAX], all_arn[ARN_MAX];
	snprintf(bucket_arn, sizeof(bucket_arn), "arn:aws:s3:::%s", bucket);
	snprintf(all_arn, sizeof(all_arn), "arn:aws:s3:::%s/*", bucket);
	static const char *const actions[] = { "s3:PutObject", "s3:GetObject",
		"s3:GetObjectVersion", "s3:DeleteObject", "s3:AbortMultipartUpload",
		"s3:ListMultipartUploadParts", "s3:ListBucket", "s3:ListBucketVersions",
		"s3:ListBucketMultipartUploads", "s3:GetBucketVersioning",
		"s3:GetBucketObjectLockConfiguration" };
	const char *res[] = { bucket_arn, all_arn };
	return (add(list,
	    statement("coffer-coordinator", "Allow", principal, "Action", actions, N(actions),
	        "Resource", res, N(res))));
}

int
coord_s3policy_build(
    const coord_config *cfg, coord_s3policy_dialect dialect, cJSON **out, coffer_err *err)
{
	*out = NULL;
	const char *type = primary_str(cfg, "type");
	const char *bucket = primary_str(cfg, "bucket");
	if (type == NULL || strcmp(type, "s3") != 0 || bucket == NULL || bucket[0] == '\0') {
		coffer_err_set(err, COFFER_EINVAL,
		    "[repository.primary] is not an s3 repository with a bucket: there is no "
		    "bucket policy to print");
		return (coffer_err_hint(err,
		    "for a posix repository give each service directory its own owner "
		    "(docs/S3.md, \"Posix repositories\")"));
	}
	size_t n_principals = 0;
	for (size_t i = 0; i < cfg->n_services; i++) {
		n_principals += cfg->services[i].s3_principal != NULL;
	}
	if (n_principals == 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "no [service.*] sets s3.principal: the policy would isolate nobody");
		return (coffer_err_hint(err,
		    "give each service's agents their own credentials and name their principal, "
		    "e.g. s3.principal = arn:aws:iam:::user/billing-agent under [service.billing]"));
	}
	cJSON *doc = cJSON_CreateObject();
	cJSON *list = NULL;
	if (doc != NULL && cJSON_AddStringToObject(doc, "Version", "2012-10-17") != NULL) {
		list = cJSON_AddArrayToObject(doc, "Statement");
	}
	bool ok = list != NULL;
	const char *coord = primary_str(cfg, "principal");
	if (ok && coord != NULL) {
		ok = coordinator_statement(list, bucket, coord);
	}
	for (size_t i = 0; ok && i < cfg->n_services; i++) {
		const coord_service_policy *p = &cfg->services[i];
		if (p->s3_principal == NULL) {
			continue;
		}
		char prefix[COFFER_REPO_KEY_MAX];
		if (coord_s3policy_service_prefix(cfg, p->name, prefix, sizeof(prefix)) != 0) {
			cJSON_Delete(doc);
			return (coffer_err_set(err, COFFER_EINVAL,
			    "the prefix of service %s is too long for a policy", p->name));
		}
		ok = service_statements(list, bucket, prefix, p, dialect);
	}
	if (!ok) {
		cJSON_Delete(doc);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory building the policy"));
	}
	*out = doc;
	return (0);
}

void
coord_s3policy_revoke_note(const coord_config *cfg, const char *service, char *buf, size_t size)
{
	const coord_service_policy *p = coord_config_service(cfg, service);
	if (p == NULL || p->s3_principal == NULL) {
		snprintf(buf, size,
		    "service %s has no s3.principal: disable the repository credentials its "
		    "agents hold by hand",
		    service);
		return;
	}
	snprintf(buf, size,
	    "to be disabled: the repository credentials of %s (service %s, shared by its "
	    "agents): rotate its access keys and give the new ones to the agents still enrolled",
	    p->s3_principal, service);
}
