/*
 * Stream bench: throughput, CPU and peak memory of the data-path filters
 * (SHA-256, zstd at levels 1 and 3 with 0/1/2 workers, and the full chain
 * sha256 -> zstd -> seal -> sha256 when the seal filter is built), next to
 * the command-line tools on the same bytes (cat, sha256sum, zstd -T2), on
 * two inputs: incompressible random bytes and a pg_dump-like text stream.
 *
 * Every case runs in its own child process, reading a file through
 * coffer_filter_pump_fd exactly like a backup reads pg_dump's pipe, so
 * wait4() gives that case alone its CPU time (all threads) and its peak
 * RSS. The inputs are generated once into files in --dir and read from the
 * page cache; the first, untimed pass over each warms it. Prints a
 * markdown table on stdout. See docs/PERFORMANCE.md.
 *
 *   stream_bench [--mib N] [--dir DIR] [--repeat R] [--only TEXT]
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

#if __has_include("common/crypto/seal.h")
#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"
#define HAVE_SEAL 1
#else
#define HAVE_SEAL 0
#endif

#define PUMP_BUF (256 * 1024)

enum kind {
	K_TOOL,
	K_PUMP,
	K_SHA,
	K_ZSTD,
	K_CHAIN,
	K_UNZSTD,
	K_RESTORE
};

/* What a case reads: the plain input, or that input compressed (zstd -3) or
 * compressed and sealed, made once by prepare(). Throughput is always
 * counted in plain bytes, so restore cases compare with backup cases. */
enum source {
	SRC_PLAIN,
	SRC_ZST,
	SRC_SEALED
};

struct bench_case {
	const char *name;
	enum kind kind;
	enum source src;
	int level;
	int workers;
	bool count_out;      /* K_TOOL: count its stdout (else /dev/null) */
	const char *argv[7]; /* K_TOOL: the command; stdin is the input */
};

static const struct bench_case cases[] = {
	{ "`cat > /dev/null` (tool)", K_TOOL, SRC_PLAIN, 0, 0, false, { "cat", NULL } },
	{ "`sha256sum` (tool)", K_TOOL, SRC_PLAIN, 0, 0, false, { "sha256sum", NULL } },
	{ "`zstd -T2 -1` (tool)", K_TOOL, SRC_PLAIN, 0, 0, true,
	    { "zstd", "-q", "-T2", "-1", "-c", NULL } },
	{ "`zstd -T2 -3` (tool)", K_TOOL, SRC_PLAIN, 0, 0, true,
	    { "zstd", "-q", "-T2", "-3", "-c", NULL } },
	{ "pump to discard", K_PUMP, SRC_PLAIN, 0, 0, false, { NULL } },
	{ "sha256", K_SHA, SRC_PLAIN, 0, 0, false, { NULL } },
	{ "zstd -1, 0 workers", K_ZSTD, SRC_PLAIN, 1, 0, false, { NULL } },
	{ "zstd -1, 1 worker", K_ZSTD, SRC_PLAIN, 1, 1, false, { NULL } },
	{ "zstd -1, 2 workers", K_ZSTD, SRC_PLAIN, 1, 2, false, { NULL } },
	{ "zstd -3, 0 workers", K_ZSTD, SRC_PLAIN, 3, 0, false, { NULL } },
	{ "zstd -3, 1 worker", K_ZSTD, SRC_PLAIN, 3, 1, false, { NULL } },
	{ "zstd -3, 2 workers", K_ZSTD, SRC_PLAIN, 3, 2, false, { NULL } },
	{ "backup: sha256 > zstd -3 (2 w) > seal > sha256", K_CHAIN, SRC_PLAIN, 3, 2, false,
	    { NULL } },
	{ "`zstd -d` (tool)", K_TOOL, SRC_ZST, 0, 0, false, { "zstd", "-q", "-d", "-c", NULL } },
	{ "zstd decompress", K_UNZSTD, SRC_ZST, 0, 0, false, { NULL } },
	{ "restore: unseal > zstd -d > sha256", K_RESTORE, SRC_SEALED, 0, 0, false, { NULL } },
};

struct result {
	double wall;    /* seconds */
	double cpu;     /* user + sys seconds, all threads and children */
	long maxrss_kb; /* peak resident set of the case's process */
	uint64_t out;   /* bytes produced (compressed / sealed), 0 if n/a */
	bool ok;
};

static char keyring_path[1100];

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t
rng_next(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (rng * 0x2545f4914f6cdd1dull);
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return (-1);
		}
		p += n;
		len -= (size_t)n;
	}
	return (0);
}

static int
gen_random(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		return (-1);
	}
	uint64_t buf[8192];
	for (uint64_t done = 0; done < size; done += sizeof(buf)) {
		for (size_t i = 0; i < 8192; i++) {
			buf[i] = rng_next();
		}
		size_t n = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
		if (write_all(fd, buf, n) != 0) {
			close(fd);
			return (-1);
		}
	}
	return (close(fd));
}

/* Rows as pg_dump writes them in COPY blocks: ids that count up,
 * timestamps that creep forward, repeated enum-like values, names and
 * emails from small vocabularies, JSON, amounts. About 5x compressible
 * with zstd -3, in line with real dumps of business tables. */
static int
gen_text(const char *path, uint64_t size)
{
	static const char *const first[] = { "anna", "bruno", "chiara", "diego", "elena", "fabio",
		"giulia", "hugo", "irene", "jonas", "karin", "luca", "marta", "nils" };
	static const char *const last[] = { "rossi", "muller", "dubois", "garcia", "smith",
		"kowalski", "jansen", "novak", "silva", "berg", "costa", "weber" };
	static const char *const status[] = { "paid", "pending", "refunded", "failed", "shipped",
		"cancelled" };
	static const char *const plan[] = { "free", "team", "pro", "enterprise" };
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		return (-1);
	}
	char *buf = malloc(1 << 20);
	size_t used = 0;
	uint64_t done = 0, row = 0;
	time_t ts = 1700000000;
	while (done < size) {
		if (row % 100000 == 0) {
			used += (size_t)snprintf(buf + used, 512,
			    "%s--\n-- Data for Name: orders_%" PRIu64
			    "; Type: TABLE DATA; Schema: public; Owner: billing\n--\n\n"
			    "COPY public.orders_%" PRIu64 " (id, customer_id, customer_name, "
			    "email, status, created_at, amount, currency, attrs) FROM stdin;\n",
			    row == 0 ? "" : "\\.\n\n", row / 100000, row / 100000);
		}
		ts += (time_t)(rng_next() % 40);
		struct tm tm;
		gmtime_r(&ts, &tm);
		char when[40];
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S+00", &tm);
		const char *fn = first[rng_next() % 14];
		const char *ln = last[rng_next() % 12];
		uint64_t cust = 1000 + rng_next() % 50000;
		used += (size_t)snprintf(buf + used, 512,
		    "%" PRIu64 "\t%" PRIu64 "\t%s %s\t%s.%s%" PRIu64
		    "@example.com\t%s\t%s\t%" PRIu64
		    ".%02u\tEUR\t{\"plan\": \"%s\", \"seats\": %u, \"trial\": %s}\n",
		    row + 1, cust, fn, ln, fn, ln, cust % 100, status[rng_next() % 6], when,
		    rng_next() % 5000, (unsigned)(rng_next() % 100), plan[rng_next() % 4],
		    (unsigned)(1 + rng_next() % 50), rng_next() % 3 == 0 ? "true" : "false");
		row++;
		if (used > (1 << 20) - 1024 || done + used >= size) {
			size_t n = size - done < used ? (size_t)(size - done) : used;
			if (write_all(fd, buf, n) != 0) {
				free(buf);
				close(fd);
				return (-1);
			}
			done += n;
			used = 0;
		}
	}
	free(buf);
	return (close(fd));
}

/* Runs in the case's child: builds the chain, pumps the input, reports
 * the output byte count on out_fd. Exit status 0 on success. */
static int
run_filters(const struct bench_case *c, int in_fd, int out_fd)
{
	coffer_err err = { 0 };
	coffer_filter *chain = NULL;
	coffer_filter *measured = NULL; /* whose output bytes to report */
	coffer_filter *sink = coffer_discard_sink_new(&err);
	switch (c->kind) {
	case K_PUMP:
		chain = sink;
		break;
	case K_SHA:
		chain = coffer_sha256_filter_new(sink, &err);
		break;
	case K_ZSTD:
		measured = coffer_zstd_compress_new(sink, c->level, c->workers, &err);
		chain = measured;
		break;
	case K_CHAIN: {
#if HAVE_SEAL
		coffer_keyring *ring = NULL;
		if (coffer_keyring_load(keyring_path, &ring, &err) != 0) {
			break;
		}
		measured = coffer_count_filter_new(sink, &err);
		coffer_filter *sha_out = coffer_sha256_filter_new(measured, &err);
		chain = coffer_sha256_filter_new(
		    coffer_zstd_compress_new(coffer_seal_filter_new(sha_out, ring, NULL, 0, &err),
		        c->level, c->workers, &err),
		    &err);
		coffer_keyring_free(ring);
#endif
		break;
	}
	case K_UNZSTD:
		chain = coffer_zstd_decompress_new(sink, &err);
		break;
	case K_RESTORE: {
#if HAVE_SEAL
		/* The ring must outlive the unseal filter; the process ends
		 * right after, so it is never freed. */
		coffer_keyring *ring = NULL;
		if (coffer_keyring_load(keyring_path, &ring, &err) != 0) {
			break;
		}
		chain = coffer_unseal_filter_new(
		    coffer_zstd_decompress_new(coffer_sha256_filter_new(sink, &err), &err), ring,
		    &err);
#endif
		break;
	}
	case K_TOOL:
		break;
	}
	if (chain == NULL) {
		coffer_err_print("stream_bench", &err);
		return (1);
	}
	if (coffer_filter_pump_fd(in_fd, chain, PUMP_BUF, &err) != 0) {
		coffer_err_print("stream_bench", &err);
		return (1);
	}
	uint64_t out = 0;
	if (measured != NULL) {
		out = c->kind == K_ZSTD ? coffer_zstd_bytes_out(measured)
		                        : coffer_count_filter_bytes(measured);
	}
	int rv = write_all(out_fd, &out, sizeof(out)) == 0 ? 0 : 1;
	coffer_filter_free_chain(chain);
	return (rv);
}

static struct result
run_case(const struct bench_case *c, const char *input)
{
	struct result r = { 0 };
	int p[2];
	if (pipe(p) != 0) {
		return (r);
	}
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return (r);
	}
	if (pid == 0) {
		close(p[0]);
		int in = open(input, O_RDONLY);
		if (in < 0) {
			_exit(1);
		}
		if (c->kind != K_TOOL) {
			_exit(run_filters(c, in, p[1]));
		}
		/* The tool's output is counted through the pipe, so the table
		 * can show its compressed size too. */
		int devnull = open("/dev/null", O_WRONLY);
		if (dup2(in, 0) < 0 || dup2(c->count_out ? p[1] : devnull, 1) < 0) {
			_exit(1);
		}
		close(p[1]);
		execvp(c->argv[0], (char *const *)c->argv);
		_exit(127);
	}
	close(p[1]);
	/* Drain the pipe: the output size (filters) or the tool's output. */
	uint64_t total = 0;
	uint8_t buf[65536];
	ssize_t n;
	while ((n = read(p[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			break;
		}
		if (c->kind != K_TOOL && n == (ssize_t)sizeof(uint64_t)) {
			memcpy(&total, buf, sizeof(total));
		} else {
			total += (uint64_t)n;
		}
	}
	close(p[0]);
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) != pid) {
		return (r);
	}
	r.wall = now() - t0;
	r.cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	r.maxrss_kb = ru.ru_maxrss;
	r.out = total;
	r.ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	return (r);
}

static void
warm(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		return;
	}
	static uint8_t buf[1 << 20];
	while (read(fd, buf, sizeof(buf)) > 0) {
	}
	close(fd);
}

#if HAVE_SEAL
/* Writes plain compressed to zst, and compressed and sealed to sealed,
 * with the same filters a backup uses. */
static int
prepare(const char *plain, const char *zst, const char *sealed)
{
	coffer_err err = { 0 };
	coffer_keyring *ring = NULL;
	int rv = coffer_keyring_load(keyring_path, &ring, &err);
	for (int k = 0; rv == 0 && k < 2; k++) {
		int in = open(plain, O_RDONLY);
		int out = open(k == 0 ? zst : sealed, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		coffer_filter *chain = out < 0 ? NULL : coffer_fd_sink_new(out, &err);
		if (k == 1) {
			chain = coffer_seal_filter_new(chain, ring, NULL, 0, &err);
		}
		chain = coffer_zstd_compress_new(chain, 3, 2, &err);
		if (in < 0 || chain == NULL) {
			rv = -1;
		} else {
			rv = coffer_filter_pump_fd(in, chain, PUMP_BUF, &err);
		}
		coffer_filter_free_chain(chain);
		if (in >= 0) {
			close(in);
		}
		if (out >= 0) {
			close(out);
		}
	}
	if (rv != 0) {
		coffer_err_print("stream_bench", &err);
	}
	coffer_keyring_free(ring);
	return (rv);
}
#endif

static void
usage(void)
{
	fprintf(stderr,
	    "usage: stream_bench [--mib N] [--dir DIR] [--repeat R] [--only TEXT]\n"
	    "  --mib N     size of each input in MiB (default 256)\n"
	    "  --dir DIR   where to write the inputs (default $TMPDIR or /tmp)\n"
	    "  --repeat R  runs per case; the fastest is reported (default 1)\n"
	    "  --only TEXT run only the cases whose name contains TEXT\n");
}

int
main(int argc, char **argv)
{
	uint64_t mib = 256;
	int repeat = 1;
	const char *only = NULL;
	const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
			mib = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			base = argv[++i];
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
			repeat = atoi(argv[++i]);
		} else {
			usage();
			return (2);
		}
	}
	if (mib == 0 || repeat < 1) {
		usage();
		return (2);
	}
	char dir[1024], rnd[1100], txt[1100];
	snprintf(dir, sizeof(dir), "%s/stream-bench-XXXXXX", base);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr,
		    "stream_bench: cannot create a directory in %s: %s "
		    "(hint: pass --dir with a writable directory)\n",
		    base, strerror(errno));
		return (1);
	}
	snprintf(rnd, sizeof(rnd), "%s/random.bin", dir);
	snprintf(txt, sizeof(txt), "%s/dump.txt", dir);
	snprintf(keyring_path, sizeof(keyring_path), "%s/bench.keys", dir);
	uint64_t size = mib << 20;
	fprintf(stderr, "stream_bench: generating 2 x %" PRIu64 " MiB in %s\n", mib, dir);
	if (gen_random(rnd, size) != 0 || gen_text(txt, size) != 0) {
		fprintf(stderr,
		    "stream_bench: cannot write the inputs in %s: %s "
		    "(hint: it needs %" PRIu64 " MiB free)\n",
		    dir, strerror(errno), 2 * mib);
		return (1);
	}
#if HAVE_SEAL
	{
		coffer_err err = { 0 };
		char id[COFFER_KEYRING_ID_MAX + 1];
		if (coffer_keyring_generate(keyring_path, "bench", id, sizeof(id), &err) != 0) {
			coffer_err_print("stream_bench", &err);
			return (1);
		}
	}
#endif
	const char *inputs[2] = { rnd, txt };
	const char *labels[2] = { "random (incompressible)", "pg_dump-like text" };
	char zst[1100], sealed[1100];
	snprintf(zst, sizeof(zst), "%s/input.zst", dir);
	snprintf(sealed, sizeof(sealed), "%s/input.sealed", dir);
	printf("| input | case | MB/s | CPU s | CPU %% | MB per CPU s | peak RSS MiB | out/in |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
	for (int in = 0; in < 2; in++) {
		bool have_packed = false;
#if HAVE_SEAL
		/* In a child, so the parent's heap stays small: every case is
		 * forked from it and would otherwise start with its pages. */
		pid_t pid = fork();
		if (pid == 0) {
			_exit(prepare(inputs[in], zst, sealed) == 0 ? 0 : 1);
		}
		int st = 0;
		have_packed =
		    pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
		warm(zst);
		warm(sealed);
#endif
		warm(inputs[in]);
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			const struct bench_case *c = &cases[i];
			if ((c->kind == K_CHAIN && !HAVE_SEAL) ||
			    (c->src != SRC_PLAIN && !have_packed) ||
			    (only != NULL && strstr(c->name, only) == NULL)) {
				continue;
			}
			const char *src = c->src == SRC_PLAIN ? inputs[in]
			    : c->src == SRC_ZST               ? zst
			                                      : sealed;
			struct result best = { 0 };
			for (int k = 0; k < repeat; k++) {
				struct result r = run_case(c, src);
				if (r.ok && (!best.ok || r.wall < best.wall)) {
					best = r;
				}
			}
			if (!best.ok) {
				printf("| %s | %s | failed | | | | |\n", labels[in], c->name);
				fflush(stdout);
				continue;
			}
			char ratio[32] = "";
			if (best.out > 0) {
				snprintf(
				    ratio, sizeof(ratio), "%.4f", (double)best.out / (double)size);
			}
			/* Bytes per CPU second is what survives a busy machine:
			 * wall-clock rates fall when other work shares the cores. */
			double cpu = best.cpu > 0.001 ? best.cpu : 0.001;
			printf("| %s | %s | %.0f | %.2f | %.0f | %.0f | %.1f | %s |\n", labels[in],
			    c->name, (double)size / best.wall / 1e6, best.cpu,
			    100.0 * best.cpu / best.wall, (double)size / cpu / 1e6,
			    (double)best.maxrss_kb / 1024.0, ratio);
			fflush(stdout);
		}
	}
	unlink(rnd);
	unlink(txt);
	unlink(zst);
	unlink(sealed);
	unlink(keyring_path);
	rmdir(dir);
	return (0);
}
