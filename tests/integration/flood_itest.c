/*
 * Driver for tests/integration/flood.sh: one hostile peer.
 *
 *   flood_itest URL --ca F --cert F --key F --seconds N [--threads T]
 *	[--local-addr IP] [--victim AGENT]
 *	floods URL with junk (tests/bench/junk.h) for N seconds and prints
 *	  sent=<n> answered=<n>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/bench/junk.h"

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: flood_itest URL --ca F --cert F --key F --seconds N\n");
		return (2);
	}
	coffer_tls_files tls = { 0 };
	const char *local = NULL, *victim = NULL;
	int seconds = 10, threads = 4;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--ca") == 0) {
			tls.ca = argv[i + 1];
		} else if (strcmp(argv[i], "--cert") == 0) {
			tls.cert = argv[i + 1];
		} else if (strcmp(argv[i], "--key") == 0) {
			tls.key = argv[i + 1];
		} else if (strcmp(argv[i], "--seconds") == 0) {
			seconds = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--threads") == 0) {
			threads = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--local-addr") == 0) {
			local = argv[i + 1];
		} else if (strcmp(argv[i], "--victim") == 0) {
			victim = argv[i + 1];
		} else {
			fprintf(stderr, "flood_itest: unknown option %s\n", argv[i]);
			return (2);
		}
	}
	junk_flood *f;
	if (junk_flood_start(argv[1], tls.ca != NULL ? &tls : NULL, local, threads, victim, &f) !=
	    0) {
		return (1);
	}
	sleep((unsigned)seconds);
	uint64_t sent = 0, answered = 0;
	junk_flood_stop(f, &sent, &answered);
	printf("sent=%llu answered=%llu\n", (unsigned long long)sent, (unsigned long long)answered);
	return (0);
}
