/* Numbers as text: see fmt.h. */
#include "common/base/fmt.h"

#include <inttypes.h>
#include <stdio.h>

const char *
coffer_fmt_i64(char buf[COFFER_FMT_INT_SIZE], int64_t v)
{
	snprintf(buf, COFFER_FMT_INT_SIZE, "%" PRId64, v);
	return (buf);
}

const char *
coffer_fmt_u64(char buf[COFFER_FMT_INT_SIZE], uint64_t v)
{
	snprintf(buf, COFFER_FMT_INT_SIZE, "%" PRIu64, v);
	return (buf);
}

const char *
coffer_fmt_bytes(char buf[COFFER_FMT_BYTES_SIZE], double bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	size_t u = 0;
	if (bytes < 0) {
		bytes = 0;
	}
	while (bytes >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		bytes /= 1024;
		u++;
	}
	if (u == 0) {
		snprintf(buf, COFFER_FMT_BYTES_SIZE, "%.0f B", bytes);
	} else {
		snprintf(buf, COFFER_FMT_BYTES_SIZE, "%.1f %s", bytes, units[u]);
	}
	return (buf);
}
