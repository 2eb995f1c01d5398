#!/usr/bin/python3
"""The append-only state files across crashes (issues 10.1, 10.4, 10.9,
10.11, 9.5): a journal, bounces.log or mailbox.seen whose last line was
torn (a real short write under RLIMIT_FSIZE, or cut by the test) or
followed by NUL bytes; kill -9 between the bounce log and the mailbox mark
and inside libetpan's maildir mark (strace inject); a journal written with
the clock an hour ahead (faketime); a killed list rewrite; a DSN whose
Final-Recipient names nobody but whose VERP address does.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_statefiles.py [PATTERN...]

Every test counts what the capture server stored per reader, or what
bounces.log holds per address, and asserts exactly once across the crash
and the rerun.
"""

import collections
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

from harness import (EX_OK, HERALD, Run, Skip, Suite, csv, equal, expect, log)
from integration_bounces import (BOUNCES, RP, PW, Box, bounce_config, make_maildir,
                                 make_mbox, read, summary)

SUITE = Suite()
test = SUITE.test
EX_CANTCREAT = 73
READERS = [f"r{i}@example.net" for i in range(1, 7)]
BASE = {"smtp": {"timeout": 10, "starttls": "never", "connections": 1},
        "retry": {"attempts": 2, "initial_delay": 0, "max_delay": 0}}


def world(t, server, readers=READERS, changes=None):
    t.subscribers(csv(*(f"{a},Reader" for a in readers)))
    t.post()
    cfg = dict(BASE)
    cfg.update(changes or {})
    t.config(server, cfg)


def run(t, cmd, env=None, preexec=None, timeout=120):
    # LeakSanitizer cannot run under ptrace (strace); faketime is an
    # LD_PRELOAD that comes before the ASan runtime.
    env = {**(env or {}), "ASAN_OPTIONS": "detect_leaks=0:verify_asan_link_order=0"}
    log("# $ " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=t.cwd, env=t.env(env), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, preexec_fn=preexec)
    return t.record(Run(cmd, p.returncode, p.stdout.decode(errors="replace"),
                        p.stderr.decode(errors="replace")))


def strace(t, inject, *args, env=None):
    if not shutil.which("strace"):
        raise Skip("strace is not installed")
    return run(t, ["strace", "-f", "-qq", "-o", "/dev/null", *inject, *t.command(list(args))],
               env=env)


def once_each(server, readers):
    counts = collections.Counter(server.received())
    equal({a: counts[a] for a in readers}, {a: 1 for a in readers},
          "messages stored per reader")
    equal(sum(counts.values()), len(readers), "messages stored")


def log_rows(t):
    """bounces.log as split lines (every field kept)."""
    p = t.path("state", "bounces.log")
    if not os.path.exists(p):
        return []
    with open(p, "rb") as f:
        return [l.decode(errors="replace").split("\t") for l in f.read().split(b"\n") if l]


def per_address(t):
    """Lines per address that start as a bounces.log line must (a time,
    then an address, then a kind): a line glued onto a fragment counts
    for the fragment, not for its own address."""
    c = collections.Counter()
    for r in log_rows(t):
        if len(r) >= 8 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[0]) and \
           r[2] in ("hard", "soft", "complaint", "forget"):
            c[r[1]] += 1
    return dict(c)


def warned(r, *needles):
    hits = [l for l in r.err.splitlines() if all(n in l for n in needles)]
    expect(hits, f"no warning naming {needles} in {r.err!r}")


def undated(name, addr=None):
    """A fixture without its Date:, Message-ID: (the report's own) and
    Arrival-Date: the scan gives it the scan's time."""
    raw = read(os.path.join(BOUNCES, name))
    raw = b"\n".join(l for l in raw.split(b"\n") if not l.startswith(b"Arrival-Date:"))
    head, sep, body = raw.partition(b"\n\n")
    head = b"\n".join(l for l in head.split(b"\n")
                      if not l.lower().startswith((b"date:", b"message-id:")))
    raw = head + sep + body
    if addr:
        user = addr.split("@")[0].encode()
        raw = raw.replace(b"gone@example.net", addr.encode()).replace(
            b"gone=example.net", user + b"=example.net")
    return raw


# ---- 10.1: torn last lines -------------------------------------------------

@test("journal torn by a real short write (RLIMIT_FSIZE, the disk-full path): exit 73, "
      "the rerun warns FILE:LINE and mails nobody twice, a third run mails nobody")
def test_journal_short_write(t):
    s = t.server()
    world(t, s)
    r = t.send("--limit", "1")
    jpath = t.path("state", "issue-1.journal")
    first = os.path.getsize(jpath)
    # One more whole line fits, then 40 bytes of the next: its time and
    # address, cut inside the Message-ID.
    limit = 2 * first + 40

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    r = run(t, t.command(["send", t.path("issue-1.md")]), preexec=small_disk)
    equal(r.code, EX_CANTCREAT, "exit code when the journal cannot be written")
    with open(jpath, "rb") as f:
        data = f.read()
    expect(not data.endswith(b"\n"), f"the journal ends in a torn line: {data[-60:]!r}")
    equal(len(s.received()), 3, "messages the server took before the journal failed")
    rerun = t.send()
    equal(rerun.code, EX_OK, "rerun")
    r = t.send()
    equal(r.code, EX_OK, "third run")
    once_each(s, READERS)
    warned(rerun, "issue-1.journal:3:", "cut short")


@test("journal whose tail is a torn line and a block of NULs (a power cut): "
      "the rerun appends whole lines, later runs read them")
def test_journal_nuls(t):
    s = t.server()
    world(t, s)
    equal(t.send("--limit", "2").code, 75, "first run, two readers")
    jpath = t.path("state", "issue-1.journal")
    with open(jpath, "rb") as f:
        lines = f.read().split(b"\n")
    # The second line loses its end (but keeps its address), then zeros.
    torn = lines[1][:lines[1].index(b"\t", 25) + 6]
    with open(jpath, "wb") as f:
        f.write(lines[0] + b"\n" + torn + b"\0" * 4096)
    rerun = t.send("--limit", "2")
    equal(t.send().code, EX_OK, "third run")
    equal(t.send().code, EX_OK, "fourth run")
    once_each(s, READERS)
    warned(rerun, "issue-1.journal:2:")
    with open(jpath, "rb") as f:
        expect(b"\0" not in f.read(), "the NULs are gone")


@test("bounces.log with a torn last line and NULs: the scan's lines stand on their own, "
      "each address has one line and the next send skips the bounced")
def test_bounces_log_torn(t):
    s = t.server()
    readers = ["ok@example.net", "gone@example.net", "full@example.net", "old@example.org"]
    world(t, s, readers, {"bounce": {"return_path": RP, "soft_limit": 1}})
    os.makedirs(t.path("state"))
    with open(t.path("state", "bounces.log"), "wb") as f:
        # A line of an earlier version (8 fields), then a fragment.
        f.write(b"2025-11-20T10:00:00Z\told@example.org\thard\t5.1.1\t550\tdsn\t-\tgone\n"
                b"2025-11-26T11:00:00Z\tzz@exam" + b"\0" * 512)
    md = t.path("bounces")
    make_maildir(md, [("a", read(os.path.join(BOUNCES, "postfix-dsn.eml"))),
                      ("b", read(os.path.join(BOUNCES, "soft-full.eml")))])
    r = t.herald("bounces", "scan", f"maildir:{md}")
    equal(r.code, EX_OK, "scan")
    equal(per_address(t), {"old@example.org": 1, "gone@example.net": 1, "full@example.net": 1},
          "bounces.log lines per address")
    equal(t.send().code, EX_OK, "send")
    equal(sorted(s.received()), ["ok@example.net"], "mailed: only the one that did not bounce")
    warned(r, "bounces.log:2:")


@test("mailbox.seen with a torn last line and NULs (mbox): every mark stands on its own line, "
      "a rescan reads nothing, each address one line")
def test_seen_torn(t):
    bounce_config(t)
    mb = t.path("bounces.mbox")
    make_mbox(mb, [("a", read(os.path.join(BOUNCES, "postfix-dsn.eml"))),
                   ("b", read(os.path.join(BOUNCES, "soft-full.eml")))])
    os.makedirs(t.path("state"))
    with open(t.path("state", "mailbox.seen"), "wb") as f:
        f.write(b"mbox:/elsewhere\t0123abcd\nmbox:/else" + b"\0" * 100)
    r = t.herald("bounces", "scan", f"mbox:{mb}")
    equal(r.code, EX_OK, "scan")
    first = r
    equal(summary(r.out)["messages"], 2, "messages read")
    r = t.herald("bounces", "scan", f"mbox:{mb}")
    equal(summary(r.out)["messages"], 0, "messages read by the rescan")
    equal(per_address(t), {"gone@example.net": 1, "full@example.net": 1}, "lines per address")
    warned(first, "mailbox.seen:2:")


# ---- 10.4: kill -9 between the log and the mark ----------------------------

def two_undated_maildir(t):
    bounce_config(t)
    md = t.path("bounces")
    make_maildir(md, [("a", undated("postfix-dsn.eml", "ann@example.net")),
                      ("b", undated("postfix-dsn.eml", "bob@example.net"))])
    return md


def scan_until_quiet(t, source, want):
    r = t.herald("bounces", "scan", source)
    equal(r.code, EX_OK, "rescan")
    time.sleep(1.1)            # another second: a time-keyed dedupe would miss
    r = t.herald("bounces", "scan", source)
    equal(per_address(t), want, "lines per address")
    equal(summary(r.out)["messages"], 0, "messages read by a second rescan")


@test("maildir: kill -9 after the bounce is logged, before its mark (strace, fdatasync of "
      "bounces.log); the rescan a second later adds no line")
def test_kill_before_mark_maildir(t):
    md = two_undated_maildir(t)
    r = strace(t, ["-P", t.path("state", "bounces.log"), "-e", "trace=fdatasync",
                   "-e", "inject=fdatasync:signal=SIGKILL:when=1"], "bounces", "scan", f"maildir:{md}")
    equal(r.code, -signal.SIGKILL, "killed")
    equal(list(per_address(t).values()), [1], "logged before the kill: one line")
    equal(len(os.listdir(os.path.join(md, "new"))), 2, "nothing marked")
    time.sleep(1.1)
    scan_until_quiet(t, f"maildir:{md}", {"ann@example.net": 1, "bob@example.net": 1})


@test("maildir: kill -9 inside libetpan's mark (after link to cur/, before unlink from new/): "
      "the next scan finishes the mark and reads it no more")
def test_kill_inside_mark(t):
    md = two_undated_maildir(t)
    a = os.path.join(md, "new", sorted(os.listdir(os.path.join(md, "new")))[0])
    r = strace(t, ["-P", a, "-e", "trace=unlink", "-e", "inject=unlink:signal=SIGKILL:when=1"],
               "bounces", "scan", f"maildir:{md}")
    equal(r.code, -signal.SIGKILL, "killed")
    expect(os.path.exists(a), "the message is still in new/")
    cur = os.listdir(os.path.join(md, "cur"))
    expect(any(n.startswith(os.path.basename(a) + ":") for n in cur), f"and linked into cur/: {cur}")
    time.sleep(1.1)
    r = t.herald("bounces", "scan", f"maildir:{md}")
    equal(os.listdir(os.path.join(md, "new")), [], "new/ after the rescan")
    # Whichever came first: the other message, if it was not reached.
    equal(summary(r.out)["messages"], 2 - len(cur), "the rescan reads only what was not marked")
    scan_until_quiet(t, f"maildir:{md}", {"ann@example.net": 1, "bob@example.net": 1})
    equal(len(os.listdir(os.path.join(md, "cur"))), 2, "messages in cur/")
    equal(per_address(t), {"ann@example.net": 1, "bob@example.net": 1}, "lines per address")


@test("IMAP: kill -9 after the bounce is logged, before the STORE; the rescan adds no line")
def test_kill_before_mark_imap(t):
    box = Box(t)
    for who in ("ann@example.net", "bob@example.net"):
        box.d.deliver("bounces", undated("postfix-dsn.eml", who))
    bounce_config(t, None, {"bounce": {"mailbox": {"starttls": "never"}}})
    env = {"HERALD_BOUNCE_PASSWORD": PW}
    r = strace(t, ["-P", t.path("state", "bounces.log"), "-e", "trace=fdatasync",
                   "-e", "inject=fdatasync:signal=SIGKILL:when=1"],
               "bounces", "scan", box.url("imap"), env=env)
    equal(r.code, -signal.SIGKILL, "killed")
    equal(list(per_address(t).values()), [1], "logged before the kill: one line")
    time.sleep(1.1)
    r = t.herald("bounces", "scan", box.url("imap"), env=env)
    equal(r.code, EX_OK, "rescan")
    equal(per_address(t), {"ann@example.net": 1, "bob@example.net": 1}, "lines per address")
    got = summary(r.out)
    equal((got["messages"], got["already logged"], got["hard"]), (2, 1, 1), "rescan summary")


@test("kill -9 on bounces.log's second write: the rescan logs the rest, each address once")
def test_kill_on_log_write(t):
    md = two_undated_maildir(t)
    r = strace(t, ["-P", t.path("state", "bounces.log"), "-e", "trace=write",
                   "-e", "inject=write:signal=SIGKILL:when=2"], "bounces", "scan", f"maildir:{md}")
    equal(r.code, -signal.SIGKILL, "killed")
    time.sleep(1.1)
    scan_until_quiet(t, f"maildir:{md}", {"ann@example.net": 1, "bob@example.net": 1})


# ---- 10.9: a clock stepped back ----------------------------------------------

@test("journal written with the clock an hour ahead (faketime +1h): the per-minute window "
      "is not held for an hour; everyone gets one message")
def test_clock_stepped_back(t):
    if not shutil.which("faketime"):
        raise Skip("faketime is not installed")
    s = t.server()
    early = ["e1@example.net", "e2@example.net"]
    world(t, s, early, {"rate": {"per_minute": 2}, "smtp": {**BASE["smtp"], "timeout": 600}})
    t.post(name="issue-0.md")
    r = run(t, ["faketime", "-f", "+1h", *t.command(["send", t.path("issue-0.md")])])
    equal(r.code, EX_OK, "the run an hour ahead")
    t.subscribers(csv(*(f"{a},Reader" for a in READERS[:2])))
    # 60 times faster: a minute's wait is a second, an hour's a minute.
    started = time.monotonic()
    r = run(t, ["faketime", "-f", "+0 x60", *t.command(["send", t.path("issue-1.md")])],
            timeout=30)
    equal(r.code, EX_OK, "the run with the clock back")
    expect(time.monotonic() - started < 20, "waited for the windows an hour ahead")
    once_each(s, early + READERS[:2])


# ---- 10.11: a killed list rewrite --------------------------------------------

@test("subscribers unsubscribe killed before its rename leaves a temporary file; "
      "the next run removes it and the list is right")
def test_unsubscribe_stale_temp(t):
    t.subscribers(csv("ann@example.net,Ann", "bob@example.net,Bob"))
    t.post()
    t.config(None)
    r = strace(t, ["-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:signal=SIGKILL:when=1"],
               "subscribers", "unsubscribe", "--address", "ann@example.net")
    equal(r.code, -signal.SIGKILL, "killed")
    stale = [n for n in os.listdir(t.dir) if n.startswith(".subs.csv.herald-")]
    equal(len(stale), 1, "temporary files left by the kill")
    r = t.herald("subscribers", "unsubscribe", "--address", "bob@example.net")
    equal(r.code, EX_OK, "the next run")
    equal([n for n in os.listdir(t.dir) if n.startswith(".subs.csv.herald-")], [],
          "temporary files after it")
    equal(read(t.path("subs.csv")).decode(),
          "email,name,status\nann@example.net,Ann,\nbob@example.net,Bob,unsubscribed\n", "the list")


# ---- 9.5 ---------------------------------------------------------------------

NO_ADDRESS = b"""Delivered-To: bounces+joy=example.net@example.org
Date: Wed, 25 Nov 2025 10:15:02 +0000
From: MAILER-DAEMON@mx.example.org
Subject: Undelivered Mail Returned to Sender
To: bounces+joy=example.net@example.org
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Delivery failed.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: x400; /C=US/ADMD=/PRMD=EX/O=ORG/
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 no such user

--B--
"""


@test("a DSN whose Final-Recipient has no address names the reader by its VERP address; "
      "without VERP it is unresolved; the summary's buckets add up")
def test_verp_stands_in(t):
    bounce_config(t)
    md = t.path("bounces")
    no_verp = NO_ADDRESS.replace(b"bounces+joy=example.net@", b"bounces@")
    make_maildir(md, [("a", NO_ADDRESS), ("b", no_verp),
                      ("c", read(os.path.join(BOUNCES, "arf-not-spam.eml"))),
                      ("d", read(os.path.join(BOUNCES, "vacation.eml")))])
    r = t.herald("bounces", "scan", f"maildir:{md}")
    equal(r.code, EX_OK, "scan")
    equal([(x[1], x[2], x[3]) for x in log_rows(t)], [("joy@example.net", "hard", "5.1.1")],
          "bounces.log")
    got = summary(r.out)
    equal((got["messages"], got["hard"], got["unresolved"], got["with nothing failed"],
           got["not bounces"]), (4, 1, 1, 1, 1), "buckets")


@test("journal_open failing (the journal is a directory) frees what it built: "
      "exit 73 under ASan with leak detection, no leak reported")
def test_open_failure_frees(t):
    # The sanitizer build beside HERALD (HERALD_SAN names another).
    san = os.environ.get("HERALD_SAN") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(HERALD))), "build-san", "herald")
    if not os.access(san, os.X_OK):
        raise Skip("no build-san/herald")
    s = t.server()
    world(t, s)
    os.makedirs(t.path("state", "issue-1.journal"))
    cmd = [san, "-c", t.path("herald.conf"), "send", t.path("issue-1.md")]
    log("# $ " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=t.cwd, env=t.env({"ASAN_OPTIONS": "detect_leaks=1"}),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    r = t.record(Run(cmd, p.returncode, p.stdout.decode(errors="replace"),
                     p.stderr.decode(errors="replace")))
    equal(r.code, EX_CANTCREAT, "exit code")
    expect("LeakSanitizer" not in r.err, "leak reported")
    equal(s.received(), [], "nobody mailed")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
