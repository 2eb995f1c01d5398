#!/usr/bin/python3
"""herald integration tests: run the real binary against real SMTP servers.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration.py [PATTERN...]

TAP on stdout (`1..N`, then `ok N - desc` / `not ok N - desc` with `# `
diagnostics); a log of every herald run and server on stderr.  PATTERNs
select the tests whose function name or description contains one of them.
Every test gets its own temp dir (kept when KEEP=1) and its own servers
(tests/smtpd.py on free loopback ports), stopped when the test ends.
Stdlib only, plus aiosmtpd inside tests/smtpd.py; the servers, cases and
runner are shared with the other suites through tests/harness.py.
"""

import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

# Servers, cases, config, the runner: shared with the other suites.
from harness import (
    EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE,
    EX_USAGE, PYTHON, SLUG, SMTPD, SUBJECT, Suite, csv, equal, expect, merged)

SMTP_USER, SMTP_PASSWORD = "joy", "s3cret"


# ---- message checks -----------------------------------------------------

MSGID_RE = re.compile(r"^<[^<>@\s]+@example\.org>$")
TAG_RE = re.compile(r"</?(?:html|head|body|p|a|h[1-6]|ul|ol|li|em|strong|b|i|"
                    r"div|span|br|table|tr|td|img|blockquote|code|pre)\b[^>]*>",
                    re.I)


def raw_header(raw, name):
    """The unfolded raw value of the first top-level header `name`."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    m = re.search(rf"(?im)^{re.escape(name)}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)",
                  head)
    return m.group(1).replace("\r\n", "").strip() if m else None


def addr(msg, name):
    """The single (display_name, addr_spec) of an address header."""
    h = msg[name]
    expect(h is not None, f"{name}: header missing")
    addrs = h.addresses
    equal(len(addrs), 1, f"addresses in {name}")
    return addrs[0].display_name, addrs[0].addr_spec


def unsubscribe_url(msg, raw=None):
    """The https URL of List-Unsubscribe, after checking the header's form;
    on the raw, unfolded bytes when raw is given (RFC 2369 URLs must not be
    RFC 2047-encoded, however long the header)."""
    value = str(msg["List-Unsubscribe"] or "")
    if raw is not None:
        value = raw_header(raw, "List-Unsubscribe") or ""
    m = re.fullmatch(r"<(https://[^>]+)>,\s*<mailto:unsubscribe@example\.org[^>]*>",
                     value)
    expect(m, f"List-Unsubscribe is not <https://...>, <mailto:...>: {value!r}")
    return m.group(1)


def url_params(url):
    q = urllib.parse.urlsplit(url).query
    return dict(urllib.parse.parse_qsl(q, keep_blank_values=True))


def check_message(m, rcpt, subject=SUBJECT):
    """What every delivered message must satisfy; returns (text, html,
    unsubscribe URL)."""
    msg, raw = m.msg, m.raw
    equal(m.rcpt_tos, [rcpt], f"envelope recipients of message {m.seq}")
    eight_bit = [l for l in raw.split(b"\r\n") if not l.isascii()]
    expect(not eight_bit, "message is not 7-bit (headers must be RFC 2047, "
           f"bodies quoted-printable); first such line: {eight_bit[:1]}")
    expect(not re.search(rb"(?<!\r)\n|\r(?!\n)", raw), "bare CR or LF in message")
    expect(not msg.defects, f"message defects: {msg.defects}")
    for name, value in msg.items():   # parses every header under policy.strict
        expect(not getattr(value, "defects", None),
               f"{name}: defects {value.defects} in {value!r}")

    equal(addr(msg, "From"), ("Joy", "joy@example.org"), "From")
    equal(addr(msg, "To")[1], rcpt, "To address")
    equal(addr(msg, "Reply-To")[1], "letters@example.org", "Reply-To")
    equal(str(msg["Subject"]), subject, "Subject")
    if not subject.isascii():
        expect("=?utf-8?" in (raw_header(raw, "Subject") or "").lower(),
               "non-ASCII Subject is not an RFC 2047 utf-8 encoded word")
    msgid = raw_header(raw, "Message-ID") or ""
    expect(MSGID_RE.match(msgid), f"Message-ID {msgid!r} is not <...@example.org>")
    expect(msg["Date"] is not None and msg["Date"].datetime is not None,
           f"Date {msg['Date']!r} does not parse")
    equal(str(msg["MIME-Version"]), "1.0", "MIME-Version")
    expect("<weekly.example.org>" in str(msg["List-Id"] or ""),
           f"List-Id {msg['List-Id']!r}")
    equal(str(msg["List-Unsubscribe-Post"]), "List-Unsubscribe=One-Click",
          "List-Unsubscribe-Post")
    url = unsubscribe_url(msg, raw)
    params = url_params(url)
    equal(params.get("e"), rcpt, "e= in the unsubscribe URL")
    expect("%40" in url.split("?", 1)[1].upper(),
           f"address not percent-encoded in {url}")
    expect(params.get("t"), f"no t= token in {url}")

    equal(msg.get_content_type(), "multipart/alternative", "top-level type")
    parts = list(msg.iter_parts())
    equal([p.get_content_type() for p in parts], ["text/plain", "text/html"],
          "parts")
    for p in parts:
        equal(p.get_content_charset(), "utf-8", f"{p.get_content_type()} charset")
        equal(str(p["Content-Transfer-Encoding"]).lower(), "quoted-printable",
              f"{p.get_content_type()} transfer encoding")
    text, html = (p.get_content() for p in parts)
    return text, html, url


def escape(s):
    """HTML-escape text content the way any escaper must (quotes may vary)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def tokens(server):
    return {rcpt: url_params(unsubscribe_url(m.msg))["t"]
            for rcpt, m in server.by_rcpt().items()}


def journal_addresses(case):
    return sorted(r[1] for r in case.journal())


THREE = csv("ann@example.net,Ann", "bob@example.net,Bob", "carl@example.net,Carl")
THREE_ADDRS = ["ann@example.net", "bob@example.net", "carl@example.net"]


# ---- tests --------------------------------------------------------------

SUITE = Suite()
TESTS = SUITE.tests
test = SUITE.test


@test("send: 4 subscribers, headers, MIME, merge fields, escaping, journal, one connection")
def test_basic_send(t):
    server = t.server()
    t.subscribers(csv("ann@example.net,Ann,Lisbon",
                      "joerg@example.net,Jörg Müller,Köln",
                      "anon@example.net,,",
                      "tom@example.net,<b>Tom & Jerry</b>,",
                      header="email,name,city"))
    t.post("\nGreetings to {{city|your town}}.\n")
    t.config(server)
    r = t.send()
    equal(r.code, EX_OK, "exit code")

    mails = server.by_rcpt()
    equal(sorted(mails), sorted(["ann@example.net", "joerg@example.net",
                                 "anon@example.net", "tom@example.net"]),
          "recipients")
    names = {"ann@example.net": "Ann", "joerg@example.net": "Jörg Müller",
             "anon@example.net": "reader", "tom@example.net": "<b>Tom & Jerry</b>"}
    urls = {}
    for rcpt, m in mails.items():
        text, html, urls[rcpt] = check_message(m, rcpt)
        name = names[rcpt]
        expect(f"Hi {name}," in text, f"{rcpt}: 'Hi {name},' not in text part")
        expect(TAG_RE.search(text.replace(name, "")) is None,
               f"{rcpt}: HTML tag in text part: {TAG_RE.search(text)}")
        expect("first item" in text and "https://example.org/archive" in text,
               f"{rcpt}: list item or link URL missing from text part")
        expect(f"sent to {rcpt}" in text, f"{rcpt}: {{{{email}}}} not merged")
        expect(urls[rcpt] in text, f"{rcpt}: unsubscribe URL not in text part")
        expect(f"Hi {escape(name)}," in html, f"{rcpt}: escaped name not in HTML")
        expect(re.search(r'<a [^>]*href="https://example\.org/archive"', html),
               f"{rcpt}: link missing from HTML")
        expect("<li>" in html and re.search(r"<h1[ >]", html),
               f"{rcpt}: list or heading missing from HTML")
        expect(escape(urls[rcpt]) in html,
               f"{rcpt}: escaped unsubscribe URL not in HTML")
    city = {"ann@example.net": "Lisbon", "joerg@example.net": "Köln",
            "anon@example.net": "your town", "tom@example.net": "your town"}
    for rcpt, m in mails.items():
        text = m.msg.get_body(("plain",)).get_content()
        expect(f"Greetings to {city[rcpt]}." in text,
               f"{rcpt}: CSV column merge field (city) wrong")

    tom_html = mails["tom@example.net"].msg.get_body(("html",)).get_content()
    expect("&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in tom_html,
           "HTML-escaped <b>Tom & Jerry</b> not in HTML part")
    expect("<b>Tom" not in tom_html, "raw <b>Tom in HTML part")
    joerg = mails["joerg@example.net"]
    equal(addr(joerg.msg, "To"), ("Jörg Müller", "joerg@example.net"), "To")
    expect("=?utf-8?" in raw_header(joerg.raw, "To").lower(),
           "non-ASCII To name is not RFC 2047 utf-8")
    equal(addr(mails["ann@example.net"].msg, "To"), ("Ann", "ann@example.net"), "To")

    ids = [str(m.msg["Message-ID"]) for m in mails.values()]
    equal(len(set(ids)), 4, "distinct Message-IDs")
    toks = [url_params(u)["t"] for u in urls.values()]
    equal(len(set(toks)), 4, "distinct unsubscribe tokens")

    journal = t.journal()
    equal(sorted(r[1] for r in journal), sorted(mails), "journal addresses")
    for _, address, msgid, reply in journal:
        equal(msgid.strip("<>"), str(mails[address].msg["Message-ID"]).strip("<>"),
              f"journal Message-ID of {address}")
        expect("250" in reply, f"journal reply for {address}: {reply!r}")

    txns = server.transactions()
    equal(len(txns), 4, "SMTP transactions")
    for x in txns:
        equal(len(x["rcpts"]), 1, "recipients per transaction")
        equal(x["result"], 250, "transaction result")
    equal(len({x["conn"] for x in txns}), 1, "connections used (should be reused)")


@test("550 rejection: exit 0, others delivered, one hard line in bounces.log")
def test_hard_bounce(t):
    server = t.server("--reject", "bad@example.net")
    t.subscribers(csv("ann@example.net,Ann", "bad@example.net,Bad",
                      "carl@example.net,Carl"))
    t.post()
    t.config(server)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    equal(sorted(server.by_rcpt()), ["ann@example.net", "carl@example.net"],
          "delivered")
    bounces = t.bounces()
    equal(len(bounces), 1, "bounces.log lines")
    _, address, kind, enhanced, code, source, slug, text = bounces[0]
    equal((address, kind, enhanced, code, source, slug),
          ("bad@example.net", "hard", "5.1.1", "550", "smtp", SLUG),
          "bounces.log fields")
    expect("User unknown" in text, f"server text missing: {text!r}")
    equal(journal_addresses(t), ["ann@example.net", "carl@example.net"],
          "journal addresses")


@test("hard bounce suppresses the address on the next run")
def test_hard_bounce_suppresses(t):
    first = t.server("--reject", "bad@example.net")
    t.subscribers(csv("ann@example.net,Ann", "bad@example.net,Bad"))
    t.post()
    t.config(first)
    equal(t.send().code, EX_OK, "exit code of first run")
    equal(len(t.bounces()), 1, "bounces.log lines")
    second = t.server()            # accepts everyone now
    t.config(second)
    r = t.send()
    equal(r.code, EX_OK, "exit code of second run")
    equal(server_rcpts(second), [], "delivered on the second run")


def server_rcpts(server):
    return sorted(r for m in server.messages() for r in m.rcpt_tos)


@test("451 deferral: exit 75, soft line, rerun delivers only the deferred one")
def test_deferral_and_resume(t):
    first = t.server("--defer", "slow@example.net")
    t.subscribers(csv("ann@example.net,Ann", "slow@example.net,Slow",
                      "carl@example.net,Carl"))
    t.post()
    # a high soft_limit so that the soft bounces of this run (one per
    # attempt, or one in all: the contract allows both) do not suppress
    t.config(first, {"bounce": {"soft_limit": 10}})
    r = t.send()
    equal(r.code, EX_TEMPFAIL, "exit code")
    equal(sorted(first.by_rcpt()), ["ann@example.net", "carl@example.net"],
          "delivered")
    attempts = [x for x in first.transactions()
                if any(rc["addr"] == "slow@example.net" for rc in x["rcpts"])]
    expect(len(attempts) >= 2,
           f"deferred address tried {len(attempts)} time(s), retry.attempts = 2")
    bounces = t.bounces()
    expect(bounces, "no line in bounces.log")
    for _, address, kind, enhanced, code, source, slug, text in bounces:
        equal((address, kind, enhanced, code, source, slug),
              ("slow@example.net", "soft", "4.2.0", "451", "smtp", SLUG),
              "bounces.log fields")
    equal(journal_addresses(t), ["ann@example.net", "carl@example.net"],
          "journal after first run")

    second = t.server()
    t.config(second, {"bounce": {"soft_limit": 10}})
    r = t.send()
    equal(r.code, EX_OK, "exit code of the rerun")
    equal(server_rcpts(second), ["slow@example.net"], "delivered on the rerun")
    check_message(second.messages()[0], "slow@example.net")
    equal(journal_addresses(t), sorted(["ann@example.net", "carl@example.net",
                                        "slow@example.net"]),
          "journal after the rerun")


def tls_server(t, *args):
    """A TLS server with a fresh self-signed cert; the cert is copied to
    the config dir as cert.pem (for ca_file, relative to the config)."""
    certs = t.path("certs")
    subprocess.run([PYTHON, SMTPD, "--gen-cert", certs], check=True,
                   capture_output=True)
    shutil.copy(os.path.join(certs, "cert.pem"), t.path("cert.pem"))
    return t.server("--tls-cert", os.path.join(certs, "cert.pem"),
                    "--tls-key", os.path.join(certs, "key.pem"), *args)


TLS_AUTH = {"smtp": {"starttls": "required", "username": SMTP_USER,
                     "password_env": "HERALD_SMTP_PASSWORD",
                     "ca_file": "cert.pem"}}
PASSWORD_ENV = {"HERALD_SMTP_PASSWORD": SMTP_PASSWORD}


@test("STARTTLS required + AUTH, self-signed cert trusted through ca_file")
def test_starttls_auth(t):
    server = tls_server(t, "--require-starttls", "--auth",
                        f"{SMTP_USER}:{SMTP_PASSWORD}")
    t.subscribers(THREE)
    t.post()
    t.config(server, TLS_AUTH)
    r = t.send(env=PASSWORD_ENV)
    equal(r.code, EX_OK, "exit code")
    mails = server.by_rcpt()
    equal(sorted(mails), THREE_ADDRS, "delivered")
    for rcpt, m in mails.items():
        check_message(m, rcpt)
    txns = server.transactions()
    expect(all(x["tls"] and x["auth"] == SMTP_USER for x in txns),
           f"transactions not over TLS with AUTH: {txns}")
    equal(len({x["conn"] for x in txns}), 1, "connections used")


@test("STARTTLS with an untrusted cert (no ca_file): exit 69, nothing sent")
def test_starttls_untrusted(t):
    server = tls_server(t, "--require-starttls", "--auth",
                        f"{SMTP_USER}:{SMTP_PASSWORD}")
    t.subscribers(THREE)
    t.post()
    t.config(server, merged(TLS_AUTH, {"smtp": {"ca_file": None}}))
    r = t.send(env=PASSWORD_ENV)
    equal(r.code, EX_UNAVAILABLE, "exit code")
    equal(server.messages(), [], "messages received")
    equal(t.journal(), [], "journal")


@test("smtps:// implicit TLS + AUTH")
def test_smtps(t):
    server = tls_server(t, "--implicit-tls", "--auth",
                        f"{SMTP_USER}:{SMTP_PASSWORD}")
    t.subscribers(THREE)
    t.post()
    # starttls is left at herald's default: it has no meaning for smtps://
    t.config(server, merged(TLS_AUTH, {"smtp": {"url": server.url("smtps"),
                                                "starttls": None}}))
    r = t.send(env=PASSWORD_ENV)
    equal(r.code, EX_OK, "exit code")
    equal(sorted(server.by_rcpt()), THREE_ADDRS, "delivered")
    expect(all(x["tls"] and x["auth"] == SMTP_USER
               for x in server.transactions()), "transactions not over TLS+AUTH")


@test("wrong SMTP password: non-zero exit, nothing sent")
def test_auth_failure(t):
    server = tls_server(t, "--require-starttls", "--auth",
                        f"{SMTP_USER}:{SMTP_PASSWORD}")
    t.subscribers(THREE)
    t.post()
    t.config(server, TLS_AUTH)
    r = t.send(env={"HERALD_SMTP_PASSWORD": "wrong"})
    # the contract names no code for this; 69 ("no message could be sent")
    # is the likely one, 75 would wrongly invite a retry
    expect(r.code not in (EX_OK, EX_TEMPFAIL), f"exit code {r.code}")
    equal(server.messages(), [], "messages received")


@test("starttls = required against a server without STARTTLS: nothing sent in clear")
def test_starttls_required_refused(t):
    server = t.server()
    t.subscribers(THREE)
    t.post()
    t.config(server, {"smtp": {"starttls": "required"}})
    r = t.send()
    expect(r.code not in (EX_OK, EX_TEMPFAIL), f"exit code {r.code}")
    equal(server.messages(), [], "messages received")
    equal(server.transactions(), [], "transactions (MAIL sent in clear)")


DRY_NAME_RE = re.compile(r"^(\d{6})-(.+)\.eml$")


def normalise(raw):
    """A message with what legitimately differs between two renderings of
    it blanked out: the values of the top-level Date: and Message-ID:
    headers (folded continuation lines included) and every MIME boundary
    (random per message)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    boundaries = [p.get_boundary() for p in msg.walk() if p.get_boundary()]
    for i, b in enumerate(boundaries):
        raw = raw.replace(b.encode(), b"BOUNDARY-%d" % i)
    head, sep, body = raw.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^(date|message-id):[^\r\n]*(?:\r\n[ \t][^\r\n]*)*",
                  lambda m: m.group(1).lower() + b": *", head)
    return head + sep + body


@test("--dry-run: one CRLF file per subscriber, no network, same bytes as the wire")
def test_dry_run(t):
    t.subscribers(csv("ann@example.net,Ann", "joerg@example.net,Jörg Müller",
                      "carl@example.net,"))
    order = ["ann@example.net", "joerg@example.net", "carl@example.net"]
    t.post()
    t.config(None)                       # smtp.url points at a closed port
    out = t.path("out")
    r = t.send("--dry-run", out)
    equal(r.code, EX_OK, "exit code")
    names = sorted(os.listdir(out))
    equal(names, [f"{i + 1:06d}-{a}.eml" for i, a in enumerate(order)],
          "dry-run files")
    dry = {}
    for n in names:
        with open(os.path.join(out, n), "rb") as f:
            raw = f.read()
        expect(raw.endswith(b"\r\n"), f"{n} does not end with CRLF")
        expect(not re.search(rb"(?<!\r)\n|\r(?!\n)", raw), f"{n}: bare CR or LF")
        long = [len(l) for l in raw.split(b"\r\n") if len(l) > 998]
        expect(not long, f"{n}: lines over 998 octets: {long}")
        rcpt = DRY_NAME_RE.match(n).group(2)
        email.message_from_bytes(raw, policy=email.policy.strict)
        dry[rcpt] = raw
    equal(t.journal(), [], "journal after a dry run")

    server = t.server()
    t.config(server)
    equal(t.send().code, EX_OK, "exit code of the real send")
    mails = server.by_rcpt()
    equal(sorted(mails), sorted(order), "delivered after the dry run")
    for rcpt, m in mails.items():
        check_message(m, rcpt)
        # Date, Message-ID and boundaries are normalised (see normalise())
        a, b = normalise(dry[rcpt]), normalise(m.raw)
        if a != b:
            diff = next(i for i in range(min(len(a), len(b)) + 1)
                        if a[i:i + 1] != b[i:i + 1])
            raise AssertionError(
                f"{rcpt}: dry-run file differs from the received message at "
                f"byte {diff}: {a[diff - 40:diff + 40]!r} vs {b[diff - 40:diff + 40]!r}")


@test("rerun sends nothing new; --force sends again with the same tokens")
def test_resume_and_force(t):
    server = t.server()
    t.subscribers(THREE)
    t.post()
    t.config(server)
    equal(t.send().code, EX_OK, "exit code of the first run")
    equal(server_rcpts(server), THREE_ADDRS, "delivered by the first run")
    first_tokens = tokens(server)

    r = t.send()
    equal(r.code, EX_OK, "exit code of the second run")
    equal(len(server.messages()), 3, "messages after the second run")
    equal(journal_addresses(t), THREE_ADDRS, "journal after the second run")

    second = t.server()
    t.config(second)
    r = t.send("--force")
    equal(r.code, EX_OK, "exit code with --force")
    equal(server_rcpts(second), THREE_ADDRS, "delivered with --force")
    equal(tokens(second), first_tokens, "unsubscribe tokens across runs")


@test("--test and --test=ADDR: only test addresses, [TEST] subject, no journal")
def test_test_sends(t):
    server = t.server()
    t.subscribers(csv("ann@example.net,Ann", "bob@example.net,Bob"))
    t.post()
    t.config(server)
    r = t.send("--test")
    equal(r.code, EX_OK, "exit code of --test")
    mails = server.by_rcpt()
    equal(sorted(mails), ["me@example.org"], "recipients of --test")
    text, _, _ = check_message(mails["me@example.org"], "me@example.org",
                               subject="[TEST] " + SUBJECT)
    expect("Hi Ann," in text, "--test to a non-subscriber: first row's name not merged")
    equal(t.journal(), [], "journal after --test")

    second = t.server()
    t.config(second)
    r = t.send("--test=bob@example.net", "--test=other@example.net")
    equal(r.code, EX_OK, "exit code of --test=ADDR")
    mails = second.by_rcpt()
    equal(sorted(mails), ["bob@example.net", "other@example.net"],
          "recipients of --test=ADDR")
    bob, _, _ = check_message(mails["bob@example.net"], "bob@example.net",
                              subject="[TEST] " + SUBJECT)
    other, _, _ = check_message(mails["other@example.net"], "other@example.net",
                                subject="[TEST] " + SUBJECT)
    expect("Hi Bob," in bob, "--test=subscriber: own row not merged")
    expect("Hi Ann," in other, "--test=non-subscriber: first row not merged")
    equal(t.journal(), [], "journal after --test=ADDR")

    third = t.server()
    t.config(third)
    equal(t.send().code, EX_OK, "exit code of the real send")
    equal(server_rcpts(third), ["ann@example.net", "bob@example.net"],
          "real send after test sends")


BAD_ROWS = (
    "email,name,status\n"                       # 1
    "ann@example.net,Ann,\n"                    # 2 good
    "carl@example.net,Carl,,extra\n"            # 3 ragged
    "not-an-address,Nobody,\n"                  # 4 invalid address
    "ann@example.net,Ann Again,\n"              # 5 duplicate
    '"nl@example.net","Evil\nName",\n'          # 6-7 newline in a header field
    "gone@example.net,Gone,unsubscribed\n"      # 8 unsubscribed: silently skipped
    "dora@example.net,Dora,subscribed\n"        # 9 good
)
BAD_LINES = [3, 4, 5, 6]


def check_bad_rows_reported(output):
    for n in BAD_LINES:
        expect(re.search(rf"subs\.csv:{n}\b", output),
               f"subs.csv:{n} not reported")
    for n in (1, 2, 7, 8, 9):
        expect(not re.search(rf"subs\.csv:{n}\b", output),
               f"subs.csv:{n} reported but the row is fine or skipped silently")


@test("bad CSV rows are reported as FILE:LINE and skipped, the rest delivered")
def test_bad_rows(t):
    server = t.server()
    t.subscribers(BAD_ROWS)
    t.post()
    t.config(server)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    mails = server.by_rcpt()
    equal(sorted(mails), ["ann@example.net", "dora@example.net"], "delivered")
    text, _, _ = check_message(mails["ann@example.net"], "ann@example.net")
    expect("Hi Ann," in text, "the first of duplicate rows should win")
    check_bad_rows_reported(r.err)
    equal(journal_addresses(t), ["ann@example.net", "dora@example.net"], "journal")


@test("subscribers check: bad rows as FILE:LINE, exit 0 for a usable list")
def test_subscribers_check(t):
    subs = t.subscribers(BAD_ROWS)
    t.config(None)
    r = t.herald("subscribers", "check", subs)
    equal(r.code, EX_OK, "exit code")
    check_bad_rows_reported(r.out + r.err)


@test("subscribers check: a list without an email column exits 65")
def test_subscribers_check_unusable(t):
    subs = t.subscribers(csv("ann@example.net,Ann", header="mail,name"))
    t.config(None)
    equal(t.herald("subscribers", "check", subs).code, EX_DATAERR, "exit code")


@test("exit 66: post file missing")
def test_exit_missing_post(t):
    t.subscribers(THREE)
    t.config(None)
    equal(t.send(post=t.path("no-such-post.md")).code, EX_NOINPUT, "exit code")


@test("exit 66: subscriber list missing")
def test_exit_missing_list(t):
    t.post()
    t.config(None, {"subscribers": "no-such-list.csv"})
    equal(t.send().code, EX_NOINPUT, "exit code")


@test("exit 65: CSV without an email column")
def test_exit_no_email_column(t):
    server = t.server()
    t.subscribers(csv("ann@example.net,Ann", header="mail,name"))
    t.post()
    t.config(server)
    equal(t.send().code, EX_DATAERR, "exit code")
    equal(server.messages(), [], "messages received")


@test("exit 65: front matter without its closing fence")
def test_exit_broken_front_matter(t):
    server = t.server()
    t.subscribers(THREE)
    post = t.write("broken.md", "---\nsubject: Broken\ndate: 2026-11-30 08:00\n\n"
                   "Hi {{name|reader}},\n")
    t.config(server)
    equal(t.send(post=post).code, EX_DATAERR, "exit code")
    equal(server.messages(), [], "messages received")


@test("exit 78: config without from")
def test_exit_config_no_from(t):
    t.subscribers(THREE)
    t.post()
    t.config(None, {"from": None})
    equal(t.send().code, EX_CONFIG, "exit code")


@test("exit 78: unknown smtp.starttls value")
def test_exit_config_bad_starttls(t):
    t.subscribers(THREE)
    t.post()
    t.config(None, {"smtp": {"starttls": "sometimes"}})
    equal(t.send().code, EX_CONFIG, "exit code")


@test("exit 69: nothing listening on the SMTP port")
def test_exit_unreachable(t):
    t.subscribers(THREE)
    t.post()
    t.config(None)
    equal(t.send().code, EX_UNAVAILABLE, "exit code")
    equal(t.journal(), [], "journal")


@test("exit 64: unknown command")
def test_exit_unknown_command(t):
    t.config(None)
    equal(t.herald("frobnicate").code, EX_USAGE, "exit code")


@test("exit 64: send without a post")
def test_exit_send_without_post(t):
    t.config(None)
    equal(t.herald("send").code, EX_USAGE, "exit code")


@test("--rate 20/s delivers all 5")
def test_rate(t):
    server = t.server()
    addrs = [f"reader{i}@example.net" for i in range(1, 6)]
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(addrs, 1))))
    t.post()
    t.config(server)
    equal(t.send("--rate", "20/s").code, EX_OK, "exit code")
    equal(server_rcpts(server), addrs, "delivered")


# ---- runner -------------------------------------------------------------

def main(argv):
    return SUITE.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
