/* Feeds arbitrary text to the cron parser and, when it parses, searches
 * next and prev in a few real zones from a fuzzed instant, checking the
 * promises that tie them together: next is after the start, prev is at or
 * before it, a run is its own prev, and nothing runs between prev and next.
 * Input: 8 bytes of start time, 1 byte choosing the zone, then the text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf/cron.h"
#include "common/conf/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const zones[] = { "UTC", "Europe/Rome", "America/New_York", "Australia/Sydney",
	"Asia/Kolkata", "Australia/Lord_Howe" };
#define NZONES (sizeof(zones) / sizeof(zones[0]))

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static coffer_tz *tzs[NZONES];
	static int loaded;
	if (!loaded) {
		for (size_t i = 0; i < NZONES; i++) {
			tzs[i] = coffer_tz_load(zones[i], NULL);
		}
		loaded = 1;
	}
	if (size < 9) {
		return (0);
	}
	uint64_t raw = 0;
	for (int i = 0; i < 8; i++) {
		raw = raw << 8 | data[i];
	}
	/* Mostly years 1900..2200, where schedules live; sometimes anything,
	 * to exercise the range checks. */
	int64_t t;
	if (raw >> 63) {
		t = (int64_t)raw;
	} else {
		t = -2208988800LL + (int64_t)(raw % (300ULL * 366 * 86400));
	}
	const coffer_tz *tz = tzs[data[8] % NZONES];
	if (tz == NULL) {
		tz = tzs[0];
	}
	char *text = malloc(size - 9 + 1);
	memcpy(text, data + 9, size - 9);
	text[size - 9] = '\0';
	coffer_err err;
	coffer_cron *c = coffer_cron_parse(text, &err);
	free(text);
	if (c == NULL) {
		if (err.msg[0] == '\0' || err.hint[0] == '\0') {
			abort();
		}
		return (0);
	}
	int64_t next = 0, prev = 0, again = 0;
	int rn = coffer_cron_next(c, tz, t, &next, &err);
	int rp = coffer_cron_prev(c, tz, t, &prev, &err);
	if (rn == 0 && next <= t) {
		abort();
	}
	if (rp == 0 && prev > t) {
		abort();
	}
	if (rn == 0 && coffer_cron_prev(c, tz, next, &again, &err) == 0 && again != next) {
		abort();
	}
	if (rn == 0 && rp == 0 && coffer_cron_next(c, tz, prev, &again, &err) == 0 &&
	    again != next) {
		abort();
	}
	coffer_cron_free(c);
	return (0);
}
