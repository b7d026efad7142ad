/* The physical archive reader (restore's unpacking filter): arbitrary bytes
 * as an archive, checked against a fixed manifest, must unpack or be refused
 * -- never crash, leak, or create anything outside the scratch directory.
 * The WAL name parser gets the same bytes as a name. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/backup/wal.h"
#include "agent/restore/physical_restore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return (remove(path));
}

static char root[128];

static void
cleanup(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static coffer_manifest *m;
	if (m == NULL) {
		snprintf(root, sizeof(root), "/tmp/coffer-unpack-fuzz.%ld", (long)getpid());
		atexit(cleanup);
		if (coffer_manifest_new(&m, NULL) != 0) {
			abort();
		}
		/* sha256("15\n") and sha256("") */
		coffer_manifest_add_file(m, "PG_VERSION", 3,
		    "238903180cc104ec2c5d8b3f20c5bc61b389ec0a967df8cc208cdc7cd454174f", NULL);
		coffer_manifest_add_file(m, "base/1/1", 0,
		    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", NULL);
	}
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(root, 0700) != 0) {
		abort();
	}
	int fd = open(root, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		abort();
	}
	coffer_filter *u = agent_physical_restore_unpack_new(fd, m, NULL, 0, NULL);
	if (u != NULL) {
		/* Two writes, so state carried across calls is exercised too. */
		size_t half = size / 2;
		if (coffer_filter_write(u, data, half, NULL) == 0 &&
		    coffer_filter_write(u, data + half, size - half, NULL) == 0)
			(void)coffer_filter_finish(u, NULL);
		coffer_filter_free(u);
	}
	close(fd);
	char name[64];
	size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
	memcpy(name, data, n);
	name[n] = '\0';
	agent_wal_kind kind;
	uint32_t tl;
	(void)agent_wal_name_parse(name, &kind, &tl, NULL);
	uint64_t sysid;
	(void)agent_wal_header_sysid(data, size, &sysid, NULL);
	return (0);
}
