/*
 * A PagerDuty and webhook receiver on loopback, in a child process, that
 * writes down everything it is sent.
 *
 * Fakes: the PagerDuty Events API v2 (POST /v2/enqueue, /v2/change/enqueue)
 * and any webhook: every POST is answered 202 {"status":"success",...},
 * except that POSTs under /v2/ take their status from a script when one is
 * queued (400, 429 and 5xx come with PagerDuty's bodies for them). POST
 * /_script with a body of statuses separated by spaces ("500 500 429")
 * queues them; it is answered 200 and not logged. Anything but a POST is
 * answered 404 and not logged.
 *
 * Promises: one line of the log per request, flushed before the answer:
 *   MS STATUS PATH BODY
 * MS the receiver's CLOCK_MONOTONIC in milliseconds when the request was
 * read (the clock of coffer_clock_monotonic_ms), STATUS what it answered,
 * BODY the request body with CR and LF turned into spaces. The child
 * survives whatever its parent does short of killing it, which is what
 * lets a driver simulate coordinator restarts against one receiver; it
 * ends on SIGTERM, and by itself after an hour so a crashed test cannot
 * leave it behind for long.
 *
 * Limits: one connection at a time, Connection: close, requests up to
 * 1 MiB, at most 4096 queued statuses, no TLS, no authentication.
 */
#ifndef COFFER_TESTS_HARNESS_RECEIVER_H
#define COFFER_TESTS_HARNESS_RECEIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One logged request. */
typedef struct harness_receiver_req {
	int64_t at;    /* MS */
	int status;    /* STATUS */
	char path[64]; /* PATH */
	char *body;    /* BODY, malloc'd */
} harness_receiver_req;

/* Listens on 127.0.0.1:port (0: any free port), truncates logpath, forks
 * the receiver and returns its pid, with the port in *bound. Returns -1,
 * with the reason on stderr, when it cannot listen or write the log. */
pid_t harness_receiver_start(int port, const char *logpath, int *bound);

/* SIGTERM to the receiver, and waits for it. */
void harness_receiver_stop(pid_t pid);

/* Queues statuses (e.g. "500 500 429") for the next /v2/ requests of the
 * receiver on port. Returns 0 once it answered 200, -1 otherwise. */
int harness_receiver_script(int port, const char *statuses);

/* Whether some line of the log holds a, and b too unless b is NULL. */
bool harness_receiver_seen(const char *logpath, const char *a, const char *b);

/* Every request in the log, oldest first, into a malloc'd array. Returns
 * 0, or -1 with the reason on stderr (an unreadable log or a line that is
 * not MS STATUS PATH BODY). */
int harness_receiver_read(const char *logpath, harness_receiver_req **reqs, size_t *n);

/* Frees what harness_receiver_read gave. */
void harness_receiver_free(harness_receiver_req *reqs, size_t n);

#endif
