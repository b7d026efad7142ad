/*
 * The `coffer` CLI's shared pieces; see coordinator/cli/client.h.
 *
 * Design notes.
 * One request per process: the CLI opens the connection, sends one signed
 * envelope with a fresh nonce and exits. It never resends on its own: the
 * coordinator refuses a nonce it has seen, and a change such as backup.run
 * must not happen twice because a reply was lost; the operator decides.
 */
#include "coordinator/cli/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/conf/config.h"
#include "common/crypto/sign.h"
#include "common/wire/net.h"
#include "common/wire/wire.h"

#define DEFAULT_TIMEOUT_MS 30000

/* The same rule as the agent's [coordinator] url, checked when cli.conf is
 * read rather than at the first dial. */
static int
check_url(const char *v, coffer_err *err)
{
	return (coffer_net_url_check(v, "coordinator address", err));
}

static const coffer_config_key coffer_keys[] = {
	{ .name = "url",
	    .type = COFFER_CONFIG_STRING,
	    .required = true,
	    .check = check_url,
	    .why = "the coordinator's admin_listen address" },
	{ .name = "operator",
	    .type = COFFER_CONFIG_STRING,
	    .required = true,
	    .why = "the [operator.NAME] this key belongs to in coordinator.conf" },
	{ .name = "key",
	    .type = COFFER_CONFIG_PATH,
	    .required = true,
	    .why = "the operator key from `coffer init`" },
	{ .name = "ca", .type = COFFER_CONFIG_PATH },
	{ .name = "cert", .type = COFFER_CONFIG_PATH },
	{ .name = "key_tls", .type = COFFER_CONFIG_PATH },
	{ .name = "server_name", .type = COFFER_CONFIG_STRING },
	{ .name = "timeout",
	    .type = COFFER_CONFIG_DURATION,
	    .def = "30s",
	    .min = 1000,
	    .max = 3600 * 1000 },
	{ .name = "insecure", .type = COFFER_CONFIG_BOOL, .def = "false" },
	{ 0 },
};

static const coffer_config_section cli_sections[] = {
	{ .name = "coffer", .required = true, .keys = coffer_keys },
	{ 0 },
};

static const coffer_config_schema cli_schema = { .sections = cli_sections };

const char *
coord_cli_config_path(const char *opt)
{
	if (opt != NULL) {
		return (opt);
	}
	const char *env = getenv("COFFER_CONFIG");
	return (env != NULL && env[0] != '\0' ? env : NULL);
}

/* "~/x" -> "$HOME/x" into buf; other paths as they are. */
static const char *
expand(const char *path, char *buf, size_t size)
{
	if (path == NULL || strncmp(path, "~/", 2) != 0) {
		return (path);
	}
	const char *home = getenv("HOME");
	if (home == NULL || (size_t)snprintf(buf, size, "%s/%s", home, path + 2) >= size) {
		return (path);
	}
	return (buf);
}

/* An error line "what (hint: fix)" from the coordinator, split back into
 * message and hint so coffer_err_print shows it the way it came. */
static int
set_remote_error(coffer_err *err, int code, const char *line)
{
	const char *h = strstr(line, " (hint: ");
	size_t n = strlen(line);
	if (h != NULL && n > 0 && line[n - 1] == ')') {
		coffer_err_set(err, code, "%.*s", (int)(h - line), line);
		return (coffer_err_hint(err, "%.*s", (int)(line + n - 1 - (h + 8)), h + 8));
	}
	return (
	    coffer_err_set(err, code, "%s", line[0] != '\0' ? line : "the coordinator refused"));
}

static int
code_of_status(int status)
{
	switch (status) {
	case COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT:
	case COFFER__V1__STATUS__STATUS_BAD_SIGNATURE:
	case COFFER__V1__STATUS__STATUS_REPLAYED:
		return (COFFER_EAUTH);
	case COFFER__V1__STATUS__STATUS_UNAVAILABLE:
		return (COFFER_EUNAVAIL);
	case COFFER__V1__STATUS__STATUS_MALFORMED:
		return (COFFER_EPROTO);
	case COFFER__V1__STATUS__STATUS_INTERNAL:
		return (COFFER_EINTERNAL);
	case COFFER__V1__STATUS__STATUS_UNAUTHORIZED:
		return (COFFER_EPERM);
	default:
		return (COFFER_EREFUSED);
	}
}

int
coord_cli_request(const char *config_path, const char *command, const coffer_adminmsg_arg *args,
    size_t nargs, char **json_text, cJSON **result, coffer_err *err)
{
	*json_text = NULL;
	if (result != NULL) {
		*result = NULL;
	}
	if (config_path == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "no configuration file given");
		return (coffer_err_hint(err, "pass -c FILE or set COFFER_CONFIG to a cli.conf"));
	}
	/* The transport's warnings (still dialing, retrying) are noise for a
	 * one-shot command whose own error line says what failed. */
	coffer_log_init(COORD_CLI_PROG, COFFER_LOG_ERROR);
	coffer_config *ini = NULL;
	int rv = coffer_config_load(config_path, &cli_schema, &ini, err);
	if (rv != 0) {
		return (rv);
	}
	char kbuf[4096], cabuf[4096], certbuf[4096], tlskeybuf[4096];
	const char *keypath = expand(coffer_config_str(ini, "coffer", "key"), kbuf, sizeof(kbuf));
	const char *op = coffer_config_str(ini, "coffer", "operator");
	coffer_net_client_config ncfg;
	memset(&ncfg, 0, sizeof(ncfg));
	ncfg.url = coffer_config_str(ini, "coffer", "url");
	ncfg.tls.ca = expand(coffer_config_str(ini, "coffer", "ca"), cabuf, sizeof(cabuf));
	ncfg.tls.cert = expand(coffer_config_str(ini, "coffer", "cert"), certbuf, sizeof(certbuf));
	ncfg.tls.key =
	    expand(coffer_config_str(ini, "coffer", "key_tls"), tlskeybuf, sizeof(tlskeybuf));
	ncfg.server_name = coffer_config_str(ini, "coffer", "server_name");
	ncfg.insecure = coffer_config_bool(ini, "coffer", "insecure");
	unsigned timeout_ms = (unsigned)coffer_config_duration_ms(ini, "coffer", "timeout");

	coffer_sign_key *key = NULL;
	coffer_net_client *client = NULL;
	uint8_t *req = NULL, *rep = NULL;
	size_t req_len = 0, rep_len = 0;
	coffer_adminmsg_reply reply = { 0 };
	if ((rv = coffer_sign_key_load(keypath, &key, err)) != 0) {
		coffer_err_wrap(err, "operator key %s", keypath);
		if (err->hint[0] == '\0') {
			coffer_err_hint(err,
			    "create one with `coffer init --out FILE` and set [coffer] "
			    "key");
		}
		goto done;
	}
	rv = coffer_adminmsg_build(
	    key, op, command, args, nargs, coffer_clock_now(NULL), NULL, &req, &req_len, err);
	if (rv != 0) {
		goto done;
	}
	if ((rv = coffer_net_client_open(&ncfg, &client, err)) != 0) {
		coffer_err_wrap(err, "connecting to %s", ncfg.url);
		goto done;
	}
	rv = coffer_net_client_call(client, req, req_len, &rep, &rep_len, timeout_ms, err);
	if (rv != 0) {
		coffer_err_wrap(err, "asking %s", ncfg.url);
		if (rv == COFFER_EUNAVAIL) {
			coffer_err_hint(err,
			    "check [coffer] url (the coordinator's admin_listen) and "
			    "that coffer-coordinator is running");
		}
		goto done;
	}
	if ((rv = coffer_adminmsg_reply_decode(rep, rep_len, &reply, err)) != 0) {
		goto done;
	}
	if (reply.status != COFFER__V1__STATUS__STATUS_OK) {
		rv = set_remote_error(err, code_of_status(reply.status), reply.error);
		goto done;
	}
	if (result != NULL) {
		*result = cJSON_Parse(reply.json);
		if (*result == NULL) {
			rv = coffer_err_set(
			    err, COFFER_EPROTO, "the coordinator's reply is not JSON");
			coffer_err_hint(err,
			    "check that coffer and coffer-coordinator are the same "
			    "version");
			goto done;
		}
	}
	*json_text = reply.json;
	reply.json = NULL;
done:
	coffer_adminmsg_reply_fini(&reply);
	free(rep);
	free(req);
	coffer_net_client_close(client);
	coffer_sign_key_free(key);
	coffer_config_free(ini);
	return (rv);
}

int
coord_cli_fail(const coffer_cmd *cmd, const coffer_err *err)
{
	char prog[96];
	snprintf(prog, sizeof(prog), "%s %s", COORD_CLI_PROG, cmd->name);
	coffer_err_print(prog, err);
	return (coffer_err_exit_status(err->code));
}

int
coord_cli_output_json(const coffer_cmd *cmd, const char *output, bool *json)
{
	*json = false;
	if (output == NULL || strcmp(output, "text") == 0) {
		return (0);
	}
	if (strcmp(output, "json") == 0) {
		*json = true;
		return (0);
	}
	coffer_cli_usage_error(cmd, "--output must be text or json, not %s", output);
	return (-1);
}

bool
coord_cli_flags(const coffer_cmd *cmd, const coffer_opt *opts, int argc, char **argv, int *status)
{
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		*status = rv > 0 ? 0 : 2;
		return (false);
	}
	if (npos > 0) {
		*status = coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]);
		return (false);
	}
	return (true);
}

/* --- tables ---------------------------------------------------------------- */

struct coord_cli_table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, row 0 the headers */
	size_t *width;
	bool oom;
};

static char *
dup_cell(const char *s)
{
	return (strdup(s != NULL ? s : "-"));
}

coord_cli_table *
coord_cli_table_new(size_t ncols, const char *const *headers)
{
	coord_cli_table *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		return (NULL);
	}
	t->ncols = ncols;
	t->width = calloc(ncols, sizeof(size_t));
	if (t->width == NULL) {
		free(t);
		return (NULL);
	}
	coord_cli_table_row(t, headers);
	return (t);
}

void
coord_cli_table_row(coord_cli_table *t, const char *const *cells)
{
	if (t == NULL || t->oom) {
		return;
	}
	if (t->nrows == t->cap) {
		size_t cap = t->cap == 0 ? 16 : t->cap * 2;
		char **grown = realloc(t->cells, cap * t->ncols * sizeof(char *));
		if (grown == NULL) {
			t->oom = true;
			return;
		}
		t->cells = grown;
		t->cap = cap;
	}
	char **row = t->cells + t->nrows * t->ncols;
	for (size_t c = 0; c < t->ncols; c++) {
		row[c] = dup_cell(cells[c]);
		if (row[c] == NULL) {
			t->oom = true;
		} else if (strlen(row[c]) > t->width[c]) {
			t->width[c] = strlen(row[c]);
		}
	}
	t->nrows++;
}

void
coord_cli_table_print(coord_cli_table *t)
{
	if (t == NULL || t->oom) {
		fprintf(stderr, "%s: out of memory printing a table\n", COORD_CLI_PROG);
		return;
	}
	for (size_t r = 0; r < t->nrows; r++) {
		char **row = t->cells + r * t->ncols;
		for (size_t c = 0; c < t->ncols; c++) {
			if (c + 1 == t->ncols) {
				printf("%s\n", row[c]);
			} else {
				printf("%-*s  ", (int)t->width[c], row[c]);
			}
		}
	}
}

void
coord_cli_table_free(coord_cli_table *t)
{
	if (t == NULL) {
		return;
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		free(t->cells[i]);
	}
	free(t->cells);
	free(t->width);
	free(t);
}

/* --- fields ---------------------------------------------------------------- */

const char *
coord_cli_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return (cJSON_IsString(v) && v->valuestring[0] != '\0' ? v->valuestring : "-");
}

static bool
number(const cJSON *o, const char *name, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(v)) {
		return (false);
	}
	*out = v->valuedouble;
	return (true);
}

const char *
coord_cli_num(const cJSON *o, const char *name, char *buf, size_t size)
{
	double d;
	if (!number(o, name, &d)) {
		return ("-");
	}
	snprintf(buf, size, "%.0f", d);
	return (buf);
}

const char *
coord_cli_bytes(const cJSON *o, const char *name, char *buf, size_t size)
{
	double d;
	if (!number(o, name, &d)) {
		return ("-");
	}
	char text[COFFER_FMT_BYTES_SIZE];
	snprintf(buf, size, "%s", coffer_fmt_bytes(text, d));
	return (buf);
}

static const char *
seconds_text(double s, char *buf, size_t size)
{
	long long v = (long long)s;
	if (v >= 86400) {
		snprintf(buf, size, "%lldd%lldh", v / 86400, (v % 86400) / 3600);
	} else if (v >= 3600) {
		snprintf(buf, size, "%lldh%02lldm", v / 3600, (v % 3600) / 60);
	} else if (v >= 60) {
		snprintf(buf, size, "%lldm%02llds", v / 60, v % 60);
	} else {
		snprintf(buf, size, "%llds", v);
	}
	return (buf);
}

const char *
coord_cli_age(const cJSON *o, const char *name, char *buf, size_t size)
{
	double d;
	return (number(o, name, &d) ? seconds_text(d, buf, size) : "-");
}

const char *
coord_cli_ms(const cJSON *o, const char *name, char *buf, size_t size)
{
	double d;
	if (!number(o, name, &d)) {
		return ("-");
	}
	if (d < 1000) {
		snprintf(buf, size, "%.0fms", d);
		return (buf);
	}
	return (seconds_text(d / 1000, buf, size));
}
