/*
 * Names: the one rule for what an operator names and the coordinator keys
 * by -- agents, services, operators, repositories -- and the one rule for
 * the catalog's ids (backup ids and the like). Every place that accepts a
 * name asks here (agent.conf, coordinator.conf, enrollment, manifests, the
 * admin endpoint, the intake), so a name one of them accepts is accepted by
 * all of them; the catalog's CHECK constraints are a looser backstop
 * (docs/CATALOG.md).
 *
 * A name becomes a file name, a repository path component, an S3 key
 * prefix, a label value and an audit subject: hence letters, digits, '.',
 * '_' and '-' only, and a letter or digit first, so it can never be "..",
 * a dot file, or read as a command-line option.
 */
#ifndef COFFER_COMMON_BASE_NAME_H
#define COFFER_COMMON_BASE_NAME_H

#include <stdbool.h>

#include "common/base/error.h"

/* Longest name, in bytes without the NUL (PostgreSQL's identifier length). */
#define COFFER_NAME_MAX  63
#define COFFER_NAME_SIZE (COFFER_NAME_MAX + 1)

/* The rule in words, for hints: "use " COFFER_NAME_RULE. */
#define COFFER_NAME_RULE \
	"1 to 63 letters, digits, '.', '_' or '-', starting with a letter or a digit"

/* Longest catalog id; ids may also hold ':' (a time in a generated id). */
#define COFFER_NAME_ID_MAX 128

/* 1..COFFER_NAME_MAX of [A-Za-z0-9._-], starting with a letter or digit.
 * NULL is not a name. */
bool coffer_name_valid(const char *s);

/* The same rule with ':' allowed after the first character and up to
 * COFFER_NAME_ID_MAX bytes. */
bool coffer_name_id_valid(const char *s);

/* coffer_name_valid with an error for a person: "'x' is not a valid
 * <what>" and a hint that states the rule. Returns 0 or COFFER_EINVAL. */
int coffer_name_check(const char *s, const char *what, coffer_err *err);

#endif
