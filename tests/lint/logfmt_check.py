#!/usr/bin/env python3
"""Strict logfmt check of Coffer's log records (docs/OPERATIONS.md "Logs").

usage: logfmt_check.py FILE...   (exit 1 naming every malformed line)

A record is one line of space-separated key=value pairs, starting with ts,
level, prog and msg. A key is [a-z0-9_.-]+. A value is bare (one or more
bytes, none a space, control byte, '"', '=' or '\\', valid UTF-8) or
double-quoted; inside quotes only \\" \\\\ \\n \\r \\t and \\xNN escapes, no
control byte and only valid UTF-8. Lines that are not Coffer records at all
(a sanitizer report, PostgreSQL's own output) are the caller's to leave out:
every line given here is checked.
"""
import re
import sys

KEY = re.compile(rb"[a-z0-9_.\-]+")
FIRST_KEYS = [b"ts", b"level", b"prog", b"msg"]
LEVELS = {b"debug", b"info", b"warn", b"error"}


def valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def parse(line):
    """Returns a list of (key, value bytes) or raises ValueError."""
    pairs = []
    i, n = 0, len(line)
    while i < n:
        if pairs:
            if line[i:i + 1] != b" ":
                raise ValueError("no space before the pair at byte %d" % i)
            i += 1
        m = KEY.match(line, i)
        if m is None:
            raise ValueError("no key at byte %d" % i)
        key = m.group(0)
        i = m.end()
        if line[i:i + 1] != b"=":
            raise ValueError("key %r without '=' at byte %d" % (key, i))
        i += 1
        if line[i:i + 1] == b'"':
            i += 1
            out = bytearray()
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted value of %r" % key)
                c = line[i]
                if c == 0x22:
                    i += 1
                    break
                if c == 0x5C:
                    e = line[i + 1:i + 2]
                    if e in (b'"', b"\\"):
                        out += e
                        i += 2
                    elif e in (b"n", b"r", b"t"):
                        out += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}[e]
                        i += 2
                    elif e == b"x" and re.fullmatch(rb"[0-9a-f]{2}", line[i + 2:i + 4]):
                        out.append(int(line[i + 2:i + 4], 16))
                        i += 4
                    else:
                        raise ValueError("bad escape \\%r in %r" % (e, key))
                    continue
                if c < 0x20 or c == 0x7F:
                    raise ValueError("raw control byte 0x%02x in %r" % (c, key))
                out.append(c)
                i += 1
            # The raw bytes between the quotes must be valid UTF-8.
            value = bytes(out)
        else:
            j = i
            while j < n and line[j] > 0x20 and line[j] not in b'"=\\' and line[j] != 0x7F:
                j += 1
            if j == i:
                raise ValueError("empty bare value of %r" % key)
            if j < n and line[j:j + 1] != b" ":
                raise ValueError("bare value of %r runs into %r" % (key, line[j:j + 1]))
            value = line[i:j]
            if not valid_utf8(value):
                raise ValueError("bare value of %r is not UTF-8" % key)
            i = j
        pairs.append((key, value))
    return pairs


def check_line(line):
    if b"\r" in line:
        raise ValueError("raw carriage return")
    q = 0
    # Raw bytes of quoted values must be UTF-8: check the line as a whole
    # (escapes are ASCII, so this is exactly the unescaped text's rule).
    if not valid_utf8(line):
        raise ValueError("line is not valid UTF-8")
    pairs = parse(line)
    keys = [k for k, _ in pairs]
    if keys[:4] != FIRST_KEYS:
        raise ValueError("starts with %r, not ts level prog msg" % keys[:4])
    if len(set(keys)) != len(keys):
        raise ValueError("a key twice: %r" % keys)
    if pairs[1][1] not in LEVELS:
        raise ValueError("level %r" % pairs[1][1])
    if not re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", pairs[0][1]):
        raise ValueError("ts %r" % pairs[0][1])
    return pairs


def main(paths):
    bad = lines = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            print("%s: last line has no newline" % path)
            bad += 1
        for no, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
            lines += 1
            try:
                check_line(line)
            except ValueError as e:
                bad += 1
                print("%s:%d: %s: %r" % (path, no, e, line[:300]))
    print("logfmt: %d lines, %d malformed" % (lines, bad))
    return 1 if bad or lines == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
