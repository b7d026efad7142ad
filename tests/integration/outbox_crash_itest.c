/*
 * Driver for tests/integration/outbox_crash.sh, which kill -9's it at random
 * moments and then checks that nothing it reported saved was lost or doubled.
 *
 *   outbox_crash_itest append STATE_DIR COUNT ACK_LAG
 *	appends COUNT self-checking records as fast as it can and prints each
 *	seq on its own line once agent_outbox_append has returned, i.e. after
 *	fdatasync; every 64 records it acks up to seq - ACK_LAG (0: never), so
 *	kills also land in acks, rotations and compactions.
 *   outbox_crash_itest check STATE_DIR
 *	opens the outbox (recovering a torn tail), prints "acked N" and then
 *	every unacked seq, and fails if seqs do not strictly increase or a
 *	payload is not what its writer wrote.
 *
 * Small segments make rotation and compaction frequent.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/outbox/outbox.h"
#include "common/base/log.h"

static const agent_outbox_limits crash_limits = {
	.max_record = 1024,
	.segment_bytes = 8 * 1024,
	.max_bytes = 256ull * 1024 * 1024,
};

/* 4-byte seed, then bytes that follow from it: a record mixed up with another
 * or damaged in a way its checksum missed cannot pass. */
static size_t
payload_make(uint32_t seed, uint8_t *buf)
{
	size_t len = 4 + seed % 600;
	memcpy(buf, &seed, 4);
	for (size_t k = 4; k < len; k++) {
		buf[k] = (uint8_t)(seed * 13 + k * 7);
	}
	return (len);
}

static int
payload_ok(const uint8_t *data, size_t len)
{
	uint8_t want[1024];
	uint32_t seed;
	if (len < 4) {
		return (0);
	}
	memcpy(&seed, data, 4);
	return (payload_make(seed, want) == len && memcmp(want, data, len) == 0);
}

static int
run_append(const char *state_dir, unsigned long count, unsigned long lag)
{
	agent_outbox *ob;
	coffer_err err = { 0 };
	if (agent_outbox_open(state_dir, &crash_limits, &ob, &err) != 0) {
		coffer_err_print("outbox_crash_itest", &err);
		return (1);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	uint32_t seed = (uint32_t)getpid() * 2654435761u;
	for (unsigned long i = 0; i < count; i++) {
		uint8_t buf[1024];
		size_t len = payload_make(seed + (uint32_t)i, buf);
		uint64_t seq;
		if (agent_outbox_append(ob, buf, len, &seq, &err) != 0) {
			coffer_err_print("outbox_crash_itest", &err);
			agent_outbox_close(ob);
			return (1);
		}
		printf("%" PRIu64 "\n", seq);
		if (lag > 0 && i % 64 == 63 && seq > lag &&
		    agent_outbox_ack(ob, seq - lag, &err) != 0) {
			coffer_err_print("outbox_crash_itest", &err);
			agent_outbox_close(ob);
			return (1);
		}
	}
	agent_outbox_close(ob);
	return (0);
}

struct check_state {
	uint64_t prev;
	uint64_t n;
	int bad;
};

static int
check_cb(uint64_t seq, const uint8_t *data, size_t len, void *arg)
{
	struct check_state *cs = arg;
	if (seq <= cs->prev) {
		fprintf(stderr, "outbox_crash_itest: seq %" PRIu64 " after %" PRIu64 "\n", seq,
		    cs->prev);
		cs->bad = 1;
	}
	if (!payload_ok(data, len)) {
		fprintf(stderr, "outbox_crash_itest: seq %" PRIu64 " has a wrong payload\n", seq);
		cs->bad = 1;
	}
	cs->prev = seq;
	cs->n++;
	printf("%" PRIu64 "\n", seq);
	return (0);
}

static int
run_check(const char *state_dir)
{
	agent_outbox *ob;
	coffer_err err = { 0 };
	if (agent_outbox_open(state_dir, &crash_limits, &ob, &err) != 0) {
		coffer_err_print("outbox_crash_itest", &err);
		return (1);
	}
	agent_outbox_stats st;
	if (agent_outbox_depth(ob, &st, &err) != 0) {
		coffer_err_print("outbox_crash_itest", &err);
		agent_outbox_close(ob);
		return (1);
	}
	printf("acked %" PRIu64 "\n", st.acked_seq);
	struct check_state cs = { .prev = st.acked_seq };
	for (;;) {
		size_t got = 0;
		if (agent_outbox_foreach(ob, cs.prev, 256, 1 << 20, check_cb, &cs, &got, &err) !=
		    0) {
			coffer_err_print("outbox_crash_itest", &err);
			agent_outbox_close(ob);
			return (1);
		}
		if (got == 0) {
			break;
		}
	}
	if (cs.n != st.count) {
		fprintf(stderr,
		    "outbox_crash_itest: depth says %" PRIu64 " records, read %" PRIu64 "\n",
		    st.count, cs.n);
		cs.bad = 1;
	}
	if (cs.prev >= st.next_seq) {
		fprintf(stderr,
		    "outbox_crash_itest: next seq %" PRIu64 " is not past %" PRIu64 "\n",
		    st.next_seq, cs.prev);
		cs.bad = 1;
	}
	agent_outbox_close(ob);
	return (cs.bad);
}

int
main(int argc, char **argv)
{
	coffer_log_init("outbox_crash_itest", COFFER_LOG_INFO);
	if (argc == 5 && strcmp(argv[1], "append") == 0) {
		return (
		    run_append(argv[2], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10)));
	}
	if (argc == 3 && strcmp(argv[1], "check") == 0) {
		return (run_check(argv[2]));
	}
	fprintf(stderr,
	    "usage: outbox_crash_itest append STATE_DIR COUNT ACK_LAG\n"
	    "       outbox_crash_itest check STATE_DIR\n");
	return (2);
}
