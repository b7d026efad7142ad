/* Feeds arbitrary bytes to the outbox's recovery code as the contents of its
 * newest segment file (and, per the first input byte, of the state file),
 * then opens it, reads everything, appends and acks. Whatever the bytes,
 * open must either refuse with an error or yield an outbox that works. */
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/outbox/outbox.h"
#include "common/base/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const agent_outbox_limits fuzz_limits = {
	.max_record = 4096,
	.segment_bytes = 16 * 1024,
	.max_bytes = 64 * 1024,
};

static char state_dir[256];
static char outbox_dir[300];

static void
put_file(const char *name, const uint8_t *data, size_t len)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", outbox_dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (len > 0 && write(fd, data, len) != (ssize_t)len)) {
		abort();
	}
	close(fd);
}

static void
empty_outbox(void)
{
	DIR *d = opendir(outbox_dir);
	if (d == NULL) {
		abort();
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.') {
			(void)unlinkat(dirfd(d), de->d_name, 0);
		}
	}
	closedir(d);
}

/* A valid segment header for first seq 1, so the fuzzer's bytes reach the
 * record scanner instead of all failing the header check. */
static void
seg_header(uint8_t *hdr)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	memset(hdr, 0, AGENT_OUTBOX_SEGMENT_HEADER);
	memcpy(hdr, "CFOUTBOX", 8);
	hdr[11] = 1;
	hdr[23] = 1;
	if (EVP_Digest(hdr, 24, md, &n, EVP_sha256(), NULL) != 1) {
		abort();
	}
	memcpy(hdr + 24, md, 8);
}

struct fuzz_read {
	uint64_t last;
	uint64_t sum;
};

static int
read_cb(uint64_t seq, const uint8_t *data, size_t len, void *arg)
{
	struct fuzz_read *r = arg;
	if (seq <= r->last) {
		abort();
	}
	r->last = seq;
	for (size_t k = 0; k < len; k++) {
		r->sum += data[k];
	}
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (state_dir[0] == '\0') {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(state_dir, sizeof(state_dir), "%s/outbox-fuzz-XXXXXX", base);
		if (mkdtemp(state_dir) == NULL) {
			abort();
		}
		snprintf(outbox_dir, sizeof(outbox_dir), "%s/outbox", state_dir);
		if (mkdir(outbox_dir, 0700) != 0) {
			abort();
		}
		coffer_log_init("outbox_fuzz", COFFER_LOG_ERROR);
	}
	if (size == 0) {
		return (0);
	}
	/* Byte 0 picks the shape: bit 0 prepends a valid segment header, bit 1
	 * takes the next 40 bytes as the state file. */
	uint8_t mode = data[0];
	data++;
	size--;
	empty_outbox();
	if ((mode & 2) != 0 && size >= 40) {
		put_file("state", data, 40);
		data += 40;
		size -= 40;
	}
	uint8_t *seg = malloc(AGENT_OUTBOX_SEGMENT_HEADER + size);
	if (seg == NULL) {
		abort();
	}
	size_t seg_len = 0;
	if ((mode & 1) != 0) {
		seg_header(seg);
		seg_len = AGENT_OUTBOX_SEGMENT_HEADER;
	}
	memcpy(seg + seg_len, data, size);
	seg_len += size;
	put_file("00000000000000000001.seg", seg, seg_len);
	free(seg);

	agent_outbox *ob;
	coffer_err err = { 0 };
	if (agent_outbox_open(state_dir, &fuzz_limits, &ob, &err) != 0) {
		return (0);
	}
	agent_outbox_stats st;
	if (agent_outbox_depth(ob, &st, &err) != 0) {
		abort();
	}
	struct fuzz_read r = { 0 };
	size_t got = 0;
	uint64_t n = 0;
	int rc;
	while ((rc = agent_outbox_foreach(ob, r.last, 64, 1 << 16, read_cb, &r, &got, &err)) == 0 &&
	    got > 0) {
		n += got;
	}
	/* What open verified must read back, all of it, in order, unless a
	 * record is over this handle's max_record (written with a higher one). */
	if (rc != 0 && rc != COFFER_ETOOBIG) {
		abort();
	}
	if (rc == 0 && (n != st.count || (n > 0 && r.last >= st.next_seq))) {
		abort();
	}
	uint64_t seq = 0;
	static const uint8_t ev[] = "fuzz";
	/* A recovered outbox must take new records and acks. */
	if (agent_outbox_append(ob, ev, sizeof(ev), &seq, &err) == 0) {
		if (agent_outbox_ack(ob, seq, &err) != 0) {
			abort();
		}
	}
	agent_outbox_close(ob);
	return (0);
}
