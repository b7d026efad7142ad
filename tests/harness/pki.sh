# A test PKI for the wire's mutual TLS (sourced through
# tests/integration/lib.sh, never run alone).
#
# Fakes the platform team's CA with deploy/certs.sh, the script operators
# use for a development PKI, so tests exercise the certificates the docs
# tell people to make.
#
# Promises:
#   pki_make DIR [CLIENT...]  DIR/ca.crt, the coordinator's certificate for
#                             localhost (DIR/localhost.crt and .key; names
#                             127.0.0.1 and ::1 too) and one client
#                             certificate per CLIENT (DIR/CLIENT.crt, .key)
#   pki_client DIR CLIENT...  client certificates only, from DIR's CA (made
#                             on first use): another PKI, for refusals
#   pki_crl DIR [CLIENT...]   revokes the CLIENTs' certificates and writes
#                             DIR/ca.crl (PEM; with no CLIENT an empty list)
#
# Limits: ECDSA P-256 keys, mode 0600, owned by whoever runs the script;
# a script that hands a key to the postgres user changes that itself.
pki_client() {
	local dir=$1 c
	shift
	for c in "$@"; do
		"${COFFER_SRC:?set COFFER_SRC to the source tree}/deploy/certs.sh" "$dir" client "$c" >/dev/null || fail "certs.sh: client $c"
	done
}

pki_make() {
	local dir=$1
	shift
	"${COFFER_SRC:?set COFFER_SRC to the source tree}/deploy/certs.sh" "$dir" server localhost >/dev/null || fail "certs.sh: server localhost"
	pki_client "$dir" "$@"
}

pki_crl() {
	local dir=$1
	shift
	"${COFFER_SRC:?set COFFER_SRC to the source tree}/deploy/certs.sh" "$dir" crl "$@" >/dev/null || fail "certs.sh: crl $*"
}
