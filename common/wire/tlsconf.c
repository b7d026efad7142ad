/*
 * TLS configuration; see common/wire/tlsconf.h for the promises.
 *
 * Design notes.
 * NNG's own loaders (nng_tls_config_ca_file, _cert_key_file) answer every
 * problem with NNG_ECRYPTO and want certificate and key in one file, while
 * our configs name them separately. So the files are read here, parsed once
 * with OpenSSL to give a useful error (which file, what is wrong with it),
 * and then handed to NNG as PEM strings with nng_tls_config_ca_chain and
 * nng_tls_config_own_cert. The key's PEM text is wiped before it is freed.
 */
#include "common/wire/tlsconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/base/clock.h"
#include "common/base/log.h"

/* Reads a whole PEM file into a NUL-terminated buffer the caller frees. */
static int
tls_read_file(const char *what, const char *path, char **out, size_t *out_len, coffer_err *err)
{
	if (path == NULL || path[0] == '\0') {
		coffer_err_set(err, COFFER_EINVAL, "no %s file configured", what);
		return (coffer_err_hint(
		    err, "set the %s key to a PEM file (deploy/certs.sh makes one)", what));
	}
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		coffer_err_errno(err, errno, "open TLS file", path);
		return (coffer_err_wrap(err, "loading %s", what));
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0) {
		int e = errno;
		fclose(f);
		return (coffer_err_errno(err, e, "stat TLS file", path));
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (unsigned long long)st.st_size > COFFER_TLSCONF_MAX_FILE) {
		fclose(f);
		coffer_err_set(err, COFFER_EINVAL, "%s file %s is %s", what, path,
		    !S_ISREG(st.st_mode)  ? "not a regular file"
		        : st.st_size <= 0 ? "empty"
		                          : "larger than 1 MiB");
		return (coffer_err_hint(err, "point the %s key at a PEM file", what));
	}
	size_t len = (size_t)st.st_size;
	char *buf = malloc(len + 1);
	if (buf == NULL) {
		fclose(f);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory to read %s", path));
	}
	size_t got = fread(buf, 1, len, f);
	int rerr = ferror(f);
	fclose(f);
	if (rerr || got != len) {
		free(buf);
		coffer_err_set(err, COFFER_EIO, "cannot read %s file %s", what, path);
		return (coffer_err_hint(err, "check that %s is not being rewritten", path));
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		free(buf);
		coffer_err_set(err, COFFER_EINVAL, "%s file %s contains NUL bytes", what, path);
		return (
		    coffer_err_hint(err, "convert it to PEM (openssl x509 -inform DER -out ...)"));
	}
	*out = buf;
	*out_len = len;
	return (0);
}

static void
tls_free_secret(char *buf, size_t len)
{
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
}

/* Counts the certificates in a PEM buffer; the first one goes to *first if
 * asked for. Returns the count (0: none parsed). */
static int
tls_parse_certs(const char *pem, size_t len, X509 **first)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	int n = 0;
	if (bio == NULL) {
		return (0);
	}
	for (;;) {
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		if (x == NULL) {
			break;
		}
		if (n == 0 && first != NULL) {
			*first = x;
		} else {
			X509_free(x);
		}
		n++;
	}
	BIO_free(bio);
	ERR_clear_error();
	return (n);
}

/* The key types mbedTLS 2.28 (NNG 1.5.2's engine) can use in a handshake. */
static int
tls_check_key_type(const char *what, const char *path, EVP_PKEY *pk, coffer_err *err)
{
	int id = EVP_PKEY_get_base_id(pk);
	if (id == EVP_PKEY_EC) {
		return (0);
	}
	if (id == EVP_PKEY_RSA) {
		if (EVP_PKEY_get_bits(pk) < 2048) {
			coffer_err_set(err, COFFER_EINVAL, "%s in %s is RSA with %d bits", what,
			    path, EVP_PKEY_get_bits(pk));
			return (
			    coffer_err_hint(err, "use a P-256 key or RSA of at least 2048 bits"));
		}
		return (0);
	}
	const char *name = id == EVP_PKEY_ED25519 ? "Ed25519"
	    : id == EVP_PKEY_ED448                ? "Ed448"
	                                          : OBJ_nid2sn(id);
	coffer_err_set(err, COFFER_EINVAL,
	    "%s in %s is an %s key, which NNG's TLS engine (mbedTLS) cannot use", what, path,
	    name != NULL ? name : "unknown");
	return (coffer_err_hint(err,
	    "make a P-256 certificate for the wire (deploy/certs.sh does); Ed25519 stays for "
	    "envelope signatures"));
}

/* Whether the CRL in pem is one mbedTLS will apply without refusing every
 * client: it parses, one of the CA certificates signed it, and it has not
 * expired (mbedTLS 2.28 flags an expired CRL as BADCRL_EXPIRED, which fails
 * the verification of EVERY certificate that CA issued). */
static int
tls_check_crl(const char *ca_pem, size_t ca_len, const char *crl_pem, size_t crl_len,
    const char *path, coffer_err *err)
{
	BIO *bio = BIO_new_mem_buf(crl_pem, (int)crl_len);
	X509_CRL *crl = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (crl == NULL) {
		ERR_clear_error();
		coffer_err_set(err, COFFER_EINVAL,
		    "CRL file %s holds no PEM certificate revocation list", path);
		return (coffer_err_hint(
		    err, "write it with `openssl ca -gencrl -out FILE` (PEM, \"BEGIN X509 CRL\")"));
	}
	int rv = 0;
	bool signed_by_ca = false;
	BIO *cbio = BIO_new_mem_buf(ca_pem, (int)ca_len);
	X509 *ca;
	while (cbio != NULL && (ca = PEM_read_bio_X509(cbio, NULL, NULL, NULL)) != NULL) {
		EVP_PKEY *pk = X509_get0_pubkey(ca);
		if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
		    pk != NULL && X509_CRL_verify(crl, pk) == 1) {
			signed_by_ca = true;
		}
		X509_free(ca);
	}
	ERR_clear_error();
	BIO_free(cbio);
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	if (!signed_by_ca) {
		rv = coffer_err_set(err, COFFER_EINVAL,
		    "CRL file %s is not signed by a certificate of the CA file", path);
		coffer_err_hint(
		    err, "use the revocation list of the CA that issues agent certificates");
	} else if (next != NULL && X509_cmp_current_time(next) < 0) {
		rv = coffer_err_set(err, COFFER_EINVAL,
		    "CRL file %s has expired (its next update is past); NNG's TLS engine would refuse "
		    "every client with it",
		    path);
		coffer_err_hint(
		    err, "issue a fresh CRL (`openssl ca -gencrl`) and replace the file");
	}
	X509_CRL_free(crl);
	return (rv);
}

static int
tls_load_ca(nng_tls_config *cfg, const char *path, const char *crl_path, coffer_err *err)
{
	char *pem = NULL, *crl = NULL;
	size_t len = 0, crl_len = 0;
	int rv = tls_read_file("CA", path, &pem, &len, err);
	if (rv != 0) {
		return (rv);
	}
	if (tls_parse_certs(pem, len, NULL) == 0) {
		free(pem);
		coffer_err_set(err, COFFER_EINVAL, "CA file %s holds no PEM certificate", path);
		return (coffer_err_hint(
		    err, "the ca key names the CA certificate (ca.crt), not a key"));
	}
	if (crl_path != NULL && crl_path[0] != '\0') {
		rv = tls_read_file("CRL", crl_path, &crl, &crl_len, err);
		if (rv == 0) {
			rv = tls_check_crl(pem, len, crl, crl_len, crl_path, err);
		}
		if (rv != 0) {
			free(pem);
			free(crl);
			return (rv);
		}
	}
	int nrv = nng_tls_config_ca_chain(cfg, pem, crl);
	free(pem);
	free(crl);
	if (nrv != 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "NNG's TLS engine cannot load CA file %s%s%s: %s", path,
		    crl_path != NULL ? " with CRL " : "", crl_path != NULL ? crl_path : "",
		    nng_strerror(nrv));
		return (coffer_err_hint(err, "use P-256 or RSA CA certificates (not Ed25519)"));
	}
	return (0);
}

static int
tls_load_own(nng_tls_config *cfg, const char *cert_path, const char *key_path, coffer_err *err)
{
	char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	BIO *bio = NULL;
	int rv = tls_read_file("certificate", cert_path, &cert, &cert_len, err);
	if (rv != 0) {
		goto done;
	}
	rv = tls_read_file("private key", key_path, &key, &key_len, err);
	if (rv != 0) {
		goto done;
	}
	if (tls_parse_certs(cert, cert_len, &x) == 0) {
		rv = coffer_err_set(
		    err, COFFER_EINVAL, "certificate file %s holds no PEM certificate", cert_path);
		coffer_err_hint(
		    err, "the cert key names a certificate (NAME.crt), the key key its key");
		goto done;
	}
	bio = BIO_new_mem_buf(key, (int)key_len);
	/* A NULL passphrase callback would prompt on the terminal; an empty
	 * passphrase makes an encrypted key fail cleanly instead. */
	pk = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
	if (pk == NULL) {
		ERR_clear_error();
		rv = coffer_err_set(err, COFFER_EINVAL,
		    "private key file %s holds no usable PEM private key", key_path);
		coffer_err_hint(err,
		    strstr(key, "ENCRYPTED") != NULL
		        ? "the key is encrypted; store it unencrypted with mode 0600"
		        : "the key key names the private key (NAME.key) made with the certificate");
		goto done;
	}
	rv = tls_check_key_type("private key", key_path, pk, err);
	if (rv != 0) {
		goto done;
	}
	if (X509_check_private_key(x, pk) != 1) {
		ERR_clear_error();
		rv = coffer_err_set(err, COFFER_EINVAL,
		    "private key %s does not belong to certificate %s", key_path, cert_path);
		coffer_err_hint(err, "configure the key that was generated with this certificate");
		goto done;
	}
	struct stat st;
	if (stat(key_path, &st) == 0 && (st.st_mode & 077) != 0) {
		coffer_log_warn("tls private key readable by others", "path=%s mode=%03o", key_path,
		    (unsigned)(st.st_mode & 0777));
	}
	int nrv = nng_tls_config_own_cert(cfg, cert, key, NULL);
	if (nrv != 0) {
		rv = coffer_err_set(err, COFFER_EINVAL,
		    "NNG's TLS engine cannot load certificate %s with key %s: %s", cert_path,
		    key_path, nng_strerror(nrv));
		coffer_err_hint(err, "use a P-256 or RSA certificate in PEM (deploy/certs.sh)");
		goto done;
	}
	rv = 0;
done:
	BIO_free(bio);
	EVP_PKEY_free(pk);
	X509_free(x);
	free(cert);
	tls_free_secret(key, key_len);
	return (rv);
}

/* ---- the clock against the certificates ---- */

/* "2026-01-31T12:00:00Z" for an ASN1 time, into buf. */
static const char *
tls_time_text(const ASN1_TIME *t, char *buf, size_t size)
{
	struct tm tm;
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
		snprintf(buf, size, "(unreadable)");
		return (buf);
	}
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return (buf);
}

/* Checks every certificate in the PEM file at path (a missing or unreadable
 * file is not this check's business: loading reports it). */
static int
tls_clock_check_file(const char *what, const char *path, time_t now, coffer_err *err)
{
	if (path == NULL) {
		return (0);
	}
	char *pem = NULL;
	size_t len = 0;
	coffer_err ignored;
	if (tls_read_file(what, path, &pem, &len, &ignored) != 0) {
		return (0);
	}
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	int rv = 0;
	for (X509 *x = NULL;
	     rv == 0 && bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL;
	     X509_free(x)) {
		const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
		bool early = X509_cmp_time(nb, &now) > 0;
		bool late = !early && X509_cmp_time(na, &now) < 0;
		if (!early && !late) {
			continue;
		}
		char clock[40], limit[40];
		struct tm tm;
		strftime(clock, sizeof(clock), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
		tls_time_text(early ? nb : na, limit, sizeof(limit));
		rv = coffer_err_set(err, COFFER_EAUTH,
		    "this host's clock (UTC %s) is %s the %s certificate's %s %s (%s)", clock,
		    early ? "before" : "after", what, early ? "notBefore" : "notAfter", limit,
		    path);
		coffer_err_hint(err,
		    early
		        ? "check NTP on this host (timedatectl, chronyc tracking): the certificate "
		          "is not yet valid by this clock, so every TLS handshake fails"
		        : "check NTP on this host (timedatectl, chronyc tracking); if the clock is "
		          "right, the certificate has expired: issue a new one");
	}
	ERR_clear_error();
	BIO_free(bio);
	free(pem);
	return (rv);
}

int
coffer_tlsconf_clock_check(const coffer_tls_files *files, int64_t now_ms, coffer_err *err)
{
	time_t now = (time_t)(now_ms / 1000);
	int rv = tls_clock_check_file("own", files->cert, now, err);
	if (rv == 0) {
		rv = tls_clock_check_file("CA", files->ca, now, err);
	}
	return (rv);
}

/* The earliest notAfter in one PEM file into *soonest (left alone when the
 * file holds none that is earlier). */
static int
tls_expiry_file(
    const char *what, const char *path, int64_t *soonest, char *which, size_t size, coffer_err *err)
{
	char *pem = NULL;
	size_t len = 0;
	int rv = tls_read_file(what, path, &pem, &len, err);
	if (rv != 0) {
		return (rv);
	}
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	int n = 0;
	for (X509 *x = NULL; bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL;
	     X509_free(x)) {
		n++;
		struct tm tm;
		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
			continue;
		}
		int64_t at = (int64_t)timegm(&tm) * 1000;
		if (*soonest == 0 || at < *soonest) {
			*soonest = at;
			snprintf(which, size, "%s%s",
			    strcmp(what, "CA") == 0 ? "CA certificate " : "certificate ", path);
		}
	}
	ERR_clear_error();
	BIO_free(bio);
	free(pem);
	if (n == 0) {
		coffer_err_set(
		    err, COFFER_EINVAL, "%s file %s holds no PEM certificate", what, path);
		return (coffer_err_hint(err, "point the %s key at a PEM certificate", what));
	}
	return (0);
}

int
coffer_tlsconf_expiry(
    const coffer_tls_files *files, int64_t *not_after_ms, char *which, size_t size, coffer_err *err)
{
	*not_after_ms = 0;
	if (size > 0) {
		which[0] = '\0';
	}
	int rv = tls_expiry_file("own", files->cert, not_after_ms, which, size, err);
	if (rv == 0 && files->ca != NULL) {
		rv = tls_expiry_file("CA", files->ca, not_after_ms, which, size, err);
	}
	return (rv);
}

/* At load: a clock outside a certificate's validity is logged, not refused
 * (NTP may step the clock right a moment later), and it is the one message
 * that explains the handshake failures that follow. */
static void
tls_clock_warn(const coffer_tls_files *files)
{
	coffer_err e;
	coffer_err_clear(&e);
	if (coffer_tlsconf_clock_check(files, coffer_clock_now(NULL), &e) != 0) {
		coffer_log_warn(
		    "tls certificate not valid by this host's clock", "error=%s", e.msg);
	}
}

int
coffer_tlsconf_server_new(const coffer_tls_files *files, nng_tls_config **out, coffer_err *err)
{
	nng_tls_config *cfg = NULL;
	int nrv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER);
	if (nrv != 0) {
		return (coffer_err_set(err, nrv == NNG_ENOMEM ? COFFER_ENOMEM : COFFER_EINTERNAL,
		    "cannot create a TLS server config: %s", nng_strerror(nrv)));
	}
	/* A server's default is to ask nothing of clients; ours must present a
	 * certificate from the CA or the handshake fails. */
	nrv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
	if (nrv != 0) {
		nng_tls_config_free(cfg);
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "cannot require client certificates: %s", nng_strerror(nrv)));
	}
	int rv = tls_load_ca(cfg, files->ca, files->crl, err);
	if (rv == 0) {
		rv = tls_load_own(cfg, files->cert, files->key, err);
	}
	if (rv != 0) {
		nng_tls_config_free(cfg);
		return (rv);
	}
	tls_clock_warn(files);
	*out = cfg;
	return (0);
}

int
coffer_tlsconf_client_new(
    const coffer_tls_files *files, const char *server_name, nng_tls_config **out, coffer_err *err)
{
	if (server_name == NULL || server_name[0] == '\0') {
		coffer_err_set(
		    err, COFFER_EINVAL, "no TLS server name to verify the server against");
		return (coffer_err_hint(err, "use a host name or address in the url"));
	}
	nng_tls_config *cfg = NULL;
	int nrv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
	if (nrv != 0) {
		return (coffer_err_set(err, nrv == NNG_ENOMEM ? COFFER_ENOMEM : COFFER_EINTERNAL,
		    "cannot create a TLS client config: %s", nng_strerror(nrv)));
	}
	/* Required is already the client default; saying it guards against a
	 * future default and documents that the server is always verified. */
	nrv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
	if (nrv == 0) {
		/* A config we install ourselves does not inherit the URL's host
		 * as the expected name the way NNG's default one does. */
		nrv = nng_tls_config_server_name(cfg, server_name);
	}
	if (nrv != 0) {
		nng_tls_config_free(cfg);
		return (coffer_err_set(err, COFFER_EINTERNAL, "cannot set up TLS client config: %s",
		    nng_strerror(nrv)));
	}
	int rv = tls_load_ca(cfg, files->ca, NULL, err);
	bool have_cert = files->cert != NULL && files->cert[0] != '\0';
	bool have_key = files->key != NULL && files->key[0] != '\0';
	if (rv == 0 && (have_cert || have_key)) {
		rv = tls_load_own(cfg, files->cert, files->key, err);
	}
	if (rv != 0) {
		nng_tls_config_free(cfg);
		return (rv);
	}
	tls_clock_warn(files);
	*out = cfg;
	return (0);
}

int
coffer_tlsconf_url_host(const char *url, char *buf, size_t size, coffer_err *err)
{
	const char *sep = url != NULL ? strstr(url, "://") : NULL;
	if (sep == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "url \"%s\" has no scheme", url ? url : "");
		return (coffer_err_hint(err, "write it as tls+tcp://HOST:PORT"));
	}
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0) {
		buf[0] = '\0';
		return (0);
	}
	const char *h = sep + 3;
	const char *end;
	if (*h == '[') {
		h++;
		end = strchr(h, ']');
		if (end == NULL) {
			coffer_err_set(err, COFFER_EINVAL, "url \"%s\" has an unclosed [", url);
			return (coffer_err_hint(err, "write IPv6 hosts as tls+tcp://[::1]:PORT"));
		}
	} else {
		end = strrchr(h, ':');
		if (end == NULL) {
			coffer_err_set(err, COFFER_EINVAL, "url \"%s\" has no port", url);
			return (coffer_err_hint(err, "write it as tls+tcp://HOST:PORT"));
		}
	}
	size_t n = (size_t)(end - h);
	if (n >= size) {
		coffer_err_set(err, COFFER_EINVAL, "the host in url \"%s\" is too long", url);
		return (
		    coffer_err_hint(err, "use a host name of at most %zu characters", size - 1));
	}
	memcpy(buf, h, n);
	buf[n] = '\0';
	return (0);
}

static bool
tls_is_loopback(const char *host)
{
	unsigned char a[16];
	if (strcmp(host, "localhost") == 0) {
		return (true);
	}
	if (inet_pton(AF_INET, host, a) == 1) {
		return (a[0] == 127);
	}
	if (inet_pton(AF_INET6, host, a) == 1) {
		static const unsigned char v6_loop[16] = { [15] = 1 };
		static const unsigned char v4_mapped[12] = { [10] = 0xff, [11] = 0xff };
		return (
		    memcmp(a, v6_loop, 16) == 0 || (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127));
	}
	return (false);
}

int
coffer_tlsconf_check_url(const char *url, bool insecure, coffer_tlsconf_kind *kind, coffer_err *err)
{
	static const char *const tls_schemes[] = { "tls+tcp://", "tls+tcp4://", "tls+tcp6://" };
	static const char *const tcp_schemes[] = { "tcp://", "tcp4://", "tcp6://" };
	char host[256];
	int rv = coffer_tlsconf_url_host(url, host, sizeof(host), err);
	if (rv != 0) {
		return (rv);
	}
	for (size_t i = 0; i < 3; i++) {
		if (strncmp(url, tls_schemes[i], strlen(tls_schemes[i])) == 0) {
			*kind = COFFER_TLSCONF_TLS;
			return (0);
		}
	}
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0) {
		*kind = COFFER_TLSCONF_LOCAL;
		return (0);
	}
	for (size_t i = 0; i < 3; i++) {
		if (strncmp(url, tcp_schemes[i], strlen(tcp_schemes[i])) == 0) {
			if (!insecure && !tls_is_loopback(host)) {
				coffer_err_set(err, COFFER_EPERM,
				    "refusing plain tcp on non-loopback address \"%s\" (%s)", host,
				    url);
				return (coffer_err_hint(err,
				    "use tls+tcp:// with certificates, or set the insecure flag if the "
				    "network is trusted"));
			}
			*kind = COFFER_TLSCONF_PLAIN;
			return (0);
		}
	}
	coffer_err_set(err, COFFER_EINVAL, "unsupported url scheme in \"%s\"", url);
	return (coffer_err_hint(err, "use tls+tcp://HOST:PORT (or tcp:// and ipc:// for tests)"));
}
