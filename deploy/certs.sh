#!/usr/bin/env bash
# A development / test PKI for Coffer's wire (mutual TLS), made with the
# openssl command line.
#
#   deploy/certs.sh DIR ca                  the CA only (DIR/ca.crt, DIR/ca.key)
#   deploy/certs.sh DIR server NAME [SAN..] DIR/NAME.crt + DIR/NAME.key for a coordinator;
#                                           SANs: DNS:NAME, DNS:localhost, IP:127.0.0.1,
#                                           IP:::1 (also as DNS names: mbedTLS 2.28 only
#                                           matches DNS entries), plus extra "DNS:x" / "IP:y"
#   deploy/certs.sh DIR client NAME         DIR/NAME.crt + DIR/NAME.key for an agent or
#                                           operator (CN = NAME, clientAuth)
#   deploy/certs.sh DIR crl [NAME...]       revokes DIR/NAME.crt (if named) and writes the
#                                           CA's revocation list DIR/ca.crl (PEM, valid
#                                           CRL_DAYS, default 30; the coordinator's
#                                           [tls] crl), replaced atomically
#
# The CA is created on first use. Every key is ECDSA P-256: NNG 1.5.2 on
# Debian does TLS with mbedTLS 2.28, which cannot use Ed25519 certificates.
# Keys are written with mode 0600 and never overwritten (remove a file to
# make it again). CERTS_DAYS sets the validity (default 825 days).
# For production, use the platform team's CA and keep ca.key offline.
set -euo pipefail

usage() {
	echo "usage: $0 DIR ca | DIR server NAME [SAN...] | DIR client NAME | DIR crl [NAME...]" >&2
	exit 2
}

die() {
	echo "certs.sh: $*" >&2
	exit 1
}

[[ $# -ge 2 ]] || usage
dir=$1
kind=$2
name=${3:-}
days=${CERTS_DAYS:-825}
command -v openssl >/dev/null || die "openssl not found (hint: apt-get install openssl)"
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ || $kind == ca || $kind == crl ]] ||
	die "name \"$name\" must be letters, digits, '.', '_' or '-' (hint: use the agent or host name)"

mkdir -p "$dir"
umask 077

# Writes a P-256 private key to $1 unless it exists.
new_key() {
	[[ -e $1 ]] && die "$1 exists (hint: remove it to make a new one)"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ||
		die "cannot create key $1"
	chmod 600 "$1"
}

ensure_ca() {
	[[ -f $dir/ca.crt && -f $dir/ca.key ]] && return 0
	new_key "$dir/ca.key"
	openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
		-subj "/O=Coffer/CN=Coffer development CA" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$dir/ca.crt" || die "cannot create the CA certificate $dir/ca.crt"
	chmod 644 "$dir/ca.crt"
}

# issue NAME EXTFILE-CONTENT: key, CSR and certificate signed by the CA.
issue() {
	local n=$1 ext=$2 tmp
	[[ -e $dir/$n.crt ]] && die "$dir/$n.crt exists (hint: remove it and $n.key to reissue)"
	new_key "$dir/$n.key"
	tmp=$(mktemp -d)
	printf '%s\n' "$ext" >"$tmp/ext"
	openssl req -new -key "$dir/$n.key" -subj "/O=Coffer/CN=$n" -out "$tmp/csr" ||
		{ rm -rf "$tmp"; die "cannot create a request for $n"; }
	openssl x509 -req -in "$tmp/csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-CAcreateserial -CAserial "$dir/ca.srl" -days "$days" -sha256 \
		-extfile "$tmp/ext" -out "$dir/$n.crt" 2>/dev/null ||
		{ rm -rf "$tmp"; die "cannot sign the certificate for $n"; }
	rm -rf "$tmp"
	chmod 644 "$dir/$n.crt"
}

case $kind in
ca)
	ensure_ca
	echo "$dir/ca.crt"
	;;
server)
	[[ -n $name ]] || usage
	shift 3
	ensure_ca
	# mbedTLS 2.28 (NNG 1.5.2) matches a server name only against DNS
	# entries, even when the name is an address, so loopback addresses are
	# listed as DNS names too for clients that dial tls+tcp://127.0.0.1.
	san="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:127.0.0.1,DNS:::1"
	[[ $name == localhost ]] || san="DNS:$name,$san"
	for extra in "$@"; do
		[[ $extra =~ ^(DNS|IP):[A-Za-z0-9.:_-]+$ ]] || die "bad SAN \"$extra\" (hint: DNS:host or IP:addr)"
		san="$san,$extra"
	done
	issue "$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth
subjectAltName=$san"
	echo "$dir/$name.crt"
	;;
client)
	[[ -n $name && $# -eq 3 ]] || usage
	ensure_ca
	issue "$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=clientAuth"
	echo "$dir/$name.crt"
	;;
crl)
	shift 2
	ensure_ca
	# openssl ca keeps what it revoked in a text database beside the CA.
	[[ -f $dir/ca-index.txt ]] || : >"$dir/ca-index.txt"
	[[ -f $dir/ca-crlnumber ]] || echo 01 >"$dir/ca-crlnumber"
	tmp=$(mktemp -d)
	cat >"$tmp/ca.cnf" <<CNF
[ca]
default_ca = coffer
[coffer]
database = $dir/ca-index.txt
crlnumber = $dir/ca-crlnumber
default_md = sha256
default_crl_days = ${CRL_DAYS:-30}
CNF
	for n in "$@"; do
		[[ $n =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ && -f $dir/$n.crt ]] ||
			{ rm -rf "$tmp"; die "no certificate $dir/$n.crt to revoke"; }
		openssl ca -config "$tmp/ca.cnf" -keyfile "$dir/ca.key" -cert "$dir/ca.crt" \
			-revoke "$dir/$n.crt" 2>"$tmp/err" ||
			grep -q "already revoked" "$tmp/err" ||
			{ cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot revoke $n"; }
	done
	openssl ca -config "$tmp/ca.cnf" -keyfile "$dir/ca.key" -cert "$dir/ca.crt" \
		-gencrl -out "$tmp/ca.crl" 2>"$tmp/err" ||
		{ cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot write the CRL"; }
	chmod 644 "$tmp/ca.crl"
	# A reader polling the file must never see half of it.
	mv "$tmp/ca.crl" "$dir/ca.crl.new" && mv "$dir/ca.crl.new" "$dir/ca.crl"
	rm -rf "$tmp"
	echo "$dir/ca.crl"
	;;
*)
	usage
	;;
esac
