#!/usr/bin/env bash
# S3 upload and download throughput on loopback radosgw, Coffer's client
# against curl on the same bytes, alternating, in one run:
#   coffer upload    coffer_s3 multipart: 8 MiB parts, SHA-256 per part
#                    (x-amz-checksum-sha256 and the signed payload hash),
#                    HEAD before publishing (s3_itest put)
#   curl PUT         one signed PUT of the whole file (--aws-sigv4,
#                    UNSIGNED-PAYLOAD: no hash at all)
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
rgw_start "$T/rgw" || { echo "radosgw could not start" >&2; exit 1; }
# memstore holds objects in RAM: keep its device large enough for the runs.
s3=$COFFER_BIN/s3_itest
runstat=$COFFER_BIN/runstat
export S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$RGW_SRC_ACCESS S3_SECRET=$RGW_SRC_SECRET
"$s3" mkbucket bench >/dev/null
head -c $((mib * 1024 * 1024)) /dev/urandom >"$T/blob"
sigv4=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_SRC_ACCESS:$RGW_SRC_SECRET"
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -sS --fail)

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
	time_of "curl PUT" "curl ${sigv4[*]} -T $T/blob $RGW_ENDPOINT/bench/u$r"
	time_of "coffer download" "$s3 sha bench c$r"
	time_of "curl GET" "curl ${sigv4[*]} -o /dev/null $RGW_ENDPOINT/bench/u$r"
	"$s3" delete bench "c$r" >/dev/null
	"$s3" delete bench "u$r" >/dev/null
done
median() { tr -s ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "object: $mib MiB of random bytes; radosgw (memstore) on loopback; $(nproc) CPUs; median of $reps"
echo
echo "| case | wall s (median) | MiB/s | runs |"
echo "|---|---:|---:|---|"
for c in "coffer upload" "curl PUT" "coffer download" "curl GET"; do
	m=$(median <<<"${walls[$c]}")
	echo "| $c | $m | $(awk -v m="$mib" -v s="$m" 'BEGIN {printf "%.0f", m / s}') | ${walls[$c]}|"
done
