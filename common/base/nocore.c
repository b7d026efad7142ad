/* No core dumps; see common/base/nocore.h. */
#include "common/base/nocore.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int
coffer_nocore_apply(coffer_err *err)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_CORE, &rl) != 0) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "cannot read the core size limit: %s", strerror(errno)));
	}
	rl.rlim_cur = 0;
	if (setrlimit(RLIMIT_CORE, &rl) != 0) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "cannot disable core dumps: %s", strerror(errno)));
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "cannot make the process non-dumpable: %s", strerror(errno)));
	}
	return (0);
}
