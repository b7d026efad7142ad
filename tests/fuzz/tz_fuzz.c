/* Feeds arbitrary bytes to the TZif parser, and, when they load, converts
 * instants both ways and runs a schedule in the resulting zone. A zone file
 * is read from disk, so a damaged or hostile one must be refused or used
 * without crashing or looping. Input: 8 bytes of time, then the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/conf/cron.h"
#include "common/conf/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static coffer_cron *sched;
	if (sched == NULL && (sched = coffer_cron_parse("*/7 1-3 * * *", NULL)) == NULL) {
		abort();
	}
	if (size < 8) {
		return (0);
	}
	uint64_t raw = 0;
	for (int i = 0; i < 8; i++) {
		raw = raw << 8 | data[i];
	}
	int64_t t = -2208988800LL + (int64_t)(raw % (400ULL * 366 * 86400));
	coffer_err err;
	coffer_tz *tz = coffer_tz_parse("fuzz", data + 8, size - 8, &err);
	if (tz == NULL) {
		if (err.msg[0] == '\0' || err.hint[0] == '\0') {
			abort();
		}
		return (0);
	}
	coffer_tm tm;
	coffer_tz_local r;
	if (coffer_tz_to_local(tz, t, &tm) != 0 || tm.month < 1 || tm.month > 12) {
		abort();
	}
	if (coffer_tz_from_local(tz, &tm, &r) != 0) {
		abort();
	}
	(void)coffer_tz_resolve(tz, t, &r);
	int64_t next;
	if (coffer_cron_next(sched, tz, t, &next, &err) == 0 && next <= t) {
		abort();
	}
	int64_t prev;
	if (coffer_cron_prev(sched, tz, t, &prev, &err) == 0 && prev > t) {
		abort();
	}
	coffer_tz_free(tz);
	return (0);
}
