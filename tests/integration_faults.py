#!/usr/bin/python3
"""herald against a misbehaving SMTP server (issue 6): every fault that
tests/faultsmtp.py can script, each asserted on herald's exit code, its
one-line error, the journal, the bounce log and what the server stored.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_faults.py [PATTERN...]

The invariant behind every test: nothing lost, nothing sent twice. So a
run that leaves readers unsent is followed by a second run against a
healthy server, and the two servers' messages together must be every
reader that did not bounce, each exactly once, matching the journal.
smtp.timeout is 2 s, so the stall tests stay short; retries are fast.
"""

import json
import os
import re
import subprocess
import sys
import time

from harness import (
    EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, Suite, csv, equal, expect)

SUITE = Suite()
test = SUITE.test

READERS = ["ann@example.net", "bob@example.net", "cyd@example.net"]
ANN, BOB, CYD = READERS
USER, PASSWORD = "joy", "s3cret-Pässword!"
TIMEOUT = 2          # smtp.timeout in these tests, seconds
BASE = {"smtp": {"timeout": TIMEOUT, "starttls": "never"},
        "retry": {"attempts": 2, "initial_delay": 0.1, "max_delay": 0.2}}


def world(t, server, changes=None, readers=READERS):
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(readers, 1))))
    t.post()
    cfg = {k: dict(v) for k, v in BASE.items()}
    for k, v in (changes or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    t.config(server, cfg)
    return cfg


def one_line_error(r, *needles):
    """herald said what went wrong in one line ("herald: ...") holding
    every needle (case-insensitive), and nothing on stderr is garbled."""
    lines = r.err.splitlines()
    expect("\r" not in r.err, f"CR on stderr: {r.err!r}")
    for l in lines:
        expect(len(l) < 600, f"stderr line of {len(l)} characters: {l[:200]!r}...")
        expect(not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", l),
               f"control characters on stderr: {l!r}")
    hits = [l for l in lines if l.startswith("herald: ")
            and all(n.lower() in l.lower() for n in needles)]
    expect(hits, f"no one-line error naming {needles} in: {r.err!r}")
    return hits[0]


def journal_addrs(t):
    return [row[1] for row in t.journal()]


def rerun_healthy(t, cfg, *servers, bounced=()):
    """A second run against a healthy server: afterwards every reader that
    did not bounce was received exactly once over all servers, and the
    journal says the same."""
    healthy = t.fault_server()
    t.config(healthy, cfg)
    r = t.send()
    equal(r.code, EX_OK, "exit code of the rerun against a healthy server")
    got = []
    for s in (*servers, healthy):
        got += s.received()
    equal(sorted(got), sorted(set(READERS) - set(bounced)),
          "readers received over both runs (each exactly once)")
    equal(sorted(journal_addrs(t)), sorted(got), "journal after the rerun")
    return healthy


def run(t, *rules, args=(), changes=None, env=None):
    """A faultsmtp playing rules, the world, one send: (server, config, run)."""
    s = t.fault_server(*rules, args=args)
    cfg = world(t, s, changes)
    return s, cfg, t.send(env=env)


def outcome(t, s, r, code, stored, bounced=()):
    """Exit code; what the server stored, each once; the journal, the same
    readers; the bounce log as (address, kind, status, code) rows."""
    equal(r.code, code, "exit code")
    equal(sorted(s.received()), sorted(stored), "messages stored (each once)")
    equal(sorted(journal_addrs(t)), sorted(stored), "journal")
    equal([tuple(x[1:5]) for x in t.bounces()], list(bounced), "bounce log")


def elapsed(f):
    start = time.monotonic()
    v = f()
    return v, time.monotonic() - start


# ---- greeting -----------------------------------------------------------

@test("421 at the greeting, every time: exit 69, one-line error, nothing "
      "recorded; a rerun sends to everyone once")
def test_greeting_421(t):
    s, cfg, r = run(t, {"at": "greeting", "reply": "421 4.3.2 Too busy, try later"})
    outcome(t, s, r, EX_UNAVAILABLE, [])
    one_line_error(r, s.url(), "421")
    equal(s.transactions(), [], "transactions begun")
    rerun_healthy(t, cfg, s)


@test("421 at the first greeting only: herald reconnects, all delivered once, exit 0")
def test_greeting_421_once(t):
    s, _, r = run(t, {"at": "greeting", "times": 1, "reply": "421 4.3.2 Too busy"})
    outcome(t, s, r, EX_OK, READERS)


@test("greeting never comes (stall past smtp.timeout): exit 69 in bounded "
      "time, error names the timeout")
def test_greeting_stall(t):
    (s, cfg, r), secs = elapsed(lambda: run(t, {"at": "greeting", "do": "stall"}))
    outcome(t, s, r, EX_UNAVAILABLE, [])
    one_line_error(r, s.url())
    expect(re.search(r"time|timeout|timed out", r.err, re.I),
           f"error does not say it timed out: {r.err!r}")
    # 3 readers x 2 attempts x 2 s, one connection at a time, at most
    expect(secs < 6 * TIMEOUT * 3 + 10, f"took {secs:.1f} s")
    rerun_healthy(t, cfg, s)


# ---- MAIL ---------------------------------------------------------------

@test("451 on MAIL FROM: deferred (exit 75 or 69), nothing stored, no reader "
      "soft-bounced; a rerun delivers each once")
def test_mail_451(t):
    s, cfg, r = run(t, {"at": "mail", "reply": "451 4.3.0 Local problem, try later"})
    # 75 (deferred) or 69 (the server would take nothing): both say "run
    # again later", and neither loses a reader
    expect(r.code in (EX_TEMPFAIL, EX_UNAVAILABLE), f"exit code {r.code}")
    one_line_error(r, "451")
    equal(s.received(), [], "messages stored")
    equal(t.journal(), [], "journal")
    # A 4xx to MAIL FROM is about the sender or the server, not the
    # reader: counting it as every reader's soft bounce would suppress the
    # whole list after bounce.soft_limit such runs.
    equal(t.bounces(), [], "bounce log (no reader soft-bounced)")
    rerun_healthy(t, cfg, s)


@test("550 on MAIL FROM (sender refused): stops at once, exit 69, no reader "
      "bounced; a rerun delivers each once")
def test_mail_550(t):
    s, cfg, r = run(t, {"at": "mail", "reply": "553 5.7.1 Sender address rejected"})
    outcome(t, s, r, EX_UNAVAILABLE, [])
    one_line_error(r, "553", "Sender address rejected")
    # it stops at the first refusal; a connection may already hold the
    # next message (two per connection when unthrottled)
    expect(len(s.transactions()) <= 2,
           f"{len(s.transactions())} transactions tried after the sender was refused")
    rerun_healthy(t, cfg, s)


# ---- RCPT ---------------------------------------------------------------

@test("451 on RCPT for one reader: others delivered, that one deferred "
      "(exit 75, soft bounce, tried retry.attempts times); rerun sends it once")
def test_rcpt_451(t):
    s, cfg, r = run(t, {"at": "rcpt", "rcpt": BOB,
                        "reply": "451 4.7.1 Greylisted, try again"})
    outcome(t, s, r, EX_TEMPFAIL, [ANN, CYD], [(BOB, "soft", "4.7.1", "451")])
    expect(BOB in r.err and "451" in r.err, f"stderr does not name {BOB}: {r.err!r}")
    equal(s.rcpt_attempts(BOB), 2, "RCPT attempts for the deferred reader")
    rerun_healthy(t, cfg, s)


@test("550 on RCPT as a multi-line reply: hard bounce with the whole text, "
      "exit 0; a rerun sends nothing more")
def test_rcpt_550_multiline(t):
    s, _, r = run(t, {"at": "rcpt", "rcpt": CYD, "reply": [
        "550-5.1.1 The email account that you tried to reach does not exist.",
        "550-5.1.1 Please try double-checking the recipient's email",
        "550 5.1.1 address for typos. x12si1234"]})
    outcome(t, s, r, EX_OK, [ANN, BOB], [(CYD, "hard", "5.1.1", "550")])
    text = t.bounces()[0][7]
    for part in ("does not exist", "double-checking", "for typos"):
        expect(part in text, f"bounce text lacks {part!r}: {text!r}")
    equal(s.rcpt_attempts(CYD), 1, "a permanent failure is not retried")
    r = t.send()
    outcome(t, s, r, EX_OK, [ANN, BOB], [(CYD, "hard", "5.1.1", "550")])


@test("421 on one RCPT (server closes): herald reconnects, each delivered once")
def test_rcpt_421(t):
    s, _, r = run(t, {"at": "rcpt", "rcpt": BOB, "times": 1,
                      "reply": "421 4.3.2 Shutting down"})
    outcome(t, s, r, EX_OK, READERS)
    expect(len({x["conn"] for x in s.transactions()}) >= 2, "no new connection after 421")


# ---- DATA ---------------------------------------------------------------

@test("451 to the DATA command once: retried, delivered once, exit 0")
def test_data_451_once(t):
    s, _, r = run(t, {"at": "data", "rcpt": ANN, "times": 1,
                      "reply": "451 4.3.0 Try again"})
    outcome(t, s, r, EX_OK, READERS)


@test("554 to the DATA command: hard bounce for that reader, others "
      "delivered, exit 0")
def test_data_554(t):
    s, _, r = run(t, {"at": "data", "rcpt": BOB,
                      "reply": "554 5.7.1 Transaction failed: policy"})
    outcome(t, s, r, EX_OK, [ANN, CYD], [(BOB, "hard", "5.7.1", "554")])


@test("452 after the final dot once: retried, stored once, exit 0")
def test_dot_452_once(t):
    s, _, r = run(t, {"at": "dot", "rcpt": CYD, "times": 1,
                      "reply": "452 4.3.1 Insufficient system storage"})
    outcome(t, s, r, EX_OK, READERS)


@test("554 after the final dot: hard bounce, not retried, exit 0")
def test_dot_554(t):
    s, _, r = run(t, {"at": "dot", "rcpt": ANN,
                      "reply": "554 5.6.0 Message content rejected"})
    outcome(t, s, r, EX_OK, [BOB, CYD], [(ANN, "hard", "5.6.0", "554")])


@test("connection closed mid-DATA once: resent on a new connection, stored "
      "once, exit 0")
def test_close_mid_data_once(t):
    s, _, r = run(t, {"at": "content", "rcpt": BOB, "times": 1, "do": "close",
                      "after_bytes": 300})
    outcome(t, s, r, EX_OK, READERS)     # a dropped connection is no bounce
    cut = [x for x in s.transactions() if x["end"] == "close-mid-data"]
    equal(len(cut), 1, "transactions cut mid-DATA")


@test("connection closed mid-DATA every time for one reader: exit 75, that "
      "reader unsent and not bounced; a rerun sends it once")
def test_close_mid_data_always(t):
    s, cfg, r = run(t, {"at": "content", "rcpt": CYD, "do": "close",
                        "after_bytes": 100})
    outcome(t, s, r, EX_TEMPFAIL, [ANN, BOB])
    expect(CYD in r.err, f"stderr does not name {CYD}: {r.err!r}")
    rerun_healthy(t, cfg, s)


# ---- stalls -------------------------------------------------------------

@test("server stalls after RCPT past smtp.timeout once: herald gives up on "
      "it in time, reconnects, each delivered once")
def test_stall_rcpt_once(t):
    (s, _, r), secs = elapsed(lambda: run(
        t, {"at": "rcpt", "rcpt": ANN, "times": 1, "do": "stall"}))
    outcome(t, s, r, EX_OK, READERS)
    expect(TIMEOUT - 0.5 < secs < TIMEOUT * 4 + 10, f"took {secs:.1f} s")


@test("server stalls after the final dot for one reader (not stored): "
      "recorded as uncertain, never retried on its own; exit 0 in bounded time")
def test_stall_dot_always(t):
    (s, cfg, r), secs = elapsed(lambda: run(t, {"at": "dot", "rcpt": BOB, "do": "stall"}))
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), [ANN, CYD], "stored")
    one_line_error(r, BOB, "uncertain")
    equal(sorted(journal_addrs(t)), READERS, "journal (BOB as uncertain)")
    unsure = [x[1] for x in t.journal() if x[3].endswith("\tuncertain")]
    equal(unsure, [BOB], "journal lines marked uncertain")
    expect(secs < TIMEOUT * 2 + 15, f"took {secs:.1f} s")
    equal(s.rcpt_attempts(BOB), 1, "attempts for BOB (no automatic retry)")


@test("a relay stores the message and never answers the dot (a slow content "
      "filter): one copy, uncertain; reruns send no second copy until "
      "--retry-uncertain asks for one")
def test_store_stall_uncertain(t):
    s, cfg, r = run(t, {"at": "dot", "rcpt": BOB, "do": "store-stall"}, args=(),
                    changes=None)
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), READERS, "stored, each once")
    one_line_error(r, BOB, "uncertain", "--retry-uncertain")
    equal([x[1] for x in t.journal() if x[3].endswith("\tuncertain")], [BOB],
          "journal lines marked uncertain")
    healthy = t.fault_server()
    t.config(healthy, cfg)
    r2 = t.send("--json")
    equal(r2.code, EX_OK, "exit code of the rerun")
    equal(json.loads(r2.out)["already_sent"], 3, "already sent (BOB counted as maybe sent)")
    equal(healthy.received(), [], "the rerun sent nothing (BOB may have it)")
    r3 = t.send("--retry-uncertain")
    equal(r3.code, EX_OK, "exit code of --retry-uncertain")
    equal(healthy.received(), [BOB], "--retry-uncertain sent BOB once more")
    r4 = t.send("--retry-uncertain")
    equal(healthy.received(), [BOB], "a second --retry-uncertain sends nothing: BOB "
          "is now recorded as sent")


# ---- out of memory on the connection -------------------------------------

def oom_shim(t):
    """tests/shim/oom.c built into the test's dir: realloc fails over
    OOMSHIM_OVER bytes on every thread but herald's main one."""
    so = t.path("oom.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", so,
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim", "oom.c"),
                    "-ldl"], check=True)
    return {"LD_PRELOAD": so, "OOMSHIM_OVER": str(64 * 1024),
            "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"}


@test("out of memory while a connection assembles a 200 KB message (realloc "
      "fails on the worker only): nothing cut short reaches the server and "
      "nobody is journaled sent; exit 69; a rerun sends each reader once, whole")
def test_oom_body_never_truncated(t):
    s = t.fault_server()
    cfg = world(t, s)
    para = "A paragraph that is long enough to fill the message quickly. " * 12
    t.post(extra="\n\n" + "\n\n".join(f"{i}. {para}" for i in range(300)) + "\n")
    r = t.send(env=oom_shim(t))
    # Each connection fails the same way: a streak, the relay given up.
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line_error(r, "out of memory")
    small = [len(m.raw) for m in s.messages() if len(m.raw) < 200_000]
    equal(small, [], "sizes of messages the server stored cut short")
    equal(journal_addrs(t), [], "journal (nobody counted as sent)")
    healthy = rerun_healthy(t, cfg, s)
    for m in healthy.messages():
        expect(len(m.raw) > 200_000, f"message {m.seq} of {len(m.raw)} bytes")


# ---- reply framing ------------------------------------------------------

@test("every reply split across packets (2 bytes, 5 ms apart): delivered, "
      "the journal holds each whole reply")
def test_split_replies(t):
    s, _, r = run(t, args=["--split"])
    outcome(t, s, r, EX_OK, READERS)
    for x in t.journal():
        expect(re.fullmatch(r"250 2\.0\.0 Ok: queued as \d+", x[3]),
               f"journal reply not whole: {x[3]!r}")


@test("multi-line replies (EHLO, a two-line 250 after DATA, a split "
      "multi-line 550): all read whole")
def test_multiline_replies(t):
    s, _, r = run(t, {"at": "rcpt", "rcpt": BOB, "reply": [
        "550-5.2.1 Mailbox disabled,", "550 5.2.1 not accepting messages"]},
        args=["--multiline-ok", "--split"])
    outcome(t, s, r, EX_OK, [ANN, CYD], [(BOB, "hard", "5.2.1", "550")])
    for x in t.journal():
        expect("Ok: queued as" in x[3] and "Thank you" in x[3],
               f"journal reply lacks a line: {x[3]!r}")
    text = t.bounces()[0][7]
    expect("Mailbox disabled" in text and "not accepting" in text, f"bounce text: {text!r}")


# ---- TLS ----------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)


def make_cert(t, name, cn="localhost", san="IP:127.0.0.1,DNS:localhost",
              expired=False):
    """A self-signed CA certificate (usable as ca_file) made with openssl:
    expired=True dates it January 2020."""
    d = t.path("certs", name)
    os.makedirs(d)
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    if not expired:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN={cn}", "-addext", f"subjectAltName={san}",
                "-keyout", key, "-out", cert, cwd=d)
        return cert, key
    with open(os.path.join(d, "index.txt"), "w"):
        pass
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("01\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\n"
                "new_certs_dir = .\nserial = serial\ndefault_md = sha256\n"
                "policy = p\ncopy_extensions = copy\nx509_extensions = ext\n"
                "[p]\ncommonName = supplied\n"
                "[ext]\nbasicConstraints = critical,CA:TRUE\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
            "-subj", f"/CN={cn}", "-addext", f"subjectAltName={san}",
            "-out", "req.pem", cwd=d)
    openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", key,
            "-in", "req.pem", "-out", cert, "-startdate", "20200101000000Z",
            "-enddate", "20200201000000Z", cwd=d)
    return cert, key


TLS_AUTH = {"smtp": {"starttls": "required", "username": USER,
                     "password_env": "HERALD_SMTP_PASSWORD"}}
PW_ENV = {"HERALD_SMTP_PASSWORD": PASSWORD}


def no_secret(t, r):
    for text, what in ((r.out, "stdout"), (r.err, "stderr")):
        expect(PASSWORD not in text, f"the password is on {what}")
    for name in ("state/issue-1.journal", "state/bounces.log"):
        p = t.path(name)
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                expect(PASSWORD not in f.read(), f"the password is in {name}")


def tls_send(t, cert, key, *rules):
    """A STARTTLS + AUTH server with this certificate, trusted through
    ca_file; one send with the password. (server, run)"""
    s = t.fault_server(*rules, args=["--tls-cert", cert, "--tls-key", key,
                                     "--auth", f"{USER}:{PASSWORD}"])
    world(t, s, {**TLS_AUTH, "smtp": {**TLS_AUTH["smtp"], "ca_file": cert}})
    return s, t.send(env=PW_ENV)


def tls_refused(t, s, r, *needles):
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line_error(r, s.url(), *needles)
    equal(s.received(), [], "messages stored")
    equal(s.transactions(), [], "transactions (MAIL sent without TLS)")
    auths = [e for e in s.events() if "auth" in e]
    equal(auths, [], "AUTH attempts (credentials sent without TLS)")
    equal(t.journal(), [], "journal")
    equal(t.bounces(), [], "bounce log")
    no_secret(t, r)


@test("STARTTLS advertised, then the handshake fails: exit 69, one-line "
      "TLS error, no MAIL and no AUTH sent")
def test_starttls_bad_handshake(t):
    s, r = tls_send(t, *make_cert(t, "good"), {"at": "starttls", "do": "bad-tls"})
    tls_refused(t, s, r)
    expect(re.search(r"tls|ssl|handshake", r.err, re.I), f"not a TLS error: {r.err!r}")


@test("a self-signed certificate and no smtp.ca_file: exit 69, the error says "
      "to set smtp.ca_file, nothing sent in clear")
def test_untrusted_cert_hint(t):
    cert, key = make_cert(t, "self")
    s = t.fault_server(args=["--tls-cert", cert, "--tls-key", key])
    world(t, s, {"smtp": {"starttls": "required"}})
    r = t.send()
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line_error(r, s.url(), "smtp.ca_file")
    equal(s.transactions(), [], "transactions")


@test("starttls = try: a failed handshake is not a reason to go on in clear")
def test_starttls_try_bad_handshake(t):
    cert, key = make_cert(t, "good")
    s = t.fault_server({"at": "starttls", "do": "bad-tls"},
                     args=["--tls-cert", cert, "--tls-key", key])
    world(t, s, {"smtp": {"starttls": "try", "ca_file": cert}})
    r = t.send()
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line_error(r, s.url())
    equal(s.received(), [], "messages stored")
    equal(s.transactions(), [], "transactions in clear after a failed handshake")


@test("expired certificate (made with openssl ca, January 2020): exit 69, "
      "error names the certificate, credentials never sent")
def test_expired_cert(t):
    s, r = tls_send(t, *make_cert(t, "expired", expired=True))
    tls_refused(t, s, r, "certificate")


@test("certificate for another host (mail.example.com, reached as "
      "127.0.0.1): exit 69, error names the certificate, credentials never sent")
def test_wrong_host_cert(t):
    s, r = tls_send(t, *make_cert(t, "wronghost", cn="mail.example.com",
                                  san="DNS:mail.example.com"))
    tls_refused(t, s, r, "certificate")


@test("control: a valid certificate, STARTTLS then AUTH, every message over "
      "TLS, the password only after the handshake")
def test_good_cert(t):
    s, r = tls_send(t, *make_cert(t, "good"))
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), READERS, "each reader once")
    auths = [e for e in s.events() if "auth" in e]
    expect(auths and all(e["tls"] and e["ok"] for e in auths),
           f"AUTH not (only) after TLS: {auths}")
    expect(all(x["tls"] for x in s.transactions()), "a transaction in clear")
    no_secret(t, r)


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
