#!/usr/bin/env bash
# S3 upload and download throughput on loopback radosgw, Coffer's client
# against curl on the same bytes, alternating, in one run:
#   coffer upload    coffer_s3 multipart: 8 MiB parts, SHA-256 per part
#                    (x-amz-checksum-sha256 and the signed payload hash),
#                    HEAD before publishing (s3_itest put)
#   curl PUT         one signed PUT of the whole file (--aws-sigv4,
#                    UNSIGNED-PAYLOAD: no hash at all)
#   sha256sum + curl PUT   the same with the payload hashed first and signed,
#                    so the server checks it: the integrity Coffer always has
#   coffer download  coffer_s3_get streamed through SHA-256 (s3_itest sha)
#   curl GET         into /dev/null, no hash
# Prints a markdown table for docs/PERFORMANCE.md. Needs a Release build:
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/s3_bench.sh [MiB] [reps]
set -euo pipefail
: "${COFFER_BIN:?set COFFER_BIN to a Release build bin directory}"
mib=${1:-256}
reps=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../integration/lib.sh"
source "$here/../integration/lib/rgw.sh"
t_init s3-bench
# memstore holds objects in RAM, and radosgw frees deleted multipart data
# only hours later (garbage collection): size it for every run's objects.
export RGW_MEMSTORE_BYTES=$(( (3 * reps * mib + 256) * 1024 * 1024 ))
rgw_start "$T/rgw" || { echo "radosgw could not start" >&2; exit 1; }
s3=$COFFER_BIN/s3_itest
runstat=$COFFER_BIN/runstat
export S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$RGW_SRC_ACCESS S3_SECRET=$RGW_SRC_SECRET
"$s3" mkbucket bench >/dev/null
head -c $((mib * 1024 * 1024)) /dev/urandom >"$T/blob"
# runstat takes one shell command: the curl options quoted for it.
curl_opts=$(printf '%q ' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_SRC_ACCESS:$RGW_SRC_SECRET" \
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -sS --fail)

# radosgw's first PUT and first multipart upload into a new bucket take
# about 2 s each (it sets up the bucket's index and multipart metadata):
# warm both paths before anything is timed.
head -c $((20 * 1024 * 1024)) /dev/urandom >"$T/warm"
"$s3" put bench warm1 "$T/warm" >/dev/null
"$s3" put bench warm2 "$T/warm" >/dev/null
eval "curl $curl_opts -T $T/warm $RGW_ENDPOINT/bench/warm3"

declare -A walls
time_of() { # label, command
	local stat wall
	stat=$("$runstat" "$2" 2>&1 >/dev/null | tail -1)
	wall=$(sed -E 's/wall_s=([^ ]+) .*/\1/' <<<"$stat")
	[[ $stat == *"status=0"* ]] || { echo "$1 failed: $stat" >&2; exit 1; }
	walls[$1]+="$wall "
}
for r in $(seq "$reps"); do
	time_of "coffer upload" "$s3 put bench c$r $T/blob"
	time_of "curl PUT" "curl $curl_opts -T $T/blob $RGW_ENDPOINT/bench/u$r"
	time_of "sha256sum + curl PUT" "h=\$(sha256sum $T/blob | cut -c1-64) && curl ${curl_opts/UNSIGNED-PAYLOAD/\$h} -T $T/blob $RGW_ENDPOINT/bench/h$r"
	time_of "coffer download" "$s3 sha bench c$r"
	time_of "curl GET" "curl $curl_opts -o /dev/null $RGW_ENDPOINT/bench/u$r"
	"$s3" delete bench "c$r" >/dev/null
	"$s3" delete bench "u$r" >/dev/null
	"$s3" delete bench "h$r" >/dev/null
done
median() { tr -s ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "object: $mib MiB of random bytes; radosgw (memstore) on loopback; $(nproc) CPUs; median of $reps"
echo
echo "| case | wall s (median) | MiB/s | runs |"
echo "|---|---:|---:|---|"
for c in "coffer upload" "curl PUT" "sha256sum + curl PUT" "coffer download" "curl GET"; do
	m=$(median <<<"${walls[$c]}")
	echo "| $c | $m | $(awk -v m="$mib" -v s="$m" 'BEGIN {printf "%.0f", m / s}') | ${walls[$c]}|"
done
