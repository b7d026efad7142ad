#!/bin/sh
# Installs the Debian 12 packages Coffer builds, tests and demos with.
# Idempotent: safe to run on a machine that already has them.
set -eu
pkgs="build-essential cmake pkg-config clang libclang-rt-14-dev clang-format clang-tidy cppcheck gcovr
 libuv1-dev libnng-dev protobuf-c-compiler libprotobuf-c-dev libssl-dev libpq-dev
 libzstd-dev zstd libcurl4-openssl-dev libcjson-dev libxml2-dev libinih-dev libcmocka-dev
 postgresql-15 postgresql-client-15 openssl ca-certificates curl procps util-linux tzdata
 python3-cryptography python3-jsonschema
 ceph-mon ceph-osd radosgw uuid-runtime faketime
 libsystemd-dev prometheus chromium help2man dpkg-dev fakeroot systemd"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi
