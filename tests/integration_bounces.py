#!/usr/bin/python3
"""herald's bounce and list-hygiene tests, against real servers: Dovecot
(IMAP, IMAPS, POP3, LMTP; tests/dovecot.py, a throwaway instance per
test), an MTA that bounces after accepting (tests/dsnmta.py), and the
capture server (tests/smtpd.py). Maildir and mbox are read from disk.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_bounces.py [PATTERN...]

TAP on stdout, a log of every run on stderr (harness.py).
"""

import hashlib
import hmac
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

from harness import (EX_DATAERR, EX_OK, EX_UNAVAILABLE, FIXTURES, PYTHON, SECRET,
                     SLUG, Suite, csv, equal, expect, log)
import dovecot
from dsnmta import dsn

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNCES = os.path.join(FIXTURES, "bounces")
RP = "bounces+{{verp}}@example.org"
PW = "s3cret-box"
SUITE = Suite()

# What the fixtures say, as bounces.log lines (time, address, kind,
# status, code, source, post, text): no journal, so no post.
FIXTURE_LINES = [
    "2025-11-26T09:00:00Z\tangry@isp.example\tcomplaint\t-\t0\tdsn\t-\tfeedback-type abuse from SomeGenerator/1.0",
    "2025-11-26T09:30:00Z\thidden@bigmail.example\tcomplaint\t-\t0\tdsn\t-\tfinal recipient redacted@bigmail.example: feedback-type abuse from BigMail-FBL/2.0",
    "2025-11-26T10:30:00Z\tlost@odd.example\tsoft\t-\t0\tdsn\t-\tUndelivered Mail Returned to Sender",
    "2025-11-25T14:00:00Z\tleft@corp.example.com\thard\t5.1.1\t550\tdsn\t-\tRemote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'",
    "2025-11-25T11:00:05Z\told@example.com\thard\t5.2.1\t550\tdsn\t-\thost mx.example.com [192.0.2.30] SMTP error from remote mail server after RCPT TO:<old@example.com>: 550 5.2.1 The email account that you tried to reach is disabled",
    "2025-11-25T23:00:00Z\tnobody@gmail.example\thard\t5.1.1\t550\tdsn\t-\t550-5.1.1 The email account that you tried to reach does not exist. Please try",
    "2025-11-26T11:00:00Z\tbad@example.net\thard\t5.7.1\t554\tdsn\t-\t554 5.7.1 <bad@example.net>: Relay access denied",
    "2025-11-26T11:00:00Z\tworse@example.net\thard\t5.1.2\t550\tdsn\t-\t550 5.1.2 Host unknown",
    "2025-11-25T10:15:02Z\tgone@example.net\thard\t5.1.1\t550\tdsn\t-\t550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
    "2025-11-25T13:00:00Z\tghost@example.net\thard\t5.1.1\t0\tdsn\t-\tSorry, no mailbox here by that name. (#5.1.1)",
    "2025-11-25T17:00:00Z\tprof@example.edu\thard\t5.1.1\t550\tdsn\t-\t<<< 550 5.1.1 <prof@example.edu>... User unknown",
    "2025-11-26T08:00:00Z\tfull@example.net\tsoft\t4.2.2\t452\tdsn\t-\t452 4.2.2 Mailbox full",
]
# Understood but not logged: two delay warnings and a not-spam report;
# left for a human: the vacation notice.
NOT_LOGGED = ["postfix-delayed.eml", "exim-delay.eml", "arf-not-spam.eml", "vacation.eml"]


def fixtures():
    return sorted(f for f in os.listdir(BOUNCES) if f.endswith(".eml"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def log_lines(t):
    """bounces.log without the 9th field (the report key) of dsn lines,
    which must have one."""
    p = t.path("state", "bounces.log")
    if not os.path.exists(p):
        return []
    with open(p, encoding="utf-8") as f:
        lines = [l.rstrip("\n").split("\t") for l in f]
    for l in lines:
        if l[5] == "dsn":
            equal(len(l), 9, f"fields of a dsn line {l!r}")
            expect(l[8].startswith("<") or l[8].startswith("sha256:"), f"report key of {l!r}")
    return ["\t".join(l[:8]) for l in lines]


SUMMARY_BUCKETS = ("hard", "soft", "complaints", "delayed", "already logged",
                   "with nothing failed", "not bounces", "unresolved")


def summary(out):
    """The numbers of a `bounces scan` summary line, asserting that every
    message read is in exactly one bucket."""
    import re
    line = [l for l in out.splitlines() if re.match(r"\d+ messages?: ", l)][-1]
    got = {"messages": int(line.split()[0])}
    for name in SUMMARY_BUCKETS + ("lines logged",):
        m = re.search(r"(\d+) " + name.replace("complaints", "complaints?").replace("lines", "lines?"), line)
        got[name] = int(m.group(1)) if m else 0   # a bucket it lacks holds nothing
    equal(sum(got[b] for b in SUMMARY_BUCKETS), got["messages"],
          f"buckets of {line!r} add up to the messages read")
    return got


def token(addr):
    return hmac.new(SECRET.encode(), addr.lower().encode(), hashlib.sha256).hexdigest()


def make_maildir(path, messages):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i, (name, raw) in enumerate(messages, 1):
        # Unique names across calls: a maildir name is the message's id.
        with open(os.path.join(path, "new", f"{1700000000 + i}.M{i}P1.{name}.test"), "wb") as f:
            f.write(raw)


def make_mbox(path, messages):
    with open(path, "wb") as f:
        for name, raw in messages:
            body = raw.replace(b"\r\n", b"\n")
            # mboxrd quoting of body lines that look like separators.
            body = b"\n".join((b">" + l if l.startswith(b"From ") else l) for l in body.split(b"\n"))
            f.write(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2025\n" + body.rstrip(b"\n") + b"\n\n")


def bounce_config(t, server=None, changes=None):
    base = {"bounce": {"return_path": RP, "soft_limit": 3}}
    return t.config(server, merged_dicts(base, changes or {}))


def merged_dicts(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merged_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Box:
    """A Dovecot for one test, registered so the case stops it."""

    def __init__(self, t, users=("bounces",), tls=False):
        cert = key = None
        if tls:
            cert, key = t.path("cert.pem"), t.path("key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=localhost", "-addext",
                            "subjectAltName=IP:127.0.0.1,DNS:localhost",
                            "-keyout", key, "-out", cert], check=True,
                           stdin=subprocess.DEVNULL, capture_output=True)
        self.cert = cert
        self.d = dovecot.Dovecot(t.path("dovecot"), {u: PW for u in users}, cert, key)
        self.port = self.d.port
        t.servers.append(self)

    def url(self, proto, user="bounces", folder=""):
        return f"{proto}://{user}@127.0.0.1:{self.port[proto]}{folder}"

    def stop(self):
        self.d.stop()

    def stderr(self):
        return self.d.tail()


class Mta:
    """tests/dsnmta.py on a free port, bouncing into a Dovecot."""

    def __init__(self, t, lmtp_port, bounces):
        self.dir = t.path("dsnmta")
        os.makedirs(self.dir)
        pf = os.path.join(self.dir, "port")
        self.err = os.path.join(self.dir, "err")
        args = [PYTHON, os.path.join(HERE, "dsnmta.py"), "--port-file", pf, "--lmtp", str(lmtp_port)]
        for b in bounces:
            args += ["--bounce", b]
        with open(self.err, "wb") as e:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=e, stderr=e)
        deadline = time.monotonic() + 10
        while not os.path.exists(pf):
            expect(self.proc.poll() is None and time.monotonic() < deadline, "dsnmta did not start")
            time.sleep(0.05)
        self.port = int(read(pf))
        t.servers.append(self)

    def url(self, scheme="smtp"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def stderr(self):
        return read(self.err).decode(errors="replace")


def scan(t, *args, env=None):
    return t.herald("bounces", "scan", *args, env={"HERALD_BOUNCE_PASSWORD": PW, **(env or {})})


def fixture_messages():
    return [(f, read(os.path.join(BOUNCES, f))) for f in fixtures()]


# ---- local mailboxes ----------------------------------------------------

@SUITE.test("maildir: each bounce family gives its exact log line; a rescan adds nothing")
def test_maildir(t):
    bounce_config(t)
    md = t.path("bounces")
    make_maildir(md, fixture_messages())
    r = scan(t, f"maildir:{md}")
    equal(r.code, EX_OK, "exit code")
    # Per message: multi-rcpt.eml is one hard bounce naming two readers
    # (12 lines from 11 messages); arf-not-spam.eml says nothing failed.
    expect("15 messages: 7 hard, 2 soft, 2 complaints (12 lines logged); 2 delayed" in r.out, r.out)
    got = summary(r.out)
    equal((got["with nothing failed"], got["not bounces"], got["unresolved"]), (1, 1, 0),
          "the other buckets")
    equal(sorted(log_lines(t)), sorted(FIXTURE_LINES), "bounces.log")
    equal(os.listdir(os.path.join(md, "new")), [], "new/ after the scan")
    cur = os.listdir(os.path.join(md, "cur"))
    equal(len(cur), 15, "messages in cur/")
    expect(all(n.endswith(":2,S") for n in cur), f"all marked seen: {cur}")
    r = scan(t, f"maildir:{md}")
    equal(r.code, EX_OK, "exit code of the rescan")
    expect(r.out.startswith("0 messages"), r.out)
    equal(len(log_lines(t)), len(FIXTURE_LINES), "lines after the rescan")


@SUITE.test("maildir --delete removes what it understood and keeps the vacation notice")
def test_maildir_delete(t):
    bounce_config(t)
    md = t.path("bounces")
    make_maildir(md, fixture_messages())
    equal(scan(t, f"maildir:{md}", "--delete").code, EX_OK, "exit code")
    left = os.listdir(os.path.join(md, "cur")) + os.listdir(os.path.join(md, "new"))
    equal(len(left), 1, f"messages left: {left}")
    expect(b"Out of office" in read(os.path.join(md, "cur", left[0])), "the one left is the vacation notice")
    equal(sorted(log_lines(t)), sorted(FIXTURE_LINES), "bounces.log")


@SUITE.test("mbox: the same lines, a rescan adds nothing, --delete expunges what it understood")
def test_mbox(t):
    bounce_config(t)
    mb = t.path("bounces.mbox")
    make_mbox(mb, fixture_messages())
    before = read(mb)
    equal(scan(t, f"mbox:{mb}").code, EX_OK, "exit code")
    equal(sorted(log_lines(t)), sorted(FIXTURE_LINES), "bounces.log")
    equal(read(mb), before, "the mbox is not rewritten without --delete")
    r = scan(t, f"mbox:{mb}")
    expect(r.out.startswith("0 messages"), r.out)
    # A new bounce arrives; --delete takes what it understands, all of it.
    with open(mb, "ab") as f:
        f.write(b"From MAILER-DAEMON Thu Nov 26 12:00:00 2025\n" + read(os.path.join(BOUNCES, "soft-full.eml"))
                .replace(b"full@example.net", b"full2@example.net").replace(b"full=example.net", b"full2=example.net") + b"\n")
    r = scan(t, f"mbox:{mb}", "--delete")
    equal(r.code, EX_OK, "exit code")
    expect(r.out.startswith("1 message: 0 hard, 1 soft"), r.out)
    after = read(mb)
    expect(b"full2@example.net" not in after, "the new bounce is expunged")
    expect(b"Out of office" in after, "the rest is still there")
    equal(len(log_lines(t)), len(FIXTURE_LINES) + 1, "lines")


# ---- real servers -------------------------------------------------------

@SUITE.test("end to end: send, the MTA bounces after accepting, scan Dovecot over IMAP, the next send skips the suppressed")
def test_end_to_end(t):
    box = Box(t)
    mta = Mta(t, box.port["lmtp"], ["gone@example.net=550:5.1.1:<gone@example.net>: Recipient address rejected: User unknown",
                                    "full@example.net=452:4.2.2:Mailbox full"])
    t.subscribers(csv("ok@example.net,Ok", "gone@example.net,Gone", "full@example.net,Full"))
    t.post()
    bounce_config(t, mta, {"bounce": {"mailbox": {"url": box.url("imap"), "starttls": "never"}}})
    equal(t.send().code, EX_OK, "first send")
    equal(sorted(r[1] for r in t.journal()), ["full@example.net", "gone@example.net", "ok@example.net"],
          "journal: the MTA accepted all three")
    msgids = {r[1]: r[2] for r in t.journal()}
    deadline = time.monotonic() + 10
    new = os.path.join(box.d.maildir("bounces"), "new")
    while len(os.listdir(new) if os.path.isdir(new) else []) < 2:
        expect(time.monotonic() < deadline, "two DSNs delivered to Dovecot")
        time.sleep(0.1)
    r = t.herald("-v", "bounces", "scan", env={"HERALD_BOUNCE_PASSWORD": PW})
    equal(r.code, EX_OK, "scan exit code")
    rows = t.bounces()
    equal(sorted((x[1], x[2], x[3], x[4], x[5], x[6]) for x in rows),
          [("full@example.net", "soft", "4.2.2", "452", "dsn", SLUG),
           ("gone@example.net", "hard", "5.1.1", "550", "dsn", SLUG)], "bounces.log")
    texts = {x[1]: x[7] for x in rows}
    equal(texts["gone@example.net"], "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown",
          "the diagnostic")
    # Each line is tied to the message the journal recorded.
    expect(all(r[0] >= t.journal()[0][0] for r in rows), "DSN times are not before the send")
    expect(msgids["gone@example.net"], "message-id in the journal")
    r = t.herald("bounces", "scan", env={"HERALD_BOUNCE_PASSWORD": PW})
    expect(r.out.startswith("0 messages"), f"rescan: {r.out}")
    equal(len(t.bounces()), 2, "lines after the rescan")
    listed = t.herald("bounces", "list").out.splitlines()
    equal([l.split("\t")[0] for l in listed], ["gone@example.net"], "bounces list")
    # The next post: gone is suppressed, one soft bounce is not enough.
    t.post(name="issue-2.md")
    r = t.send(post=t.path("issue-2.md"))
    equal(r.code, EX_OK, "second send")
    equal(sorted(x[1] for x in t.journal("issue-2")), ["full@example.net", "ok@example.net"],
          "second send skipped the hard bounce")


@SUITE.test("IMAPS and STARTTLS verify the certificate: ca_file trusts it, without it exit 69")
def test_tls(t):
    box = Box(t, tls=True)
    box.d.deliver("bounces", read(os.path.join(BOUNCES, "postfix-dsn.eml")))
    bounce_config(t, None, {"bounce": {"mailbox": {"ca_file": box.cert}}})
    r = scan(t, box.url("imap"))   # starttls = "required" by default
    equal(r.code, EX_OK, "STARTTLS with ca_file")
    equal(len(log_lines(t)), 1, "one line")
    bounce_config(t)
    r = scan(t, box.url("imaps"))
    equal(r.code, EX_UNAVAILABLE, "imaps without ca_file")
    expect("certificate not trusted" in r.err, r.err)
    r = scan(t, box.url("pop3s"))
    equal(r.code, EX_UNAVAILABLE, "pop3s without ca_file")
    bounce_config(t, None, {"bounce": {"mailbox": {"ca_file": box.cert}}})
    r = scan(t, box.url("pop3s"))
    equal(r.code, EX_OK, "pop3s with ca_file")
    expect("1 already logged" in r.out, r.out)


@SUITE.test("POP3: a rescan adds nothing (UIDLs remembered), --delete empties the mailbox")
def test_pop3(t):
    box = Box(t)
    for f in ("postfix-dsn.eml", "soft-full.eml", "vacation.eml"):
        box.d.deliver("bounces", read(os.path.join(BOUNCES, f)))
    bounce_config(t, None, {"bounce": {"mailbox": {"starttls": "never"}}})
    r = scan(t, box.url("pop3"))
    equal(r.code, EX_OK, "exit code")
    expect(r.out.startswith("3 messages: 1 hard, 1 soft"), r.out)
    r = scan(t, box.url("pop3"))
    expect(r.out.startswith("0 messages"), r.out)
    box.d.deliver("bounces", read(os.path.join(BOUNCES, "exim-text.eml")))
    r = scan(t, box.url("pop3"), "--delete")
    expect(r.out.startswith("1 message: 1 hard"), r.out)
    cur = os.path.join(box.d.maildir("bounces"), "cur")
    new = os.path.join(box.d.maildir("bounces"), "new")
    left = os.listdir(cur) + os.listdir(new)
    equal(len(left), 3, "only the message seen with --delete was deleted")
    equal(len(log_lines(t)), 3, "lines")


@SUITE.test("hostile messages over IMAP (huge header, broken MIME, 8-bit junk): no crash, nothing invented")
def test_hostile(t):
    box = Box(t)
    huge = (b"From: MAILER-DAEMON@x.example\r\nTo: bounces+big=example.net@example.org\r\nSubject: Undeliverable "
            + b"x" * 300000 + b"\r\nDate: Tue, 25 Nov 2025 10:00:00 +0000\r\n\r\n<big@example.net>: 550 5.1.1 no such user\r\n")
    broken = (b"From: MAILER-DAEMON@x.example\r\nDate: Tue, 25 Nov 2025 10:00:00 +0000\r\nContent-Type: multipart/report;"
              b" report-type=delivery-status; boundary=\"A\"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
              b"Final-Recipient: rfc822; broken@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n")
    junk = bytes(range(256)) * 50
    missing = (b"From: MAILER-DAEMON@x.example\r\nSubject: Returned mail\r\nContent-Type: multipart/report;"
               b" report-type=delivery-status; boundary=Z\r\n\r\n--Z\r\nContent-Type: message/delivery-status\r\n\r\n"
               b"Reporting-MTA: dns; x\r\n\r\nAction: failed\r\n--Z--\r\n")
    for raw in (huge, broken, junk, missing):
        box.d.deliver("bounces", raw)
    bounce_config(t, None, {"bounce": {"mailbox": {"starttls": "never"}}})
    r = scan(t, box.url("imap"))
    equal(r.code, EX_OK, "exit code")
    addrs = sorted(l.split("\t")[1] for l in log_lines(t))
    equal(addrs, ["big@example.net", "broken@example.net"], "only the readers the messages name")
    r = scan(t, box.url("imap"))
    expect(r.out.startswith("0 messages"), r.out)


def dsn_for(addr, status, code, when, text="refused"):
    return dsn(f"bounces+{addr.replace('@', '=')}@example.org", addr, b"Subject: x\r\n\r\n",
               code, status, text, when)


@SUITE.test("soft bounces suppress after soft_limit in a row; a delivery in between starts over; forget lifts")
def test_soft_in_a_row(t):
    bounce_config(t)
    base = 1764000000  # 2025-11-24T16:00:00Z
    md = t.path("md")
    make_maildir(md, [("a", dsn_for("flaky@example.net", "4.2.2", "452", base)),
                      ("b", dsn_for("flaky@example.net", "4.2.2", "452", base + 10))])
    scan(t, f"maildir:{md}")
    equal(t.herald("bounces", "list").out, "", "two soft bounces: not suppressed")
    # A delivery after them: the count starts again.
    os.makedirs(t.path("state"), exist_ok=True)
    with open(t.path("state", "old-post.journal"), "w") as f:
        f.write("2025-11-24T16:00:20Z\tflaky@example.net\t<x.1@example.org>\t250 ok\n")
    make_maildir(md, [("c", dsn_for("flaky@example.net", "4.2.2", "452", base + 30)),
                      ("d", dsn_for("flaky@example.net", "4.4.7", "451", base + 40))])
    scan(t, f"maildir:{md}")
    equal(t.herald("bounces", "list").out, "", "two since the delivery: not suppressed")
    make_maildir(md, [("e", dsn_for("flaky@example.net", "4.2.2", "452", base + 50))])
    scan(t, f"maildir:{md}")
    listed = t.herald("bounces", "list").out
    expect(listed.startswith("flaky@example.net\t2025-11-24T16:00:50Z\t3 soft bounces, last 4.2.2 452\t"
                             "old-post\t"), listed)
    r = t.herald("bounces", "forget", "flaky@example.net")
    equal(r.code, EX_OK, "forget")
    equal(r.out, "flaky@example.net: no longer suppressed\n", "forget says")
    equal(t.herald("bounces", "list").out, "", "forgotten")
    expect(log_lines(t)[-1].split("\t")[1:3] == ["flaky@example.net", "forget"], "a forget line, nothing erased")


@SUITE.test("an ARF complaint suppresses the reader; the next send skips them; VERP is envelope-only")
def test_complaint(t):
    server = t.server()
    bounce_config(t, server)
    md = t.path("md")
    make_maildir(md, [("arf", read(os.path.join(BOUNCES, "arf-abuse.eml")))])
    equal(scan(t, f"maildir:{md}").code, EX_OK, "scan")
    listed = t.herald("bounces", "list").out
    expect(listed.startswith("angry@isp.example\t2025-11-26T09:00:00Z\tcomplaint"), listed)
    t.subscribers(csv("angry@isp.example,Angry", "calm@isp.example,Calm"))
    t.post()
    r = t.send()
    equal(r.code, EX_OK, "send")
    mails = server.messages()
    equal([m.rcpt_tos[0] for m in mails], ["calm@isp.example"], "delivered")
    # VERP is the envelope only: MAIL FROM names the reader, and herald
    # writes no Return-Path header (the receiving server does).
    equal(mails[0].mail_from, "bounces+calm=isp.example@example.org", "envelope sender")
    expect(b"\nReturn-Path:" not in mails[0].raw and not mails[0].raw.startswith(b"Return-Path:"),
           "no Return-Path header")


# ---- unsubscribe --------------------------------------------------------

LIST = ('\ufeffemail,name,status,city\r\n'
        'ann@example.net,"Ann ""A"" Smith",,"Paris, FR"\r\n'
        'BOB@example.net,Bob,subscribed,Oslo\r\n'
        'cat@example.net,"Cat\nMultiline",,Rome\r\n'
        'dan@example.net,Dan,unsubscribed,Lima\r\n'
        'eve@example.net,Eve,,Kyiv')   # no newline at the end


def request(frm, subject, body="", to="unsubscribe@example.org"):
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 25 Nov 2025 10:00:00 +0000\r\n"
            f"\r\n{body}\r\n").encode()


@SUITE.test("unsubscribe requests from an IMAP mailbox: token checked, list rewritten keeping every other byte")
def test_unsubscribe_imap(t):
    box = Box(t, users=("unsub",))
    reqs = [request("Ann <ann@example.net>", "unsubscribe"),
            request("bob@example.net", f"Re: unsubscribe {token('bob@example.net')}"),
            request("mallory@example.org", "unsubscribe cat@example.net"),
            request("mallory@example.org", f"unsubscribe eve@example.net {token('mallory@example.org')}"),
            request("eve@example.net", "hello", "unsubscribe\r\nthanks"),
            request("zed@example.net", "unsubscribe"),
            request("x@example.net", "Lunch?", "Shall we?")]
    for raw in reqs:
        box.d.deliver("unsub", raw)
    t.subscribers(LIST)
    bounce_config(t, None, {"unsubscribe": {"mailbox": {"url": box.url("imap", "unsub"), "starttls": "never"}}})
    r = t.herald("subscribers", "unsubscribe", env={"HERALD_UNSUBSCRIBE_PASSWORD": PW})
    equal(r.code, EX_OK, "exit code")
    expect(r.out.startswith("7 messages: 3 unsubscribed, 0 already, 1 not in the list, 2 refused, 1 not requests"), r.out)
    expect("mallory@example.org asks to unsubscribe cat@example.net without that reader's token" in r.err, r.err)
    expect("the token is not eve@example.net's" in r.err, r.err)
    want = ('\ufeffemail,name,status,city\r\n'
            'ann@example.net,"Ann ""A"" Smith",unsubscribed,"Paris, FR"\r\n'
            'BOB@example.net,Bob,unsubscribed,Oslo\r\n'
            'cat@example.net,"Cat\nMultiline",,Rome\r\n'
            'dan@example.net,Dan,unsubscribed,Lima\r\n'
            'eve@example.net,Eve,unsubscribed,Kyiv')
    equal(read(t.path("subs.csv")).decode(), want, "the list")
    r = t.herald("subscribers", "unsubscribe", env={"HERALD_UNSUBSCRIBE_PASSWORD": PW})
    expect(r.out.startswith("0 messages"), r.out)
    equal(read(t.path("subs.csv")).decode(), want, "the list after a rescan")


@SUITE.test("the List-Unsubscribe mailto names the reader: subscribed as jane+news@, she unsubscribes by writing from jane@")
def test_unsubscribe_mailto_names_reader(t):
    box = Box(t, users=("unsub",))
    srv = t.server()
    t.subscribers(csv("jane+news@example.com,Jane", "ann@example.net,Ann"))
    t.post()
    bounce_config(t, srv, {"unsubscribe": {"mailbox": {"url": box.url("imap", "unsub"),
                                                        "starttls": "never"}}})
    equal(t.send().code, EX_OK, "send")
    got = srv.by_rcpt()["jane+news@example.com"].msg
    links = [l.strip(" <>") for l in str(got["List-Unsubscribe"]).split(",")]
    mailto = urllib.parse.urlsplit(next(l for l in links if l.startswith("mailto:")))
    equal(mailto.path, "unsubscribe@example.org", "the mailto address")
    subject = urllib.parse.parse_qs(mailto.query)["subject"][0]
    equal(subject, f"unsubscribe jane+news@example.com {token('jane+news@example.com')}",
          "the subject a mail client fills in")
    # Her client sends it from the address she reads mail at.
    box.d.deliver("unsub", request("Jane <jane@example.com>", subject, to=mailto.path))
    r = t.herald("subscribers", "unsubscribe", env={"HERALD_UNSUBSCRIBE_PASSWORD": PW})
    equal(r.code, EX_OK, "exit code")
    expect(r.out.startswith("1 messages: 1 unsubscribed") or r.out.startswith("1 message: 1 unsubscribed"),
           r.out)
    equal(read(t.path("subs.csv")).decode(),
          "email,name,status\njane+news@example.com,Jane,unsubscribed\nann@example.net,Ann,\n", "the list")


@SUITE.test("subscribers unsubscribe --address: a list without status gets the column; unknown address exit 65")
def test_unsubscribe_address(t):
    t.subscribers("email,name\nann@example.net,Ann\n\"bob@example.net\",\"Bob, Jr\"\n")
    bounce_config(t)
    os.chmod(t.path("subs.csv"), 0o640)
    r = t.herald("subscribers", "unsubscribe", "--address", "Bob@Example.net")
    equal(r.code, EX_OK, "exit code")
    equal(r.out, "Bob@Example.net: unsubscribed\n", "output")
    equal(read(t.path("subs.csv")).decode(),
          "email,name,status\nann@example.net,Ann,\n\"bob@example.net\",\"Bob, Jr\",unsubscribed\n", "the list")
    equal(os.stat(t.path("subs.csv")).st_mode & 0o777, 0o640, "mode kept")
    r = t.herald("subscribers", "unsubscribe", "--address", "nobody@example.net")
    equal(r.code, EX_DATAERR, "unknown address")
    equal(os.listdir(t.dir).count("subs.csv"), 1, "no temporary file left")
    expect(not [n for n in os.listdir(t.dir) if "herald-" in n], "no temporary file left")


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* Stops herald (SIGSTOP) at the moment named by $SHIM_AT: "write" after
 * the first half of the new list is written, "rename" just before the
 * rename, "after" just after it. The test then kills it. */
static int is_tmp(int fd)
{
	char p[64], t[4096];
	snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, t, sizeof t - 1);
	if (n < 0)
		return 0;
	t[n] = 0;
	return strstr(t, ".herald-") != NULL;
}
ssize_t write(int fd, const void *b, size_t n)
{
	static ssize_t (*real)(int, const void *, size_t);
	if (!real)
		real = dlsym(RTLD_NEXT, "write");
	const char *at = getenv("SHIM_AT");
	if (at && !strcmp(at, "write") && is_tmp(fd) && n > 1) {
		ssize_t w = real(fd, b, n / 2);
		raise(SIGSTOP);
		return w;
	}
	return real(fd, b, n);
}
int rename(const char *a, const char *b)
{
	static int (*real)(const char *, const char *);
	if (!real)
		real = dlsym(RTLD_NEXT, "rename");
	const char *at = getenv("SHIM_AT");
	if (at && !strcmp(at, "rename"))
		raise(SIGSTOP);
	int r = real(a, b);
	if (at && !strcmp(at, "after"))
		raise(SIGSTOP);
	return r;
}
"""


@SUITE.test("atomic rewrite: killed mid-write or before the rename leaves the old list, after it the new one")
def test_atomic_kill(t):
    cc = shutil.which("cc") or shutil.which("gcc")
    src = t.write("shim.c", SHIM)
    so = t.path("shim.so")
    subprocess.run([cc, "-shared", "-fPIC", "-o", so, src, "-ldl"], check=True)
    rows = [f"r{i}@example.net,Reader {i},,x" for i in range(20000)]
    old = ("email,name,status,city\n" + "\n".join(rows) + "\n").encode()
    new = old.replace(b"r19999@example.net,Reader 19999,,x", b"r19999@example.net,Reader 19999,unsubscribed,x")
    bounce_config(t)
    for at, want in (("write", old), ("rename", old), ("after", new)):
        t.write("subs.csv", old)
        env = t.env({"LD_PRELOAD": so, "SHIM_AT": at,
                     "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"})
        p = subprocess.Popen(t.command(["subscribers", "unsubscribe", "--address", "r19999@example.net"]),
                             cwd=t.cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("T", "Z"):
                break
            time.sleep(0.01)
        equal(state, "T", f"herald stopped at {at}")
        p.kill()
        p.wait()
        equal(read(t.path("subs.csv")) == want, True, f"killed at {at}: the {'new' if want is new else 'old'} list, whole")
        for n in os.listdir(t.dir):
            if ".herald-" in n:
                os.unlink(t.path(n))   # the killed run's temporary file
    r = t.herald("subscribers", "unsubscribe", "--address", "r19999@example.net")
    equal(r.code, EX_OK, "a clean run")
    equal(read(t.path("subs.csv")), new, "the new list")


if __name__ == "__main__":
    if not dovecot.available():
        print("1..0 # SKIP dovecot is not installed (deps/test-bounces.txt)")
        sys.exit(0)
    sys.exit(SUITE.main(sys.argv[1:]))
