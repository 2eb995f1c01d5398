#!/usr/bin/python3
"""herald serve at its edges (issue 21): list.log on a full disk and a
failing fdatasync, signup limits under a flood of forwarded addresses and
across restarts, and a confirmation link used after an unsubscribe. The
faults are real: a 64 KiB tmpfs as state_dir, fdatasync failed by strace;
mail goes to tests/smtpd.py and is counted per address."""

import collections
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Suite, Skip, equal, expect, csv, log  # noqa: E402
from integration_web import (Serve, web_config, one_click, list_status, listlog,  # noqa: E402
                             confirm_token, wait_mails)

SUITE = Suite()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
READERS = csv("a@example.net,A", "b@example.net,B", "c@example.net,C")


def mount_tmpfs(path, size="64k"):
    if os.geteuid() != 0 or not shutil.which("mount"):
        raise Skip("needs root to mount a tmpfs")
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       capture_output=True)
    if r.returncode:
        raise Skip(f"cannot mount a tmpfs: {r.stderr.decode(errors='replace')}")


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path):
    """Fills the file system of path to the last byte: a file of whole
    blocks, then single bytes until ENOSPC."""
    f = os.path.join(path, "filler")
    with open(f, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"x" * 4096)
        except OSError:
            pass
        try:
            while True:
                out.write(b"x")
        except OSError:
            pass
    return f


def strict_listlog(t):
    """list.log as lines, each a whole list.log line (else a failure)."""
    with open(t.path("state", "list.log"), "rb") as f:
        data = f.read()
    expect(data == b"" or data.endswith(b"\n"), f"list.log ends in a whole line: {data[-80:]!r}")
    rows = [l.split("\t") for l in data.decode().split("\n") if l]
    for r in rows:
        expect(len(r) in (4, 5) and r[1] in ("unsubscribe", "subscribe") and "@" in r[2],
               f"a list.log line: {r!r}")
    return rows


def pad_line(addr, size):
    """An unsubscribe line of exactly size bytes (its source word padded)."""
    head = f"2026-01-01T00:00:00Z\tunsubscribe\t{addr}\t"
    return head + "w" * (size - len(head) - 1) + "\n"


@SUITE.test("list.log on a full 64 KiB tmpfs: the 503 leaves no fragment; the next POST (200) is a "
            "line of its own; the send mails B nothing, A (503: still subscribed) and C once, no warning")
def test_full_disk_listlog(t):
    state = t.path("state")
    mount_tmpfs(state)
    try:
        t.post()
        t.subscribers(READERS)
        smtp = t.server()
        web_config(t, smtp)
        # list.log 20 bytes short of a page, so A's line is cut there
        with open(os.path.join(state, "list.log"), "w") as f:
            f.write(pad_line("gone@example.net", 4096 - 20))
        os.chmod(os.path.join(state, "list.log"), 0o600)
        srv = Serve(t)
        filler = fill(state)
        equal(one_click(srv, "a@example.net")[0], 503, "one-click for A on a full disk")
        size_after = os.path.getsize(os.path.join(state, "list.log"))
        os.unlink(filler)
        equal(size_after, 4096 - 20, "list.log after the 503: as before it")
        equal(one_click(srv, "b@example.net")[0], 200, "one-click for B once there is room")
        rows = strict_listlog(t)
        equal([r[1:3] for r in rows], [["unsubscribe", "gone@example.net"],
                                       ["unsubscribe", "b@example.net"]], "list.log")
        equal(list_status(t), {"a@example.net": "", "b@example.net": "unsubscribed",
                               "c@example.net": ""}, "the list")
        r = t.send()
        equal(r.code, 0, "send")
        expect("not a list.log line" not in r.err, f"no list.log warning: {r.err}")
        counts = collections.Counter(smtp.received())
        equal(dict(counts), {"a@example.net": 1, "c@example.net": 1}, "messages stored per reader")
        srv.stop()
        srv = Serve(t)          # the replay changes nothing, warns of nothing
        srv.stop()
        expect("list.log" not in srv.output(), f"serve's start: {srv.output()}")
        equal(list_status(t)["a@example.net"], "", "A after a restart")
    finally:
        umount(state)


@SUITE.test("a list.log an earlier version damaged (B's line glued onto A's torn fragment): the "
            "replay and the send read B's unsubscribe (warned as FILE:LINE), A stays subscribed")
def test_glued_line_salvaged(t):
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp)
    os.makedirs(t.path("state"), mode=0o700, exist_ok=True)
    with open(t.path("state", "list.log"), "w") as f:
        f.write("2026-12-01T10:00:00Z\tunsubscribe\ta@exam"
                "2026-12-01T10:00:05Z\tunsubscribe\tb@example.net\tweb\n")
    r = t.send()
    equal(r.code, 0, "send")
    expect("list.log:1: a line glued onto a torn one" in r.err, f"the warning: {r.err}")
    equal(dict(collections.Counter(smtp.received())), {"a@example.net": 1, "c@example.net": 1},
          "messages stored per reader")
    srv = Serve(t)
    srv.stop()
    equal(list_status(t), {"a@example.net": "", "b@example.net": "unsubscribed",
                           "c@example.net": ""}, "the list after serve's replay")


class StracedServe(Serve):
    """herald serve under strace, failing list.log's fdatasync number `when`."""

    def __init__(self, t, when):
        if not shutil.which("strace"):
            raise Skip("strace is not installed")
        orig = t.command
        path = t.path("state", "list.log")
        t.command = lambda args, conf=None: [
            "strace", "-f", "-qq", "-o", "/dev/null", "-P", path, "-e", "trace=fdatasync",
            "-e", f"inject=fdatasync:error=EIO:when={when}", *orig(args, conf)]
        try:
            super().__init__(t)
        finally:
            t.command = orig

    def stop(self, sig=None):
        # SIGTERM to herald itself (strace's child): strace would kill it
        import signal
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            child = int(f.read().split()[0])
        os.kill(child, sig or signal.SIGTERM)
        return self.proc.wait(15)


@SUITE.test("confirm POST whose list.log fdatasync fails (strace EIO): 503, not subscribed, "
            "not after a restart either; the next confirm works")
def test_confirm_fdatasync_eio(t):
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp, web={"signup": True})
    os.makedirs(t.path("state"), exist_ok=True)
    open(t.path("state", "list.log"), "w").close()
    srv = StracedServe(t, 1)
    tok = confirm_token("new@example.net", "New", int(time.time()) + 3600)
    path = "/confirm?" + urllib.parse.urlencode({"e": "new@example.net", "n": "New", "t": tok})
    status, _, body = srv.request("POST", path, "confirm=yes", FORM)
    equal(status, 503, "confirm with fdatasync failing")
    equal(strict_listlog(t), [], "list.log after the 503")
    expect("new@example.net" not in list_status(t), "not on the list")
    srv.stop()
    srv = Serve(t)
    expect("new@example.net" not in list_status(t), "not on the list after a restart")
    r = t.send("--dry-run", t.path("out"))
    equal(r.code, 0, "dry run")
    expect(not any("new@" in n for n in os.listdir(t.path("out"))), "not in the next send")
    equal(srv.request("POST", path, "confirm=yes", FORM)[0], 200, "the same link, again")
    equal(list_status(t).get("new@example.net"), "", "subscribed now")
    srv.stop()


@SUITE.test("a confirmation link used after an unsubscribe: 410 with the signup form; still "
            "unsubscribed (list, list.log, after a restart); the send mails them nothing")
def test_confirm_after_unsubscribe(t):
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp, web={"signup": True})
    srv = Serve(t)
    issued = int(time.time())
    tok = confirm_token("new@example.net", "New", issued + 48 * 3600)
    path = "/confirm?" + urllib.parse.urlencode({"e": "new@example.net", "n": "New", "t": tok})
    equal(srv.request("POST", path, "confirm=yes", FORM)[0], 200, "confirm")
    equal(list_status(t).get("new@example.net"), "", "subscribed")
    while int(time.time()) == issued:   # the unsubscribe a second after the link was made
        time.sleep(0.05)
    equal(one_click(srv, "new@example.net")[0], 200, "unsubscribe")
    for method in ("GET", "POST"):
        status, _, body = srv.request(method, path, "confirm=yes" if method == "POST" else None, FORM)
        equal(status, 410, f"{method} the old link")
        expect("mailed before the address was unsubscribed" in body, body)
        expect('<form method="post" action="subscribe">' in body, "the signup form on the page")
    equal(list_status(t).get("new@example.net"), "unsubscribed", "still unsubscribed")
    equal([r[1] for r in strict_listlog(t)], ["subscribe", "unsubscribe"], "list.log")
    srv.stop()
    srv = Serve(t)
    equal(srv.request("POST", path, "confirm=yes", FORM)[0], 410, "the old link after a restart")
    srv.stop()
    equal(list_status(t).get("new@example.net"), "unsubscribed", "after a restart")
    r = t.send()
    equal(r.code, 0, "send")
    equal(collections.Counter(smtp.received()).get("new@example.net", 0), 0, "mails to them")


def signup(srv, email, xff=None):
    h = dict(FORM)
    if xff:
        h["X-Forwarded-For"] = xff
    return srv.request("POST", "/subscribe", urllib.parse.urlencode({"email": email, "name": ""}), h)


def flood(port, email, n, threads=4):
    """n POST /subscribe for email, each from another forwarded IPv4
    address, over keep-alive connections; returns the statuses."""
    body = urllib.parse.urlencode({"email": email, "name": ""}).encode()
    statuses = collections.Counter()
    lock = threading.Lock()

    def worker(k):
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        got = collections.Counter()
        for i in range(k, n, threads):
            ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/x-www-form-urlencoded\r\nX-Forwarded-For: " + ip.encode() +
                      b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            status = int(f.readline().split()[1])
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            got[status] += 1
        s.close()
        with lock:
            statuses.update(got)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return statuses


@SUITE.test("signup flood: 100,100 POSTs for one victim from rotating X-Forwarded-For (trusted "
            "proxy): one confirmation mail, not one per table flush")
def test_signup_flood(t):
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp, web={"signup": True, "trusted_proxies": ["127.0.0.1"]})
    srv = Serve(t)
    statuses = flood(srv.port, "victim@example.net", 100100)
    equal(dict(statuses), {200: 100100}, "answers")
    wait_mails(smtp, 1)
    # one more after the flood, from a fresh address: the victim is still limited
    equal(signup(srv, "victim@example.net", "192.0.2.1")[0], 200, "one more")
    srv.stop()
    equal(collections.Counter(smtp.received()), {"victim@example.net": 1}, "mails stored")


@SUITE.test("signup limits: an IPv6 client counts per /64: the 11th signup in an hour from one "
            "/64 is 429, another /64 is not")
def test_signup_v6(t):
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp, web={"signup": True, "trusted_proxies": ["127.0.0.1"]})
    srv = Serve(t)
    got = [signup(srv, f"v{i}@example.net", f"2001:db8:1:2::{i + 1:x}")[0] for i in range(11)]
    equal(got, [200] * 10 + [429], "ten signups from one /64, then 429")
    equal(signup(srv, "other@example.net", "2001:db8:1:3::1")[0], 200, "another /64")
    srv.stop()
    counts = collections.Counter(smtp.received())
    equal(sum(counts.values()), 11, "mails in all")
    equal(counts["v10@example.net"], 0, "mails to the refused one")


@SUITE.test("signup limits: the per-address limit holds across a restart of serve (signups.log)")
def test_signup_restart(t):
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp, web={"signup": True})
    srv = Serve(t)
    equal(signup(srv, "v0@example.net")[0], 200, "v0")
    wait_mails(smtp, 1)
    srv.stop()
    srv = Serve(t)
    equal(signup(srv, "v0@example.net")[0], 200, "v0 again after a restart")
    equal(signup(srv, "fresh@example.net")[0], 200, "a fresh address")
    wait_mails(smtp, 2)
    srv.stop()
    counts = collections.Counter(smtp.received())
    equal(dict(counts), {"v0@example.net": 1, "fresh@example.net": 1},
          "mails stored per address (v0 limited across the restart)")


@SUITE.test("bounces.log cut short by a real short write (RLIMIT_FSIZE): the failed scan leaves "
            "it ending in a whole line; the rescan logs each bounce once")
def test_bounces_short_write(t):
    import resource
    import signal
    import integration_statefiles as sf
    md = sf.two_undated_maildir(t)
    # a first scan tells the size of the first line
    one = t.path("state", "bounces.log")
    r = t.herald("bounces", "scan", f"maildir:{md}")
    equal(r.code, 0, "a first scan of both")
    with open(one, "rb") as f:
        lines = f.read().split(b"\n")
    limit = len(lines[0]) + 1 + 30     # one whole line, then 30 bytes of the next
    # the same two bounces again, new messages: the scan logs them again
    # (another report), so start from an empty state
    shutil.rmtree(t.path("state"))
    shutil.rmtree(md)
    md = sf.two_undated_maildir(t)

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    r = sf.run(t, t.command(["bounces", "scan", f"maildir:{md}"]), preexec=small_disk)
    expect(r.code != 0, f"the scan fails: exit {r.code}")
    with open(one, "rb") as f:
        data = f.read()
    expect(data.endswith(b"\n"), f"bounces.log ends in a whole line: {data[-60:]!r}")
    equal(len(data), len(lines[0]) + 1, "bounces.log holds the first line, whole")
    r = t.herald("bounces", "scan", f"maildir:{md}")
    equal(r.code, 0, "the rescan")
    expect("cut short" not in r.err, f"nothing to repair: {r.err}")
    equal(sf.per_address(t), {"ann@example.net": 1, "bob@example.net": 1}, "lines per address")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
