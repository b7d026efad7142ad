#!/usr/bin/env python3
# A real browser for integration scripts: Debian's chromium, headless,
# driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
# no port, nothing listening), with JavaScript switched off
# (--blink-settings=scriptEnabled=false).
#
# Why not `chromium --dump-dom` / `--screenshot` with scripts off: this
# chromium's headless shortcuts evaluate script in the page to do their
# work, so with scripts off they print nothing and write no file. The
# DevTools calls used here (DOM.getOuterHTML, Page.captureScreenshot) read
# the rendered page without running any of its script.
#
#   headless.py URL DOM_OUT PNG_OUT PROFILE_DIR
#
# Loads URL, waits for its load event, writes the DOM as chromium parsed it
# to DOM_OUT and a full-page PNG to PNG_OUT; PROFILE_DIR is chromium's
# profile (the caller's scratch directory). Exits non-zero on any DevTools
# error or when chromium closes the pipe. Bound it with `timeout`.
import base64
import json
import os
import subprocess
import sys

url, dom_out, png_out, profile = sys.argv[1:5]
to_r, to_w = os.pipe()      # we write, chromium reads on fd 3
from_r, from_w = os.pipe()  # chromium writes on fd 4, we read


def child_fds():
    a, b = os.dup(to_r), os.dup(from_w)
    os.dup2(a, 3)
    os.dup2(b, 4)
    os.set_inheritable(3, True)
    os.set_inheritable(4, True)


proc = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
     "--blink-settings=scriptEnabled=false", "--window-size=1300,1000",
     "--remote-debugging-pipe", "about:blank"],
    preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL,
    stderr=open(os.path.join(profile, "chromium.log"), "w"))
os.close(to_r)
os.close(from_w)
pending = b""
events = []
next_id = 0


def send(method, params, session):
    global next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_w, json.dumps(msg).encode() + b"\0")
    return next_id


def receive():
    global pending
    while b"\0" not in pending:
        chunk = os.read(from_r, 1 << 20)
        if not chunk:
            sys.exit("chromium closed the DevTools pipe (see %s/chromium.log)" % profile)
        pending += chunk
    msg, pending = pending.split(b"\0", 1)
    return json.loads(msg)


def call(method, params=None, session=None):
    want = send(method, params, session)
    while True:
        msg = receive()
        if msg.get("id") == want:
            if "error" in msg:
                sys.exit("%s: %s" % (method, msg["error"]))
            return msg["result"]
        events.append(msg)


def wait_event(name, session):
    while True:
        for e in events:
            if e.get("method") == name and e.get("sessionId") == session:
                events.remove(e)
                return e
        events.append(receive())


target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
call("Page.enable", session=session)
nav = call("Page.navigate", {"url": url}, session=session)
if nav.get("errorText"):
    sys.exit("navigating to %s: %s" % (url, nav["errorText"]))
wait_event("Page.loadEventFired", session)
root = call("DOM.getDocument", {"depth": -1}, session=session)["root"]
with open(dom_out, "w", encoding="utf-8") as f:
    f.write(call("DOM.getOuterHTML", {"nodeId": root["nodeId"]}, session=session)["outerHTML"])
shot = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
            session=session)
with open(png_out, "wb") as f:
    f.write(base64.b64decode(shot["data"]))
try:
    call("Browser.close")
except SystemExit:
    pass
proc.wait(timeout=10)
