/*
 * junk: a hostile peer for tests/integration/flood.sh and
 * tests/bench/intake_bench.c. T threads on ONE connection (one NNG dialer,
 * optionally bound to a local address such as 127.0.0.2 so that it is a
 * peer of its own on loopback) send junk as fast as answers come back,
 * cycling through: bytes that are no protobuf, envelopes from an agent
 * nobody enrolled, and envelopes that claim a real agent's name but are
 * signed by another key. Counts what it sent and what was answered.
 */
#ifndef COFFER_TESTS_BENCH_JUNK_H
#define COFFER_TESTS_BENCH_JUNK_H

#include <stdint.h>

#include "common/wire/tlsconf.h"

typedef struct junk_flood junk_flood;

/* Starts flooding url; tls may be NULL for tcp://; local_addr ("127.0.0.2")
 * may be NULL; victim: an enrolled agent's name to forge. */
int junk_flood_start(const char *url, const coffer_tls_files *tls, const char *local_addr,
    int threads, const char *victim, junk_flood **out);

/* Stops and frees; *sent and *answered (may be NULL) get the totals. */
void junk_flood_stop(junk_flood *f, uint64_t *sent, uint64_t *answered);

#endif
