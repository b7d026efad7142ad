#!/usr/bin/env bash
# The sealed stream as written down in docs/FORMAT.md is the contract: an
# independent reader and writer in Python (python3-cryptography), built from
# that text alone, must open what coffer-agent seal writes, and coffer-agent
# unseal must open what it writes. A drift between the code and the document
# fails here.
set -euo pipefail

: "${COFFER_BIN:?set COFFER_BIN to the bin directory of a build}"
agent="$COFFER_BIN/coffer-agent"
python3 -c 'import cryptography' 2>/dev/null ||
	{ echo "seal_format: python3-cryptography is missing; run deploy/install-deps.sh" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/seal-format.XXXXXX")
trap 'rm -rf "$work"' EXIT

cat >"$work/spec.py" <<'PY'
import hashlib, os, struct, sys
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"\x89CFSEAL\n"

def ring(path):
    lines = open(path).read().splitlines()
    assert lines[0] == "coffer-keyring v1"
    keys = [l.split() for l in lines[1:] if l and not l.startswith("#")]
    return {k[0]: bytes.fromhex(k[1]) for k in keys}, keys[-1][0]

def seal(pt, kid, kek, C):
    dk, P, W = os.urandom(32), os.urandom(4), os.urandom(12)
    h = MAGIC + bytes([1, len(kid)]) + kid + struct.pack(">I", C) + P + W
    h += AESGCM(kek).encrypt(W, dk, h)
    H = hashlib.sha256(h).digest()
    out = bytearray(h)
    chunks = [pt[i:i + C] for i in range(0, len(pt), C)] or [b""]
    for i, c in enumerate(chunks):
        word = struct.pack(">I", len(c) | (0x80000000 if i == len(chunks) - 1 else 0))
        out += word + AESGCM(dk).encrypt(P + struct.pack(">Q", i), c, H + word)
    return bytes(out)

def unseal(data, keys):
    assert data[:8] == MAGIC, "magic"
    assert data[8] == 1, "version"
    L = data[9]
    kid = data[10:10 + L].decode()
    C, = struct.unpack(">I", data[10 + L:14 + L])
    P, W = data[14 + L:18 + L], data[18 + L:30 + L]
    dk = AESGCM(keys[kid]).decrypt(W, data[30 + L:78 + L], data[:30 + L])
    H = hashlib.sha256(data[:78 + L]).digest()
    off, i, out = 78 + L, 0, bytearray()
    while True:
        word = data[off:off + 4]
        v, = struct.unpack(">I", word)
        final, n = v >> 31, v & 0x7fffffff
        assert n == C or (final and n <= C), "chunk %d frame" % i
        ct = data[off + 4:off + 4 + n + 16]
        out += AESGCM(dk).decrypt(P + struct.pack(">Q", i), ct, H + word)
        off += 4 + n + 16
        i += 1
        if final:
            break
    assert off == len(data), "data after the final chunk"
    expect = 78 + L + 20 * max(1, -(-len(out) // C)) + len(out)
    assert len(data) == expect, "size %d, FORMAT.md says %d" % (len(data), expect)
    return bytes(out), kid, C

cmd = sys.argv[1]
keys, newest = ring(sys.argv[2])
if cmd == "seal":
    C = int(sys.argv[3])
    sys.stdout.buffer.write(seal(sys.stdin.buffer.read(), newest.encode(), keys[newest], C))
elif cmd == "unseal":
    pt, kid, C = unseal(sys.stdin.buffer.read(), keys)
    assert kid == sys.argv[3], "key id %s" % kid
    assert C == int(sys.argv[4]), "chunk size %d" % C
    sys.stdout.buffer.write(pt)
elif cmd == "flip":
    # A sealed stream from Python with one ciphertext bit of chunk 1 flipped.
    data = bytearray(seal(sys.stdin.buffer.read(), newest.encode(), keys[newest], 1024))
    data[78 + len(newest) + (4 + 1024 + 16) + 4 + 100] ^= 1
    sys.stdout.buffer.write(bytes(data))
PY

ring="$work/ring"
"$agent" keygen --out "$ring" --id old >/dev/null
"$agent" keygen --out "$ring" --id spec-key >/dev/null
head -c 1500000 /dev/urandom >"$work/in"
head -c 700000 < <(yes 'format conformance') >>"$work/in"

for size in 0 1 1023 1024 1025 300001; do
	head -c "$size" "$work/in" >"$work/pt"
	# coffer writes, the document reads.
	"$agent" seal --keyring "$ring" --chunk-size 1024 <"$work/pt" >"$work/c.sealed"
	python3 "$work/spec.py" unseal "$ring" spec-key 1024 <"$work/c.sealed" >"$work/c.out" ||
		{ echo "seal_format: size $size: coffer's output does not follow FORMAT.md" >&2; exit 1; }
	cmp "$work/pt" "$work/c.out" || { echo "seal_format: size $size differs" >&2; exit 1; }
	# The document writes, coffer reads.
	python3 "$work/spec.py" seal "$ring" 4096 <"$work/pt" >"$work/p.sealed"
	"$agent" unseal --keyring "$ring" <"$work/p.sealed" | cmp - "$work/pt" ||
		{ echo "seal_format: size $size: coffer cannot read FORMAT.md's stream" >&2; exit 1; }
done
# The default chunk size is the documented 65536.
"$agent" seal --keyring "$ring" <"$work/in" >"$work/d.sealed"
python3 "$work/spec.py" unseal "$ring" spec-key 65536 <"$work/d.sealed" | cmp - "$work/in"
# A stream damaged by the independent writer is refused, naming chunk 1.
rc=0
python3 "$work/spec.py" flip "$ring" <"$work/in" |
	"$agent" unseal --keyring "$ring" >/dev/null 2>"$work/err" || rc=$?
[[ $rc -eq 1 ]] && grep -q "chunk 1 failed authentication" "$work/err" ||
	{ echo "seal_format: damaged chunk 1 not refused right (exit $rc): $(cat "$work/err")" >&2; exit 1; }
echo "seal_format: ok"
