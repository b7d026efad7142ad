/* A PagerDuty and webhook receiver on loopback; see receiver.h. */
#include "tests/harness/receiver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SCRIPT_MAX 4096

/* The script lives in the child only: /_script reaches it over the socket. */
static int script[SCRIPT_MAX];
static size_t script_head, script_len;

static int64_t
monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
respond(int fd, int status, const char *body)
{
	const char *reason = status == 202 ? "Accepted"
	    : status == 200                ? "OK"
	    : status == 400                ? "Bad Request"
	    : status == 429                ? "Too Many Requests"
	    : status == 404                ? "Not Found"
	                                   : "Internal Server Error";
	char head[256];
	int n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n",
	    status, reason, strlen(body));
	if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0) {
		return;
	}
}

static void
serve_one(int fd, FILE *log)
{
	static char buf[1 << 20];
	size_t len = 0;
	long clen = -1;
	char *body = NULL;
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0) {
			return;
		}
		len += (size_t)r;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (end != NULL && clen < 0) {
			char *cl = strcasestr(buf, "\r\nContent-Length:");
			clen = cl != NULL && cl < end ? strtol(cl + 17, NULL, 10) : 0;
			body = end + 4;
		}
		if (clen >= 0 && (size_t)(buf + len - body) >= (size_t)clen) {
			break;
		}
		if (len == sizeof(buf) - 1) {
			return;
		}
	}
	body[clen] = '\0';
	char method[8] = "", path[256] = "";
	if (sscanf(buf, "%7s %255s", method, path) != 2 || strcmp(method, "POST") != 0) {
		respond(fd, 404, "{}");
		return;
	}
	if (strcmp(path, "/_script") == 0) {
		char *save = NULL;
		for (char *t = strtok_r(body, " \n", &save); t != NULL;
		     t = strtok_r(NULL, " \n", &save)) {
			if (script_head + script_len < SCRIPT_MAX) {
				script[script_head + script_len++] = atoi(t);
			}
		}
		respond(fd, 200, "{}");
		return;
	}
	int status = 202;
	/* Scripted answers are PagerDuty's; a webhook always accepts. */
	if (script_len > 0 && strncmp(path, "/v2/", 4) == 0) {
		status = script[script_head++];
		script_len--;
	}
	for (char *p = body; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r') {
			*p = ' ';
		}
	}
	fprintf(log, "%" PRId64 " %d %s %s\n", monotonic_ms(), status, path, body);
	fflush(log);
	switch (status) {
	case 202:
		respond(fd, 202, "{\"status\":\"success\",\"message\":\"Event processed\"}");
		break;
	case 400:
		respond(fd, 400,
		    "{\"status\":\"invalid event\",\"message\":\"Event object is "
		    "invalid\",\"errors\":[\"'payload.severity' is invalid\"]}");
		break;
	case 429:
		respond(fd, 429,
		    "{\"status\":\"throttle event\",\"message\":\"Requests for "
		    "this service are arriving too quickly\"}");
		break;
	default:
		respond(fd, status, "{\"status\":\"error\",\"message\":\"internal error\"}");
		break;
	}
}

pid_t
harness_receiver_start(int port, const char *logpath, int *bound)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	/* SO_REUSEADDR: a driver may restart the receiver on the port its
	 * configuration names while the old one's connections linger. */
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
		fprintf(stderr, "harness receiver: cannot listen on port %d: %s\n", port,
		    strerror(errno));
		if (lfd >= 0) {
			close(lfd);
		}
		return (-1);
	}
	*bound = ntohs(a.sin_port);
	FILE *log = fopen(logpath, "w");
	if (log == NULL) {
		fprintf(
		    stderr, "harness receiver: cannot write %s: %s\n", logpath, strerror(errno));
		close(lfd);
		return (-1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "harness receiver: fork: %s\n", strerror(errno));
		fclose(log);
		close(lfd);
		return (-1);
	}
	if (pid == 0) {
		alarm(3600);
		for (;;) {
			int fd = accept(lfd, NULL, NULL);
			if (fd < 0) {
				if (errno == EINTR) {
					continue;
				}
				_exit(1);
			}
			serve_one(fd, log);
			close(fd);
		}
	}
	fclose(log);
	close(lfd);
	return (pid);
}

void
harness_receiver_stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

int
harness_receiver_script(int port, const char *statuses)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* The receiver answers within milliseconds; a stuck one fails the call. */
	struct timeval tv = { .tv_sec = 5 };
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		fprintf(
		    stderr, "harness receiver: cannot reach port %d: %s\n", port, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return (-1);
	}
	char req[512];
	int n = snprintf(req, sizeof(req),
	    "POST /_script HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s",
	    strlen(statuses), statuses);
	char ans[256] = "";
	size_t got = 0;
	if (n < 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		fprintf(stderr, "harness receiver: cannot send the script \"%s\"\n", statuses);
		return (-1);
	}
	for (ssize_t r;
	     got < sizeof(ans) - 1 && (r = recv(fd, ans + got, sizeof(ans) - 1 - got, 0)) > 0;) {
		got += (size_t)r;
	}
	ans[got] = '\0';
	close(fd);
	if (strncmp(ans, "HTTP/1.1 200 ", 13) != 0) {
		fprintf(stderr, "harness receiver: the script \"%s\" was answered: %.60s\n",
		    statuses, ans);
		return (-1);
	}
	return (0);
}

bool
harness_receiver_seen(const char *logpath, const char *a, const char *b)
{
	FILE *f = fopen(logpath, "r");
	if (f == NULL) {
		return (false);
	}
	static char line[1 << 20];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		found = strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
	}
	fclose(f);
	return (found);
}

int
harness_receiver_read(const char *logpath, harness_receiver_req **reqs, size_t *n)
{
	*reqs = NULL;
	*n = 0;
	FILE *f = fopen(logpath, "r");
	if (f == NULL) {
		fprintf(stderr, "harness receiver: cannot read %s: %s\n", logpath, strerror(errno));
		return (-1);
	}
	/* A line is a whole request (up to 1 MiB) plus its stamp. */
	static char line[(1 << 20) + 512];
	size_t cap = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (*n == cap) {
			cap = cap == 0 ? 256 : cap * 2;
			harness_receiver_req *more = realloc(*reqs, cap * sizeof(**reqs));
			if (more == NULL) {
				fprintf(stderr, "harness receiver: out of memory\n");
				rc = -1;
				break;
			}
			*reqs = more;
		}
		harness_receiver_req *r = &(*reqs)[*n];
		int off = 0;
		if (sscanf(line, "%" SCNd64 " %d %63s %n", &r->at, &r->status, r->path, &off) !=
		        3 ||
		    off == 0) {
			fprintf(stderr, "harness receiver: bad log line in %s: %s", logpath, line);
			rc = -1;
			break;
		}
		line[strcspn(line, "\n")] = '\0';
		r->body = strdup(line + off);
		if (r->body == NULL) {
			fprintf(stderr, "harness receiver: out of memory\n");
			rc = -1;
			break;
		}
		(*n)++;
	}
	fclose(f);
	if (rc != 0) {
		harness_receiver_free(*reqs, *n);
		*reqs = NULL;
		*n = 0;
	}
	return (rc);
}

void
harness_receiver_free(harness_receiver_req *reqs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(reqs[i].body);
	}
	free(reqs);
}
