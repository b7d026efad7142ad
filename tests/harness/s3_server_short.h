/*
 * The short names tests/unit/common/repo/s3_test.c used while the scripted
 * S3 server lived inside it (struct server, server_start, SC_SLOWDOWN,
 * OBJ_SIZE, ...), mapped onto tests/harness/s3_server.h. They exist so the
 * move out of s3_test.c changed nothing in it but the server's removal and
 * one #include: s3_test.c is being split along with common/repo/s3.c, and
 * call sites renamed now would collide with that. Once the split has
 * landed, rename the call sites to the harness_s3_* names and delete this
 * header. Nothing else should include it: "server" as a macro is only safe
 * in a file that means this server by it.
 */
#ifndef COFFER_TESTS_HARNESS_S3_SERVER_SHORT_H
#define COFFER_TESTS_HARNESS_S3_SERVER_SHORT_H

#include "tests/harness/s3_server.h"

#define server            harness_s3_server
#define server_start      harness_s3_server_start
#define server_stop       harness_s3_server_stop
#define SC_SLOWDOWN       HARNESS_S3_SLOWDOWN
#define SC_COMPLETE_ERROR HARNESS_S3_COMPLETE_ERROR
#define SC_RESUME         HARNESS_S3_RESUME
#define SC_MULTIPART      HARNESS_S3_MULTIPART
#define OBJ_SIZE          HARNESS_S3_OBJ_SIZE

#endif
