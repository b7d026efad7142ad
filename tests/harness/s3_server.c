/* A scripted S3 server on loopback; see s3_server.h for what it fakes. */
#include "tests/harness/s3_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

static void
send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0) {
			return;
		}
		p += n;
		len -= (size_t)n;
	}
}

static void
respond(int fd, int status, const char *extra, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s"
	    "Connection: close\r\n\r\n",
	    status, len, extra != NULL ? extra : "");
	send_all(fd, head, (size_t)n);
	if (len > 0) {
		send_all(fd, body, len);
	}
}

/* The value of header name in head, trimmed, into v ("" when absent). */
static const char *
header_value(const char *head, const char *name, char *v, size_t size)
{
	v[0] = '\0';
	size_t nl = strlen(name);
	for (const char *p = head; (p = strstr(p, "\r\n")) != NULL; p += 2) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *s = p + 3 + nl;
			while (*s == ' ') {
				s++;
			}
			size_t l = strcspn(s, "\r");
			snprintf(v, size, "%.*s", (int)l, s);
			break;
		}
	}
	return (v);
}

/* Announces HARNESS_S3_HUGE bytes and streams them until the client stops
 * reading: the body is never held, only one buffer repeated. */
static void
stream_huge(struct harness_s3_server *sv, int fd, int status)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d X\r\nContent-Length: %llu\r\nConnection: close\r\n\r\n", status,
	    (unsigned long long)HARNESS_S3_HUGE);
	send_all(fd, head, (size_t)n);
	static char chunk[65536];
	memset(chunk, '<', sizeof(chunk));
	for (uint64_t sent = 0; sent < HARNESS_S3_HUGE && !sv->stop; sent += sizeof(chunk)) {
		if (send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) != (ssize_t)sizeof(chunk)) {
			break;
		}
		sv->huge_sent += sizeof(chunk);
	}
}

static void
hostile(struct harness_s3_server *sv, int fd)
{
	/* Ten levels of ten: 10^10 "lol"s, 30 GB if anything expanded it. */
	static const char laughs[] =
	    "<?xml version=\"1.0\"?>\n<!DOCTYPE ListBucketResult [\n"
	    "<!ENTITY l0 \"lol\">\n"
	    "<!ENTITY l1 \"&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;\">\n"
	    "<!ENTITY l2 \"&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;\">\n"
	    "<!ENTITY l3 \"&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;\">\n"
	    "<!ENTITY l4 \"&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;\">\n"
	    "<!ENTITY l5 \"&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;\">\n"
	    "<!ENTITY l6 \"&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;\">\n"
	    "<!ENTITY l7 \"&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;\">\n"
	    "<!ENTITY l8 \"&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;\">\n"
	    "<!ENTITY l9 \"&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;\">\n"
	    "]>\n<ListBucketResult><IsTruncated>false</IsTruncated><Contents>"
	    "<Key>&l9;</Key><Size>1</Size></Contents></ListBucketResult>";
	static const char xxe[] = "<?xml version=\"1.0\"?>\n<!DOCTYPE ListBucketResult [\n"
	                          "<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
	                          "<ListBucketResult><IsTruncated>false</IsTruncated><Contents>"
	                          "<Key>&x;</Key><Size>1</Size></Contents></ListBucketResult>";
	static const char lock[] = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled"
	                           "</ObjectLockEnabled></ObjectLockConfiguration>";
	switch (sv->hostile) {
	case HARNESS_S3_LAUGHS:
		respond(fd, 200, NULL, laughs, strlen(laughs));
		break;
	case HARNESS_S3_XXE:
		respond(fd, 200, NULL, xxe, strlen(xxe));
		break;
	case HARNESS_S3_HUGE_200:
		stream_huge(sv, fd, 200);
		break;
	case HARNESS_S3_HUGE_ERROR:
		stream_huge(sv, fd, 500);
		break;
	case HARNESS_S3_LOCK_ON:
		respond(fd, 200, NULL, lock, strlen(lock));
		break;
	}
}

static void
handle(struct harness_s3_server *sv, int fd)
{
	char *head = sv->head;
	char hv[256], hv2[256];
	size_t used = 0;
	char *end = NULL;
	while (used < sizeof(sv->head) - 1) {
		ssize_t n = recv(fd, head + used, sizeof(sv->head) - 1 - used, 0);
		if (n <= 0) {
			return;
		}
		used += (size_t)n;
		head[used] = '\0';
		if ((end = strstr(head, "\r\n\r\n")) != NULL) {
			break;
		}
	}
	if (end == NULL) {
		return;
	}
	size_t hlen = (size_t)(end + 4 - head);
	size_t clen = strtoul(header_value(head, "Content-Length", hv, sizeof(hv)), NULL, 10);
	uint8_t *body = malloc(clen + 1);
	size_t have = used - hlen;
	memcpy(body, head + hlen, have < clen ? have : clen);
	while (have < clen) {
		ssize_t n = recv(fd, body + have, clen - have, 0);
		if (n <= 0) {
			break;
		}
		have += (size_t)n;
	}
	*end = '\0';
	char method[16], target[1024];
	sscanf(head, "%15s %1023s", method, target);
	sv->requests++;
	if (sv->nlog < 64) {
		snprintf(sv->log[sv->nlog++], sizeof(sv->log[0]), "%s %.150s", method, target);
	}
	char sum[64];
	snprintf(
	    sum, sizeof(sum), "%s", header_value(head, "x-amz-checksum-sha256", hv, sizeof(hv)));
	if (strcmp(method, "PUT") == 0 && clen > 0) {
		uint8_t d[32];
		unsigned dn = 32;
		char b64[48];
		EVP_Digest(body, clen, d, &dn, EVP_sha256(), NULL);
		EVP_EncodeBlock((unsigned char *)b64, d, 32);
		if (strcmp(b64, sum) != 0) {
			sv->bad_checksums++;
		}
	}
	if (strcmp(header_value(head, "x-amz-security-token", hv, sizeof(hv)), "TOKEN-1") == 0 &&
	    strstr(header_value(head, "Authorization", hv2, sizeof(hv2)), "x-amz-security-token") !=
	        NULL) {
		sv->saw_token++;
	}
	snprintf(sv->range, sizeof(sv->range), "%s", header_value(head, "Range", hv, sizeof(hv)));
	if (sv->range[0] != '\0') {
		snprintf(sv->if_match, sizeof(sv->if_match), "%s",
		    header_value(head, "If-Match", hv, sizeof(hv)));
	}

	if (sv->script == HARNESS_S3_HOSTILE) {
		hostile(sv, fd);
		free(body);
		return;
	}
	static const char slow[] = "<Error><Code>SlowDown</Code><Message>Please reduce your "
	                           "request rate.</Message></Error>";
	if (sv->script == HARNESS_S3_SLOWDOWN) {
		if (sv->slowdowns_left-- > 0) {
			respond(fd, 503, NULL, slow, strlen(slow));
		} else {
			static const char list[] =
			    "<ListBucketResult><IsTruncated>false</IsTruncated>"
			    "<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>";
			respond(fd, 200, NULL, list, strlen(list));
		}
	} else if (sv->script == HARNESS_S3_RESUME) {
		if (sv->range[0] == '\0') {
			/* Announce the whole object, send half, hang up. */
			char h[256];
			int n = snprintf(h, sizeof(h),
			    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
			    "ETag: \"v1\"\r\nConnection: close\r\n\r\n",
			    HARNESS_S3_OBJ_SIZE);
			send_all(fd, h, (size_t)n);
			send_all(fd, sv->obj, HARNESS_S3_OBJ_SIZE / 2);
		} else {
			size_t from = strtoul(sv->range + 6, NULL, 10);
			char extra[128];
			snprintf(extra, sizeof(extra),
			    "ETag: \"v1\"\r\nContent-Range: bytes %zu-%d/%d\r\n", from,
			    HARNESS_S3_OBJ_SIZE - 1, HARNESS_S3_OBJ_SIZE);
			respond(fd, from <= HARNESS_S3_OBJ_SIZE ? 206 : 416, extra,
			    (const char *)sv->obj + from, HARNESS_S3_OBJ_SIZE - from);
		}
	} else {
		/* Multipart: initiate, parts, complete; HEAD says "no such key". */
		if (strcmp(method, "HEAD") == 0) {
			respond(fd, 404, NULL, NULL, 0);
		} else if (strcmp(method, "POST") == 0 && strstr(target, "?uploads") != NULL) {
			static const char init[] = "<InitiateMultipartUploadResult><UploadId>UP-1"
			                           "</UploadId></InitiateMultipartUploadResult>";
			respond(fd, 200, NULL, init, strlen(init));
		} else if (strcmp(method, "PUT") == 0 && strstr(target, "partNumber=") != NULL &&
		    sv->drop_parts > 0) {
			sv->drop_parts--; /* connection dropped mid-part: no answer at all */
		} else if (strcmp(method, "PUT") == 0 && sv->baddigest_part > 0 &&
		    atoi(strstr(target, "partNumber=") + 11) == sv->baddigest_part) {
			static const char bd[] =
			    "<Error><Code>BadDigest</Code><Message>The "
			    "Content-MD5 or checksum value that you specified did not match what "
			    "the server received.</Message></Error>";
			respond(fd, 400, NULL, bd, strlen(bd));
		} else if (strcmp(method, "PUT") == 0 && strstr(target, "partNumber=") != NULL) {
			sv->part_puts++;
			sv->max_part = clen > sv->max_part ? clen : sv->max_part;
			respond(fd, 200, "ETag: \"part\"\r\n", NULL, 0);
		} else if (strcmp(method, "POST") == 0 && strstr(target, "uploadId=") != NULL) {
			if (sv->script == HARNESS_S3_COMPLETE_ERROR) {
				static const char e[] =
				    "<?xml version=\"1.0\"?>\n<Error><Code>InternalError"
				    "</Code><Message>We encountered an internal error.</Message></Error>";
				respond(fd, 200, NULL, e, strlen(e));
			} else {
				static const char ok[] =
				    "<CompleteMultipartUploadResult><ETag>\"all-3\""
				    "</ETag></CompleteMultipartUploadResult>";
				respond(fd, 200, "x-amz-version-id: V3\r\n", ok, strlen(ok));
			}
		} else if (strcmp(method, "DELETE") == 0) {
			respond(fd, 204, NULL, NULL, 0);
		} else {
			respond(fd, 400, NULL, NULL, 0);
		}
	}
	free(body);
}

static void *
serve(void *arg)
{
	struct harness_s3_server *sv = arg;
	while (!sv->stop) {
		int c = accept(sv->fd, NULL, NULL);
		if (c < 0) {
			continue;
		}
		if (!sv->stop) {
			handle(sv, c);
		}
		close(c);
	}
	return (NULL);
}

struct harness_s3_server *
harness_s3_server_start(enum harness_s3_script script)
{
	struct harness_s3_server *sv = calloc(1, sizeof(*sv));
	if (sv == NULL) {
		fprintf(stderr, "harness_s3_server_start: out of memory\n");
		abort();
	}
	sv->script = script;
	for (int i = 0; i < HARNESS_S3_OBJ_SIZE; i++) {
		sv->obj[i] = (uint8_t)(i * 7 + (i >> 8));
	}
	sv->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	/* Not a test failure but a host without loopback: no point going on. */
	if (sv->fd < 0 || bind(sv->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(sv->fd, 16) != 0 || getsockname(sv->fd, (struct sockaddr *)&a, &al) != 0) {
		perror("harness_s3_server_start: cannot listen on loopback");
		abort();
	}
	sv->port = ntohs(a.sin_port);
	if (pthread_create(&sv->thread, NULL, serve, sv) != 0) {
		fprintf(stderr, "harness_s3_server_start: cannot start the server thread\n");
		abort();
	}
	return (sv);
}

void
harness_s3_server_stop(struct harness_s3_server *sv)
{
	sv->stop = 1;
	/* Wake accept() with one last connection. */
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)sv->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	connect(c, (struct sockaddr *)&a, sizeof(a));
	close(c);
	pthread_join(sv->thread, NULL);
	close(sv->fd);
	free(sv);
}
