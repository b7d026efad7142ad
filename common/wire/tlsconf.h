/*
 * TLS configuration for the wire transport: builds the nng_tls_config a
 * listener or a dialer needs from PEM files, and decides whether a URL may be
 * used without TLS at all.
 *
 * What it promises:
 * - Every file is read and checked here, with OpenSSL, before NNG sees it, so
 *   a missing, unreadable, empty, wrongly typed or mismatched certificate or
 *   key is reported naming the file and what to do, instead of NNG's bare
 *   "Cryptographic error". Files are read whole but never beyond
 *   COFFER_TLSCONF_MAX_FILE bytes.
 * - NNG 1.5.2 on Debian is built on mbedTLS 2.28 (TLS 1.2 only), which cannot
 *   use Ed25519 or Ed448 certificates: such keys are refused with a hint to
 *   use P-256, rather than failing later in the handshake.
 * - A server config always requires and verifies a client certificate
 *   (NNG_TLS_AUTH_MODE_REQUIRED); a client config always verifies the
 *   server's certificate and the name in it.
 *
 * Thread-safety: every function may be called from any thread; the configs
 * returned are NNG reference-counted objects the caller releases with
 * nng_tls_config_free once a listener or dialer holds them.
 */
#ifndef COFFER_COMMON_WIRE_TLSCONF_H
#define COFFER_COMMON_WIRE_TLSCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "common/base/error.h"

/* PEM files are small; anything larger is not a certificate we want to parse. */
#define COFFER_TLSCONF_MAX_FILE (1u << 20)

typedef struct coffer_tls_files {
	const char *ca;   /* PEM bundle of CA certificates that sign peers */
	const char *cert; /* own certificate (and chain), PEM */
	const char *key;  /* own private key, PEM, unencrypted: P-256/P-384 or RSA >= 2048 */
	const char *crl;  /* servers: the CA's revocation list, PEM; NULL for none */
} coffer_tls_files;

/* What a URL's scheme says about transport security. */
typedef enum coffer_tlsconf_kind {
	COFFER_TLSCONF_TLS = 0,   /* tls+tcp://, tls+tcp4://, tls+tcp6:// */
	COFFER_TLSCONF_PLAIN = 1, /* tcp://, tcp4://, tcp6:// to a loopback address or allowed */
	COFFER_TLSCONF_LOCAL = 2, /* ipc://, inproc://: never leaves the host */
} coffer_tlsconf_kind;

/* Checks that url is one the transport accepts and says whether it needs TLS.
 * Plain TCP is refused (COFFER_EPERM) unless the host is a loopback address
 * (127.0.0.0/8, ::1, "localhost") or insecure is true; other schemes (ws://,
 * zt://, ...) are refused with COFFER_EINVAL. */
int coffer_tlsconf_check_url(
    const char *url, bool insecure, coffer_tlsconf_kind *kind, coffer_err *err);

/* A listener's config: own cert + key and the CA client certificates must
 * chain to; client certificates are required, and refused when files->crl
 * lists them (the CRL must be signed by the CA and not expired: mbedTLS
 * refuses every client under an expired CRL). Sets *out on success. */
int coffer_tlsconf_server_new(const coffer_tls_files *files, nng_tls_config **out, coffer_err *err);

/* A dialer's config: the CA the server's certificate must chain to, the name
 * it must carry (server_name: required, normally the URL's host), and own
 * cert + key (both NULL: connect without a client certificate, which a
 * Coffer server refuses; only tests want that). */
int coffer_tlsconf_client_new(
    const coffer_tls_files *files, const char *server_name, nng_tls_config **out, coffer_err *err);

/* Whether now_ms (Unix ms, normally this host's clock) lies inside the
 * validity of the own certificate (files->cert) and of every CA certificate
 * (files->ca). 0 when it does (or a file cannot be read: loading reports
 * that); COFFER_EAUTH with a message that names this host's clock, the
 * certificate's notBefore or notAfter and the file, and a hint to check NTP.
 * A TLS engine reports a certificate that is not yet valid as an unknown CA
 * or a failed handshake; this says why. The configs above log the same
 * at load. */
int coffer_tlsconf_clock_check(const coffer_tls_files *files, int64_t now_ms, coffer_err *err);

/* The earliest notAfter (Unix ms) among the own certificate (files->cert)
 * and the CA certificates (files->ca, when set), and into which (size
 * bytes) which file holds it: for `check`, which warns before a
 * certificate expires. COFFER_EINVAL when a file holds no certificate;
 * a file that cannot be read is named as when loading. */
int coffer_tlsconf_expiry(const coffer_tls_files *files, int64_t *not_after_ms, char *which,
    size_t size, coffer_err *err);

/* The host part of url ("127.0.0.1", "::1", "coordinator.internal") into buf,
 * without brackets; "" for ipc:// and inproc://. Returns 0 or COFFER_EINVAL. */
int coffer_tlsconf_url_host(const char *url, char *buf, size_t size, coffer_err *err);

#endif
