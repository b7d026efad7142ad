/*
 * Catalog migrations: the SQL that builds and evolves the coordinator's
 * catalog, compiled into the binary as an ordered array.
 *
 * What it promises:
 * - Numbers start at 1 and increase by exactly 1; coord_catalog_migrate
 *   applies them in that order, each in its own transaction.
 * - A migration, once released, is never edited: the catalog records the
 *   SHA-256 of each applied migration's SQL and coord_catalog_check refuses a
 *   catalog whose record differs from the binary's. A change of schema is a
 *   new migration at the end of the array.
 * - Each migration's SQL runs as one simple-protocol string (several
 *   statements) inside a transaction, so it must not contain COMMIT,
 *   CREATE INDEX CONCURRENTLY or anything else that refuses a transaction.
 */
#ifndef COFFER_COORDINATOR_CATALOG_MIGRATIONS_H
#define COFFER_COORDINATOR_CATALOG_MIGRATIONS_H

#include <stddef.h>

typedef struct coord_migration {
	int number;       /* 1, 2, 3, ... */
	const char *name; /* short, lowercase: "initial schema" */
	const char *sql;
} coord_migration;

/* The migrations this binary knows, in order; *n gets their count. The array
 * is static and never freed. */
const coord_migration *coord_migrations_list(size_t *n);

#endif
