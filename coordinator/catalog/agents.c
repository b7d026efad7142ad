/*
 * Agents: enrollment in the catalog; see coordinator/catalog/agents.h.
 *
 * Design notes.
 * Enroll and revoke lock the agent's row (or, for a new name, rely on the
 * primary key) inside one transaction with their audit row, so a racing
 * second enroll of the same name fails on the key instead of silently
 * re-owning the agent. The public key is stored raw (bytea, 32 bytes) and
 * unique, so one key can never speak for two agents.
 */
#include "coordinator/catalog/agents.h"

#include "common/base/name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

static int
audit(coord_catalog *cat, const coord_audit_key *key, const char *actor, const char *action,
    const char *agent, const char *service, const char *fp, coffer_err *err)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	cJSON_AddStringToObject(d, "agent", agent);
	cJSON_AddStringToObject(d, "service", service);
	if (fp != NULL) {
		cJSON_AddStringToObject(d, "fingerprint", fp);
	}
	char *text = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	int rv = coord_audit_append(cat, key, actor, action, agent, text, NULL, err);
	cJSON_free(text);
	return (rv);
}

int
coord_agents_enroll(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *service, const char *owner, const char *agent, const coffer_sign_pubkey *pub,
    bool *already, coffer_err *err)
{
	*already = false;
	if (!coffer_name_valid(agent)) {
		coffer_err_set(err, COFFER_EINVAL, "agent name \"%s\" is not valid", agent);
		return (coffer_err_hint(err,
		    "use 1-64 of letters, digits, '_', '.', '-', starting "
		    "with a letter or digit"));
	}
	if (!coffer_name_valid(service)) {
		coffer_err_set(err, COFFER_EINVAL, "service name \"%s\" is not valid", service);
		return (coffer_err_hint(err, "use the name of a [service.NAME] section"));
	}
	char hex[COFFER_SIGN_PUBKEY_HEX], fp[COFFER_SIGN_FINGERPRINT_HEX];
	coffer_sign_pubkey_hex(pub, hex);
	coffer_sign_fingerprint(pub, fp);
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	PGresult *res = NULL;
	const char *svals[] = { service, owner };
	res = coord_catalog_adhoc(cat, "recording the service",
	    "INSERT INTO services (name, owner) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
	    "SET owner = EXCLUDED.owner, updated_at = now() WHERE services.owner <> EXCLUDED.owner",
	    2, svals, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	PQclear(res);
	const char *avals[] = { agent };
	res = coord_catalog_adhoc(cat, "reading the agent",
	    "SELECT service, encode(pubkey, 'hex'), revoked_at IS NOT NULL FROM agents "
	    "WHERE name = $1 FOR UPDATE",
	    1, avals, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) == 1) {
		const char *was = PQgetvalue(res, 0, 0);
		if (PQgetisnull(res, 0, 0)) {
			coffer_err_set(err, COFFER_EEXIST,
			    "agent %s is enrolled as a drill runner; a runner is no service's agent",
			    agent);
			coffer_err_hint(
			    err, "enroll the service's agent under another name and key");
		} else if (strcmp(was, service) != 0) {
			coffer_err_set(err, COFFER_EEXIST,
			    "agent %s is enrolled for service %s; an agent belongs to one service",
			    agent, was);
			coffer_err_hint(err, "enroll the agent for %s under a new name", service);
		} else if (PQgetvalue(res, 0, 2)[0] == 't') {
			coffer_err_set(err, COFFER_EEXIST, "agent %s was revoked", agent);
			coffer_err_hint(
			    err, "a revoked name stays revoked; enroll under a new name");
		} else if (strcmp(PQgetvalue(res, 0, 1), hex) != 0) {
			coffer_err_set(
			    err, COFFER_EEXIST, "agent %s is enrolled with another key", agent);
			coffer_err_hint(err,
			    "to replace its key, revoke %s and enroll under a new name", agent);
		} else {
			*already = true;
		}
		PQclear(res);
		rv = *already ? 0 : COFFER_EEXIST;
		coord_catalog_rollback(cat);
		return (rv);
	}
	PQclear(res);
	const char *kvals[] = { hex };
	res = coord_catalog_adhoc(cat, "checking the key",
	    "SELECT name FROM agents WHERE pubkey = decode($1, 'hex')", 1, kvals, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) == 1) {
		coffer_err_set(err, COFFER_EEXIST, "key %s is already enrolled as agent %s", fp,
		    PQgetvalue(res, 0, 0));
		coffer_err_hint(
		    err, "every agent needs its own key: run `coffer-agent init` on it");
		PQclear(res);
		coord_catalog_rollback(cat);
		return (COFFER_EEXIST);
	}
	PQclear(res);
	const char *ivals[] = { agent, service, hex, actor };
	res = coord_catalog_adhoc(cat, "enrolling the agent",
	    "INSERT INTO agents (name, service, pubkey, enrolled_by) "
	    "VALUES ($1, $2, decode($3, 'hex'), $4)",
	    4, ivals, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	PQclear(res);
	if ((rv = audit(cat, key, actor, "agent.enroll", agent, service, fp, err)) != 0) {
		goto fail;
	}
	if ((rv = coord_catalog_commit(cat, err)) != 0) {
		goto fail;
	}
	return (0);
fail:
	coord_catalog_rollback(cat);
	return (rv);
}

int
coord_agents_revoke(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *agent, bool *already, coffer_err *err)
{
	*already = false;
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	const char *vals[] = { agent };
	PGresult *res = coord_catalog_adhoc(cat, "reading the agent",
	    "SELECT service, revoked_at IS NOT NULL FROM agents WHERE name = $1 FOR UPDATE", 1,
	    vals, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		coord_catalog_rollback(cat);
		coffer_err_set(err, COFFER_ENOENT, "no agent named %s is enrolled", agent);
		return (coffer_err_hint(err, "see `coffer-coordinator agents list` for the names"));
	}
	char service[72];
	snprintf(service, sizeof(service), "%s", PQgetvalue(res, 0, 0));
	*already = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	if (*already) {
		coord_catalog_rollback(cat);
		return (0);
	}
	const char *uvals[] = { agent, actor };
	res = coord_catalog_adhoc(cat, "revoking the agent",
	    "UPDATE agents SET revoked_at = now(), revoked_by = $2 WHERE name = $1", 2, uvals, &rv,
	    err);
	if (res == NULL) {
		goto fail;
	}
	PQclear(res);
	if ((rv = audit(cat, key, actor, "agent.revoke", agent, service, NULL, err)) != 0) {
		goto fail;
	}
	if ((rv = coord_catalog_commit(cat, err)) != 0) {
		goto fail;
	}
	return (0);
fail:
	coord_catalog_rollback(cat);
	return (rv);
}

int
coord_agents_list(coord_catalog *cat, cJSON **out, coffer_err *err)
{
	*out = NULL;
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "listing agents",
	    "SELECT name, service, encode(pubkey, 'hex'), "
	    "to_char(enrolled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), enrolled_by, "
	    "to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), last_seq, "
	    "last_envelope_seq, "
	    "to_char(last_contact_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), role, "
	    "(SELECT string_agg(d.service, ',' ORDER BY d.service) FROM drill_runner_services d "
	    "WHERE d.agent = agents.name) FROM agents ORDER BY name",
	    0, NULL, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *arr = cJSON_CreateArray();
	if (arr == NULL) {
		PQclear(res);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the agent list"));
	}
	for (int i = 0; i < PQntuples(res); i++) {
		cJSON *o = cJSON_CreateObject();
		if (o == NULL) {
			cJSON_Delete(arr);
			PQclear(res);
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the agent list"));
		}
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "name", PQgetvalue(res, i, 0));
		if (PQgetisnull(res, i, 1)) {
			cJSON_AddNullToObject(o, "service");
		} else {
			cJSON_AddStringToObject(o, "service", PQgetvalue(res, i, 1));
		}
		cJSON_AddStringToObject(o, "role", PQgetvalue(res, i, 9));
		if (!PQgetisnull(res, i, 10)) {
			cJSON *ds = cJSON_AddArrayToObject(o, "drills");
			char list[2048];
			snprintf(list, sizeof(list), "%s", PQgetvalue(res, i, 10));
			for (char *save = NULL, *t = strtok_r(list, ",", &save);
			     ds != NULL && t != NULL; t = strtok_r(NULL, ",", &save)) {
				cJSON_AddItemToArray(ds, cJSON_CreateString(t));
			}
		}
		coffer_sign_pubkey *pub = NULL;
		const char *hex = PQgetvalue(res, i, 2);
		if (coffer_sign_pubkey_parse(hex, strlen(hex), &pub, NULL) == 0) {
			char fp[COFFER_SIGN_FINGERPRINT_HEX];
			coffer_sign_fingerprint(pub, fp);
			cJSON_AddStringToObject(o, "fingerprint", fp);
			coffer_sign_pubkey_free(pub);
		}
		cJSON_AddStringToObject(o, "enrolled_at", PQgetvalue(res, i, 3));
		cJSON_AddStringToObject(o, "enrolled_by", PQgetvalue(res, i, 4));
		if (PQgetisnull(res, i, 5)) {
			cJSON_AddNullToObject(o, "revoked_at");
		} else {
			cJSON_AddStringToObject(o, "revoked_at", PQgetvalue(res, i, 5));
		}
		cJSON_AddNumberToObject(o, "last_event_seq", strtod(PQgetvalue(res, i, 6), NULL));
		cJSON_AddNumberToObject(
		    o, "last_envelope_seq", strtod(PQgetvalue(res, i, 7), NULL));
		if (PQgetisnull(res, i, 8)) {
			cJSON_AddNullToObject(o, "last_contact_at");
		} else {
			cJSON_AddStringToObject(o, "last_contact_at", PQgetvalue(res, i, 8));
		}
	}
	PQclear(res);
	*out = arr;
	return (0);
}

int
coord_agents_enroll_runner(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *const *services, const char *const *owners, size_t n, const char *agent,
    const coffer_sign_pubkey *pub, bool *already, coffer_err *err)
{
	*already = false;
	if (!coffer_name_valid(agent)) {
		coffer_err_set(err, COFFER_EINVAL, "agent name \"%s\" is not valid", agent);
		return (coffer_err_hint(err,
		    "use 1-64 of letters, digits, '_', '.', '-', starting "
		    "with a letter or digit"));
	}
	if (n == 0) {
		coffer_err_set(
		    err, COFFER_EINVAL, "a drill runner needs at least one service to drill");
		return (coffer_err_hint(err, "pass --service S (once per service)"));
	}
	for (size_t i = 0; i < n; i++) {
		if (!coffer_name_valid(services[i])) {
			coffer_err_set(
			    err, COFFER_EINVAL, "service name \"%s\" is not valid", services[i]);
			return (coffer_err_hint(err, "use the name of a [service.NAME] section"));
		}
	}
	char hex[COFFER_SIGN_PUBKEY_HEX], fp[COFFER_SIGN_FINGERPRINT_HEX];
	coffer_sign_pubkey_hex(pub, hex);
	coffer_sign_fingerprint(pub, fp);
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	PGresult *res = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *svals[] = { services[i], owners[i] };
		res = coord_catalog_adhoc(cat, "recording the service",
		    "INSERT INTO services (name, owner) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
		    "SET owner = EXCLUDED.owner, updated_at = now() WHERE services.owner <> "
		    "EXCLUDED.owner",
		    2, svals, &rv, err);
		if (res == NULL) {
			goto fail;
		}
		PQclear(res);
	}
	const char *avals[] = { agent };
	res = coord_catalog_adhoc(cat, "reading the agent",
	    "SELECT role, encode(pubkey, 'hex'), revoked_at IS NOT NULL, COALESCE(service, '') "
	    "FROM agents WHERE name = $1 FOR UPDATE",
	    1, avals, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	bool exists = PQntuples(res) == 1;
	if (exists) {
		rv = COFFER_EEXIST;
		if (strcmp(PQgetvalue(res, 0, 0), "drill_runner") != 0) {
			coffer_err_set(err, COFFER_EEXIST,
			    "agent %s is the agent of service %s; a service agent cannot be a drill "
			    "runner",
			    agent, PQgetvalue(res, 0, 3));
			coffer_err_hint(err, "enroll the runner under its own name and key");
		} else if (PQgetvalue(res, 0, 2)[0] == 't') {
			coffer_err_set(err, COFFER_EEXIST, "agent %s was revoked", agent);
			coffer_err_hint(
			    err, "a revoked name stays revoked; enroll under a new name");
		} else if (strcmp(PQgetvalue(res, 0, 1), hex) != 0) {
			coffer_err_set(
			    err, COFFER_EEXIST, "agent %s is enrolled with another key", agent);
			coffer_err_hint(err,
			    "to replace its key, revoke %s and enroll under a new name", agent);
		} else {
			rv = 0;
		}
		PQclear(res);
		if (rv != 0) {
			coord_catalog_rollback(cat);
			return (rv);
		}
	} else {
		PQclear(res);
		const char *kvals[] = { hex };
		res = coord_catalog_adhoc(cat, "checking the key",
		    "SELECT name FROM agents WHERE pubkey = decode($1, 'hex')", 1, kvals, &rv, err);
		if (res == NULL) {
			goto fail;
		}
		if (PQntuples(res) == 1) {
			coffer_err_set(err, COFFER_EEXIST, "key %s is already enrolled as agent %s",
			    fp, PQgetvalue(res, 0, 0));
			coffer_err_hint(err,
			    "every agent needs its own key: run `coffer-agent init` on "
			    "it");
			PQclear(res);
			coord_catalog_rollback(cat);
			return (COFFER_EEXIST);
		}
		PQclear(res);
		const char *ivals[] = { agent, hex, actor };
		res = coord_catalog_adhoc(cat, "enrolling the drill runner",
		    "INSERT INTO agents (name, service, role, pubkey, enrolled_by) "
		    "VALUES ($1, NULL, 'drill_runner', decode($2, 'hex'), $3)",
		    3, ivals, &rv, err);
		if (res == NULL) {
			goto fail;
		}
		PQclear(res);
	}
	size_t added = 0;
	cJSON *d = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(d, "services");
	for (size_t i = 0; i < n; i++) {
		const char *dvals[] = { agent, services[i], actor };
		res = coord_catalog_adhoc(cat, "recording the services the runner drills",
		    "INSERT INTO drill_runner_services (agent, service, added_by) VALUES ($1, $2, $3) "
		    "ON CONFLICT DO NOTHING",
		    3, dvals, &rv, err);
		if (res == NULL) {
			cJSON_Delete(d);
			goto fail;
		}
		if (strcmp(PQcmdTuples(res), "1") == 0) {
			added++;
			cJSON_AddItemToArray(list, cJSON_CreateString(services[i]));
		}
		PQclear(res);
	}
	*already = exists && added == 0;
	if (*already) {
		cJSON_Delete(d);
		coord_catalog_rollback(cat);
		return (0);
	}
	cJSON_AddStringToObject(d, "agent", agent);
	cJSON_AddStringToObject(d, "role", "drill_runner");
	cJSON_AddStringToObject(d, "fingerprint", fp);
	char *text = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (text == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row");
		goto fail;
	}
	rv = coord_audit_append(cat, key, actor, "agent.enroll", agent, text, NULL, err);
	cJSON_free(text);
	if (rv != 0 || (rv = coord_catalog_commit(cat, err)) != 0) {
		goto fail;
	}
	return (0);
fail:
	coord_catalog_rollback(cat);
	return (rv);
}
