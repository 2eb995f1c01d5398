#!/usr/bin/python3
"""Failure semantics and crash safety (issues 9 and 10): a refusal that is
about the sender is not a bounce, a server that is down is one problem,
loopback is an address, and nothing is lost or sent twice when the disk
fills, a signal comes, or a password command hangs.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_failures.py [PATTERN...]

Every test asserts the exit code, bounces.log, the journal and what the
server stored per reader; where a run stops early, a rerun against a
healthy server must leave every reader with exactly one message (or the
documented bound: one per connection for a journal that cannot be
written).
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from harness import (
    EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, EX_CONFIG, Skip, Suite, csv, equal, expect)

SUITE = Suite()
test = SUITE.test

EX_CANTCREAT = 73
READERS = ["ann@example.net", "bob@example.net", "cyd@example.net"]
ANN, BOB, CYD = READERS
USER, PASSWORD = "joy", "pw-for-joy"
BASE = {"smtp": {"timeout": 3, "starttls": "never"},
        "retry": {"attempts": 3, "initial_delay": 0.2, "max_delay": 0.4}}


def world(t, server, changes=None, readers=READERS):
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(readers, 1))))
    t.post()
    cfg = {k: dict(v) for k, v in BASE.items()}
    for k, v in (changes or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    t.config(server, cfg)
    return cfg


def herald_lines(r):
    return [l for l in r.err.splitlines() if l.startswith("herald: ")]


def one_line(r, *needles):
    hits = [l for l in herald_lines(r) if all(n.lower() in l.lower() for n in needles)]
    expect(hits, f"no one-line error naming {needles} in: {r.err!r}")
    return hits[0]


def journal_addrs(t):
    return [row[1] for row in t.journal()]


def nothing_recorded(t, s):
    equal(t.bounces(), [], "bounces.log (nobody blamed)")
    equal(journal_addrs(t), [], "journal")
    if s is not None:
        equal(s.received(), [], "messages stored")


def rerun_healthy(t, cfg, *servers, readers=READERS, bounced=()):
    healthy = t.fault_server()
    t.config(healthy, cfg)
    r = t.send()
    equal(r.code, EX_OK, "exit code of the rerun against a healthy server")
    got = []
    for s in (*servers, healthy):
        got += s.received()
    equal(sorted(got), sorted(set(readers) - set(bounced)),
          "readers received over both runs (each exactly once)")
    return healthy


def not_suppressed(t, readers=READERS):
    """`bounces list` names none of them."""
    r = t.herald("bounces", "list")
    for a in readers:
        expect(a not in r.out, f"{a} is suppressed: {r.out!r}")


# ---- 1. refusals about the sender ---------------------------------------

SENDER_REFUSALS = [
    ("postfix-relay", "554 5.7.1 <{rcpt}>: Relay access denied", ["smtp.username", "relay"]),
    ("postfix-client", "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
     ["client restrictions"]),
    ("auth-530", "530 5.7.0 Authentication required", ["smtp.username"]),
    ("exim-relay", "550 relay not permitted", ["relay"]),
    ("ms-unable-to-relay", "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
     ["relay"]),
    ("gmail-dmarc", "550 5.7.26 Unauthenticated email from example.org is not accepted due "
     "to domain's DMARC policy", ["SPF", "DKIM"]),
    ("postfix-sender", "553 5.7.1 <joy@example.org>: Sender address rejected: not owned by user",
     ["`from`"]),
]


def sender_refusal_test(name, reply, hints):
    @test(f"RCPT refused about the sender ({name}: {reply.format(rcpt=ANN)[:48]}...): exit 69, "
          "one line naming the relay and the fix, no bounce, nobody suppressed, "
          "journal untouched; a rerun delivers each once")
    def t_(t):
        s = t.fault_server({"at": "rcpt", "reply": reply.format(rcpt=ANN)})
        cfg = world(t, s, {"smtp": {"connections": 1}})
        r = t.send()
        equal(r.code, EX_UNAVAILABLE, "exit code")
        one_line(r, s.url(), *hints)
        nothing_recorded(t, s)
        not_suppressed(t)
        expect(not re.search(r"refused:|deferred after", r.err),
               f"a reader was reported as refused or deferred: {r.err!r}")
        expect(len(s.transactions()) <= 2,
               f"{len(s.transactions())} transactions tried after the relay said no")
        rerun_healthy(t, cfg, s)
    t_.__name__ = "test_sender_" + name.replace("-", "_")
    return t_


for _n, _reply, _hints in SENDER_REFUSALS:
    sender_refusal_test(_n, _reply, _hints)


@test("the same unknown 5xx to the first 5 readers with nothing accepted: the "
      "relay's problem, exit 69, no bounces, at most 5 + in-flight RCPTs tried")
def test_unknown_wording_streak(t):
    readers = [f"r{i}@example.net" for i in range(1, 9)]
    s = t.fault_server({"at": "rcpt", "reply": "550 5.7.0 Policy says no (P42)"})
    cfg = world(t, s, readers=readers)
    r = t.send()
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line(r, s.url(), "first 5 readers", "550 5.7.0", "nobody was marked as bounced")
    nothing_recorded(t, s)
    not_suppressed(t, readers)
    rcpts = sum(len(x["rcpts"]) for x in s.transactions())
    expect(rcpts <= 5 + 2, f"{rcpts} RCPTs tried")
    rerun_healthy(t, cfg, s, readers=readers)


@test("a genuine 5.1.1 to the first reader, then the others accepted: a hard "
      "bounce for that reader only, exit 0")
def test_genuine_bounce_first(t):
    s = t.fault_server({"at": "rcpt", "rcpt": ANN,
                        "reply": f"550 5.1.1 <{ANN}>: Recipient address rejected: User unknown"})
    world(t, s, {"smtp": {"connections": 1}})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), [BOB, CYD], "stored")
    equal([tuple(x[1:5]) for x in t.bounces()], [(ANN, "hard", "5.1.1", "550")], "bounces.log")
    equal(sorted(journal_addrs(t)), [BOB, CYD], "journal")


@test("a genuine 5.1.1 after others were accepted stays a hard bounce, exit 0")
def test_genuine_bounce_last(t):
    s = t.fault_server({"at": "rcpt", "rcpt": CYD,
                        "reply": f"550 5.1.1 <{CYD}>: Recipient address rejected: User unknown"})
    world(t, s, {"smtp": {"connections": 1}})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    equal([tuple(x[1:5]) for x in t.bounces()], [(CYD, "hard", "5.1.1", "550")], "bounces.log")
    r = t.herald("bounces", "list")
    expect(CYD in r.out, f"{CYD} not suppressed: {r.out!r}")


@test("a 450 4.7.1 about the client host is deferred but never a soft bounce of the reader")
def test_temp_sender_side_no_soft_bounce(t):
    s = t.fault_server({"at": "rcpt", "rcpt": BOB,
                        "reply": "450 4.7.1 <bob@example.net>: Client host rejected: cannot find your hostname"})
    world(t, s)
    r = t.send()
    equal(r.code, EX_TEMPFAIL, "exit code")
    equal(t.bounces(), [], "bounces.log")


@test("smtp.username set, the server offers no AUTH: exit 69, clear message, "
      "no MAIL sent, nothing stored")
def test_username_without_auth(t):
    s = t.fault_server()
    world(t, s, {"smtp": {"username": USER, "password_env": "PW"}})
    r = t.send(env={"PW": PASSWORD})
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line(r, "smtp.username", "no AUTH")
    nothing_recorded(t, s)
    cmds = [e.get("cmd", "") for e in s.events()]
    expect(not any(c.upper().startswith("MAIL") for c in cmds), f"MAIL was sent: {cmds}")


# ---- 2. a server that is down -------------------------------------------

@test("connection refused: said once per attempt, the connection retried "
      "(not the readers), exit 69, readers counted as not attempted, nothing "
      "in bounces.log")
def test_server_down(t):
    world(t, None)
    r = t.send("--json")
    equal(r.code, EX_UNAVAILABLE, "exit code")
    tries = [l for l in herald_lines(r) if "retrying in" in l]
    equal(len(tries), 2, f"retry lines (attempts 2/3 and 3/3): {r.err!r}")
    expect("connection refused; retrying in" in tries[0] and "(attempt 2/3)" in tries[0],
           f"first retry line: {tries[0]!r}")
    one_line(r, "connection refused", "3 attempts", "is the server running")
    expect(not re.search(r"deferred after|@example\.net", r.err),
           f"readers reported one by one: {r.err!r}")
    j = json.loads(r.out)
    equal((j["deferred"], j["not_attempted"], j["sent"]), (0, 3, 0),
          "deferred, not attempted, sent in --json")
    nothing_recorded(t, None)


@test("connection refused on a terminal: the summary says 'not attempted 3', "
      "no 'deferred 3', no msg/s or ETA, no '(some refused)'")
def test_server_down_tty(t):
    world(t, None)
    r = t.herald_tty("send", t.path("issue-1.md"))
    equal(r.code, EX_UNAVAILABLE, "exit code")
    expect(re.search(r"not attempted\s+3", r.out), f"summary: {r.out!r}")
    expect(not re.search(r"deferred\s+[1-9]", r.out), f"summary says deferred: {r.out!r}")
    expect("msg/s" not in r.out and "ETA" not in r.out and "some refused" not in r.out,
           f"progress or summary shows a rate, an ETA or refusals: {r.out!r}")


@test("a listener that never greets: 'timed out waiting ... for the greeting', "
      "retried as a connection, exit 69, with the smtps:// hint")
def test_never_greets(t):
    s = t.fault_server({"at": "greeting", "do": "stall"})
    world(t, s, {"smtp": {"timeout": 1}, "retry": {"attempts": 2}})
    r = t.send()
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line(r, "greeting", "smtps://", "2 attempts")
    nothing_recorded(t, s)


@test("smtps:// against a plain SMTP port: exit 69, the hint says smtp://")
def test_smtps_on_plain_port(t):
    s = t.fault_server()
    world(t, s)
    cfg = open(t.path("herald.conf")).read().replace("smtp://", "smtps://")
    t.write("herald.conf", cfg)
    r = t.send()
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line(r, "smtp://")
    nothing_recorded(t, s)


@test("starttls = required against a server without STARTTLS: exit 69, the "
      "hint names starttls = \"never\" for a loopback test server")
def test_starttls_missing(t):
    s = t.fault_server()
    world(t, s, {"smtp": {"starttls": "required"}})
    r = t.send()
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line(r, "starttls = \"never\"")
    nothing_recorded(t, s)


@test("the server goes away mid-run: the rest are not attempted (no per-reader "
      "deferrals), exit 69; a rerun sends each remaining reader once")
def test_server_dies_mid_run(t):
    readers = [f"r{i}@example.net" for i in range(1, 7)]
    # The first two connections (herald's probe, then its sending
    # connection) are greeted; r3's RCPT ends the second; every later one
    # is closed before the greeting: the server is gone.
    s = t.fault_server({"at": "greeting", "conn": 1, "reply": "220 faultsmtp ESMTP ready"},
                       {"at": "greeting", "conn": 2, "reply": "220 faultsmtp ESMTP ready"},
                       {"at": "greeting", "do": "close"},
                       {"at": "rcpt", "rcpt": "r3@example.net", "reply": "421 4.3.2 Bye"})
    cfg = world(t, s, {"smtp": {"connections": 1}}, readers=readers)
    r = t.send("--json")
    equal(r.code, EX_UNAVAILABLE, "exit code")
    j = json.loads(r.out)
    equal(j["deferred"], 0, "deferred")
    equal((j["sent"], j["not_attempted"]), (2, 4), "sent, not attempted")
    expect(not re.search(r"deferred after", r.err), f"per-reader deferrals: {r.err!r}")
    equal(t.bounces(), [], "bounces.log")
    one_line(r, "retrying in", "(attempt 2/3)")
    rerun_healthy(t, cfg, s, readers=readers)


# ---- 3. loopback is an address -------------------------------------------

@test("smtp://127.mail.example.invalid with a username and starttls = try is a "
      "remote host: refused before connecting (exit 78), the password never sent")
def test_loopback_by_address(t):
    s = t.fault_server(args=["--auth", f"{USER}:{PASSWORD}"])
    world(t, s, {"smtp": {"username": USER, "password_env": "PW", "starttls": "try"}})
    cfg = open(t.path("herald.conf")).read().replace("127.0.0.1", "127.mail.example.invalid")
    t.write("herald.conf", cfg)
    r = t.send(env={"PW": PASSWORD})
    equal(r.code, EX_CONFIG, "exit code")
    one_line(r, "starttls")
    equal(s.events(), [], "events at the real server")


@test("smtp://localhost with a username and starttls = try: localhost resolves "
      "to loopback, AUTH goes without TLS, all delivered")
def test_localhost_is_loopback(t):
    s = t.fault_server(args=["--auth", f"{USER}:{PASSWORD}"])
    world(t, s, {"smtp": {"username": USER, "password_env": "PW", "starttls": "try"}})
    cfg = open(t.path("herald.conf")).read().replace("127.0.0.1", "localhost")
    t.write("herald.conf", cfg)
    r = t.send(env={"PW": PASSWORD})
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), READERS, "stored")


# ---- 5. smaller misreports ------------------------------------------------

@test("send --test --json: retried 0 when nothing was retried")
def test_test_retries_zero(t):
    s = t.fault_server()
    world(t, s)
    r = t.send("--test", "--json")
    equal(r.code, EX_OK, "exit code")
    j = json.loads(r.out)
    equal(j["retried"], 0, "retried")
    equal(s.received(), ["me@example.org"], "stored")


@test("--limit 1 neither warns about nor counts a bad row it never reached")
def test_limit_unreached_bad_row(t):
    s = t.fault_server()
    t.subscribers(csv("ann@example.net,Ann", "not-an-address,Bad", "cyd@example.net,Cyd"))
    t.post()
    t.config(s, BASE)
    r = t.send("--limit", "1", "--json")
    equal(r.code, EX_TEMPFAIL, "exit code (more remain)")
    expect("not-an-address" not in r.err, f"warned about an unreached row: {r.err!r}")
    equal(json.loads(r.out)["skipped"], 0, "skipped")


# ---- issue 10: disk full, signals, the lock -------------------------------

def strace_cmd(t, inject, *args):
    return ["strace", "-f", "-qq", "-o", "/dev/null", *inject, *t.command(list(args))]


def run_cmd(t, cmd, env=None, timeout=120):
    # LeakSanitizer cannot run under ptrace (strace); every run not under
    # strace still checks for leaks.
    env = {**(env or {}), "ASAN_OPTIONS": "detect_leaks=0"}
    p = subprocess.run(cmd, cwd=t.cwd, env=t.env(env), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    from harness import Run
    return t.record(Run(cmd, p.returncode, p.stdout.decode(errors="replace"),
                        p.stderr.decode(errors="replace")))


@test("ENOSPC on the journal (strace inject, from its 3rd write) with 4 "
      "connections: exit 73, no message handed over after it, at most one "
      "unrecorded acceptance per connection; a rerun leaves each reader with "
      "one copy but those")
def test_journal_enospc(t):
    if not shutil.which("strace"):
        raise Skip("strace is not installed")
    readers = [f"r{i:02d}@example.net" for i in range(1, 25)]
    s = t.server("--delay-ms", "30")
    cfg = world(t, s, {"smtp": {"connections": 4}}, readers=readers)
    os.makedirs(t.path("state"), exist_ok=True)
    jpath = t.path("state", "issue-1.journal")
    open(jpath, "w").close()
    r = run_cmd(t, strace_cmd(t, ["-P", jpath, "-e", "trace=write",
                                  "-e", "inject=write:error=ENOSPC:when=3+"],
                              "send", t.path("issue-1.md")))
    equal(r.code, EX_CANTCREAT, "exit code")
    one_line(r, "issue-1.journal", "No space left")
    first = s.received()
    journaled = journal_addrs(t)
    # strace counts `when` per thread: each connection's thread writes two
    # lines before its writes fail.
    expect(1 <= len(journaled) <= 8, f"{len(journaled)} journal lines before the disk filled")
    unrecorded = set(first) - set(journaled)
    expect(len(unrecorded) <= 4,
           f"{len(unrecorded)} messages accepted but not recorded (bound: 4 connections): "
           f"{sorted(unrecorded)}")
    expect(len(first) < len(readers), "every reader was sent although the journal failed")
    r2 = t.send()
    equal(r2.code, EX_OK, "exit code of the rerun")
    counts = collections.Counter(s.received())
    equal(sorted(counts), readers, "every reader received")
    twice = sorted(a for a, n in counts.items() if n > 1)
    equal(twice, sorted(unrecorded), "duplicates are exactly the unrecorded acceptances")


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def graceful(t, sig):
    readers = [f"r{i:02d}@example.net" for i in range(1, 41)]
    s = t.server("--delay-ms", "400")
    cfg = world(t, s, {"smtp": {"connections": 4}}, readers=readers)
    p = t.popen("-v", "send", t.path("issue-1.md"))
    wait_for(lambda: len(s.received()) >= 4, 30, "4 messages stored")
    p.send_signal(sig)
    t0 = time.monotonic()
    code = p.wait(20)
    secs = time.monotonic() - t0
    out = open(t.path(f"bg1.out"), errors="replace").read()
    equal(code, EX_TEMPFAIL, f"exit code after {signal.Signals(sig).name}: {out!r}")
    expect(secs < 3 + 2, f"took {secs:.1f} s to stop")
    expect(re.search(r"sent \d+", out), f"no summary: {out!r}")
    stored = s.received()
    equal(sorted(journal_addrs(t)), sorted(stored),
          "journal == stored at the stop (every accepted message recorded)")
    expect(len(stored) < len(readers), "the signal stopped nothing")
    r = t.send()
    equal(r.code, EX_OK, "exit code of the rerun")
    counts = collections.Counter(s.received())
    equal(sorted(counts), readers, "every reader received")
    equal(sorted(a for a, n in counts.items() if n > 1), [], "duplicates after a graceful stop")


@test("SIGTERM during a 4-connection send: no new reader, replies in flight "
      "waited for and recorded, summary printed, exit 75; zero duplicates "
      "after the rerun")
def test_sigterm(t):
    graceful(t, signal.SIGTERM)


@test("SIGINT (Ctrl-C) during a 4-connection send: the same as SIGTERM")
def test_sigint(t):
    graceful(t, signal.SIGINT)


@test("a second signal ends herald at once; the rerun leaves every reader "
      "with a copy, duplicates at most one per connection")
def test_second_signal(t):
    readers = [f"r{i:02d}@example.net" for i in range(1, 41)]
    s = t.server("--delay-ms", "1500")
    cfg = world(t, s, {"smtp": {"connections": 4, "timeout": 10}}, readers=readers)
    p = t.popen("send", t.path("issue-1.md"))
    wait_for(lambda: len(s.received()) >= 2, 30, "2 messages stored")
    p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    # Killed by the signal itself (not a graceful exit after the drain).
    code = p.wait(10)
    equal(code, -signal.SIGTERM, "killed by the second SIGTERM")
    time.sleep(2)   # the server finishes storing what it had
    r = t.send()
    equal(r.code, EX_OK, "exit code of the rerun")
    counts = collections.Counter(s.received())
    equal(sorted(counts), readers, "every reader received")
    twice = [a for a, n in counts.items() if n > 1]
    expect(len(twice) <= 4, f"{len(twice)} duplicates (bound: 4 connections)")


@test("the lock is taken before the password command runs: a second run while "
      "the first waits for its password exits 75 at once")
def test_lock_before_password(t):
    s = t.fault_server(args=["--auth", f"{USER}:{PASSWORD}"])
    # A slow command, but within its timeout (smtp.timeout).
    world(t, s, {"smtp": {"username": USER, "password_env": None, "timeout": 10,
                          "password_command": f"sleep 3; echo {PASSWORD}"}})
    p = t.popen("send", t.path("issue-1.md"))
    time.sleep(0.7)
    t0 = time.monotonic()
    r = t.send()
    secs = time.monotonic() - t0
    equal(r.code, EX_TEMPFAIL, "exit code of the second run")
    expect(secs < 2, f"the second run waited {secs:.1f} s (for the password?)")
    one_line(r, "lock")
    equal(p.wait(30), EX_OK, "exit code of the first run")
    equal(sorted(s.received()), READERS, "stored once each")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
