#!/usr/bin/python3
"""herald serve: the reader's side, over real HTTP (curl and Python's
http.client) against the server each test starts on a free loopback port
(web.listen port 0, --port-file). What the list and list.log hold is
read back from the files; mail from tests/smtpd.py."""

import email
import email.header
import email.policy
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, Case, Skip, equal, expect, csv, SECRET, SLUG,  # noqa: E402
                     EX_CONFIG, log)

SUITE = Suite()
CURL = "/usr/bin/curl"


def token(addr):
    return hmac.new(SECRET.encode(), addr.lower().encode(), hashlib.sha256).hexdigest()


def web_config(t, server=None, web=None, changes=None):
    w = {"listen": "127.0.0.1:0", "base_url": "http://127.0.0.1"}
    w.update(web or {})
    ch = {"web": {k: v for k, v in w.items() if v is not None}}
    ch.update(changes or {})
    return t.config(server, ch)


class Serve:
    """One `herald serve` in the background, its port from --port-file."""

    def __init__(self, t, *args):
        self.t = t
        self.port_file = t.path(f"port{len(t.procs) + 1}")
        self.proc = t.popen("serve", "--port-file", self.port_file, *args)
        self.out = t.path(f"bg{len(t.runs) + len(t.procs)}.out")
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise AssertionError(f"herald serve exited {self.proc.returncode}: {self.output()}")
            expect(time.monotonic() < deadline, "herald serve did not listen within 10 s")
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict lower-cased, body text) over http.client."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
        finally:
            c.close()

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(15)


def unsub_path(addr, tok=None):
    q = urllib.parse.urlencode({"e": addr, "t": token(addr) if tok is None else tok})
    return "/unsubscribe?" + q


def one_click(srv, addr, tok=None):
    return srv.request("POST", unsub_path(addr, tok), "List-Unsubscribe=One-Click",
                       {"Content-Type": "application/x-www-form-urlencoded"})


def curl(*args):
    if not os.path.exists(CURL):
        raise Skip("curl is not installed")
    p = subprocess.run([CURL, "-sS", "-o", "/dev/stdout", "-w", "\n%{http_code}", *args],
                       capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return int(code), body


def list_status(t):
    import csv as csvmod
    with open(t.path("subs.csv"), newline="", encoding="utf-8") as f:
        return {r["email"]: r.get("status", "") or "" for r in csvmod.DictReader(f)}


def listlog(t):
    p = t.path("state", "list.log")
    if not os.path.exists(p):
        return []
    with open(p, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


READERS = csv("joy@example.net,Joy", "bob@example.net,Bob", "o'brien&co@example.net,Pat")


# ---- config --------------------------------------------------------------

@SUITE.test("web config errors name FILE:LINE and exit 78, in serve and in check")
def test_config_errors(t):
    t.post()
    t.subscribers(READERS)
    cases = [
        ({"listen": "localhost:8025"}, 'web.listen: "localhost" is not an IP address'),
        ({"listen": "127.0.0.1"}, 'web.listen: expected "ADDRESS:PORT"'),
        ({"listen": "127.0.0.1:70000"}, 'web.listen: expected "ADDRESS:PORT"'),
        ({"base_url": "http://news.example.org"}, "web.base_url: \"http://news.example.org\" is http://"),
        ({"base_url": "https://news.example.org/?x=1"}, "web.base_url: expected an absolute https:// URL"),
        ({"trusted_proxies": ["10.0.0.1", "proxy"]}, 'web.trusted_proxies: "proxy" is not an IP address'),
        ({"signup": "yes"}, "web.signup: expected true or false"),
        ({"signup": True, "base_url": None}, "web.signup needs web.base_url: the confirmation mail links there"),
        ({"port": 8025}, 'unknown setting "web.port" (see config.example)'),
    ]
    for web, want in cases:
        conf = web_config(t, web=web)
        with open(conf) as f:
            key = next(iter(web))
            line = next(n for n, l in enumerate(f, 1) if l.strip().startswith(key + " ="))
        for args in (("serve",), ("check", t.path(f"{SLUG}.md"))):
            r = t.herald(*args)
            equal(r.code, EX_CONFIG, f"exit of {args[0]} with web {web}")
            expect(f"{conf}:{line}: {want}" in r.err, f"{args[0]}: {want!r} at line {line} in {r.err!r}")


# ---- unsubscribe ---------------------------------------------------------

@SUITE.test("GET /unsubscribe shows one POST button and changes nothing")
def test_get_changes_nothing(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    before = open(t.path("subs.csv"), "rb").read()
    for _ in range(3):
        status, headers, body = srv.request("GET", unsub_path("joy@example.net"))
        equal(status, 200, "status")
    code, body2 = curl(srv.url(unsub_path("joy@example.net")))
    equal(code, 200, "curl status")
    equal(body2, body, "curl and http.client see one page")
    expect('<form method="post">' in body, "a form that POSTs to the same URL")
    expect('<button type="submit" name="List-Unsubscribe" value="One-Click">Unsubscribe</button>' in body,
           "the button sends RFC 8058's body")
    expect("Stop sending mail to <strong>joy@example.net</strong>?" in body, "the address, on the page")
    expect("<script" not in body and "src=" not in body and "http" not in body.split("<style>")[0],
           "no script, nothing from elsewhere")
    expect(headers["content-security-policy"].startswith("default-src 'none'; style-src 'sha256-"),
           headers["content-security-policy"])
    equal(headers["referrer-policy"], "no-referrer", "Referrer-Policy")
    equal(headers["cache-control"], "no-store", "Cache-Control")
    equal(open(t.path("subs.csv"), "rb").read(), before, "the list after GETs")
    equal(listlog(t), [], "list.log after GETs")
    equal(srv.stop(), 0, "exit after SIGTERM")


@SUITE.test("POST /unsubscribe (RFC 8058 one-click, urlencoded and multipart) unsubscribes; again is 200 and harmless")
def test_one_click(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    status, _, body = one_click(srv, "joy@example.net")
    equal(status, 200, "status")
    expect("<strong>joy@example.net</strong> is unsubscribed and gets no more of these mails." in body, body)
    equal(list_status(t), {"joy@example.net": "unsubscribed", "bob@example.net": "",
                           "o'brien&co@example.net": ""}, "the list after one POST")
    # multipart/form-data, as curl -F (and some mailbox providers) send it
    code, _ = curl("-F", "List-Unsubscribe=One-Click", srv.url(unsub_path("bob@example.net")))
    equal(code, 200, "multipart POST")
    # again, both ways: still 200, nothing else changes
    equal(one_click(srv, "joy@example.net")[0], 200, "second POST")
    code, _ = curl("-d", "List-Unsubscribe=One-Click", srv.url(unsub_path("JOY@example.net")))
    equal(code, 200, "third POST, address in another case")
    equal(list_status(t), {"joy@example.net": "unsubscribed", "bob@example.net": "unsubscribed",
                           "o'brien&co@example.net": ""}, "the list after four POSTs")
    lines = listlog(t)
    # a repeat is answered from what list.log says already: no line
    equal([l[1:] for l in lines], [["unsubscribe", "joy@example.net", "web"],
                                   ["unsubscribe", "bob@example.net", "web"]],
          "list.log: one line per reader")
    expect(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", l[0]) for l in lines), "times")
    # the body is required: a POST without it is not a one-click request
    status, _, body = srv.request("POST", unsub_path("o'brien&co@example.net"), "",
                                  {"Content-Type": "application/x-www-form-urlencoded"})
    equal(status, 400, "POST without List-Unsubscribe=One-Click")
    equal(list_status(t)["o'brien&co@example.net"], "", "that reader")
    srv.stop()


@SUITE.test("a forged, another reader's or a missing token is 403/400 and changes nothing")
def test_bad_tokens(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    good = token("joy@example.net")
    forged = good[:-1] + ("0" if good[-1] != "0" else "1")
    cases = [(forged, 403), (token("bob@example.net"), 403), ("", 400), (good[:32], 403),
             (hmac.new(b"another-secret", b"joy@example.net", hashlib.sha256).hexdigest(), 403)]
    for tok, want in cases:
        for method in ("GET", "POST"):
            status, _, body = srv.request(method, unsub_path("joy@example.net", tok),
                                          "List-Unsubscribe=One-Click" if method == "POST" else None,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
            equal(status, want, f"{method} with token {tok[:8]}...")
            expect("Unsubscribe</button>" not in body, "no button for a bad token")
    status, _, _ = srv.request("POST", "/unsubscribe?e=joy%40example.net", "List-Unsubscribe=One-Click")
    equal(status, 400, "no t at all")
    # the token's hex digits may come in upper case (mail clients)
    status, _, _ = srv.request("GET", unsub_path("joy@example.net", good.upper()))
    equal(status, 200, "upper-case token")
    equal(list_status(t), {"joy@example.net": "", "bob@example.net": "",
                           "o'brien&co@example.net": ""}, "the list")
    equal(listlog(t), [], "list.log")
    srv.stop()


@SUITE.test("hostile requests: escaped values, capped sizes, strict forms, no other methods or paths")
def test_hostile_requests(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    status, _, body = srv.request("GET", unsub_path("o'brien&co@example.net"))
    equal(status, 200, "status")
    expect("<strong>o&#39;brien&amp;co@example.net</strong>" in body or
           "<strong>o&#x27;brien&amp;co@example.net</strong>" in body, "the address HTML-escaped: " + body)
    e = urllib.parse.quote("joy@example.net")
    tok = token("joy@example.net")
    cases = [
        ("GET", f"/unsubscribe?e={e}&t={tok}&e=bob%40example.net", None, 400),   # which e?
        ("GET", f"/unsubscribe?e=joy%zz&t={tok}", None, 400),                     # bad escape
        ("GET", f"/unsubscribe?e=joy%00%40example.net&t={tok}", None, 400),        # NUL
        ("GET", f"/unsubscribe?e=%C3%28%40example.net&t={tok}", None, 400),        # bad UTF-8
        ("GET", "/unsubscribe?" + "x=1&" * 2000, None, 414),
        ("GET", "/unsubscribe?e=%3Cscript%3E%40example.net&t=" + tok, None, 400),
        ("POST", unsub_path("joy@example.net"), "List-Unsubscribe=One-Click&" + "a" * 5000, 413),
        ("PUT", unsub_path("joy@example.net"), "x", 405),
        ("GET", "/", None, 404),
        ("GET", "/unsubscribe/../etc/passwd", None, 404),
        ("GET", "//evil.example/unsubscribe", None, 404),
    ]
    for method, path, body, want in cases:
        status, headers, text = srv.request(method, path, body,
                                            {"Content-Type": "application/x-www-form-urlencoded"})
        equal(status, want, f"{method} {path[:60]}")
        expect("location" not in headers, "no redirect")
        expect("<script>" not in text, "nothing reflected unescaped")
        if want == 405:
            equal(headers.get("allow"), "GET, HEAD, POST", "Allow")
    equal(list_status(t)["joy@example.net"], "", "the list")
    equal(listlog(t), [], "list.log")
    srv.stop()


@SUITE.test("one log line per request, without the token or the reader's local part")
def test_log_lines(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    srv.request("GET", unsub_path("joy@example.net"))
    one_click(srv, "joy@example.net")
    one_click(srv, "bob@example.net", token("joy@example.net"))
    srv.request("GET", "/nothing?secret=1")
    equal(srv.stop(), 0, "exit")
    out = srv.output()
    lines = [l for l in out.splitlines() if not l.startswith("herald:")]
    equal(len(lines), 4, f"request lines in {out!r}")
    pat = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1 (GET|POST) (\S+) (\d{3}) [\d.]+ms( @example\.net)?"
    got = []
    for l in lines:
        m = re.fullmatch(pat, l)
        expect(m, f"log line {l!r}")
        got.append((m.group(1), m.group(2), m.group(3)))
    equal(got, [("GET", "/unsubscribe", "200"), ("POST", "/unsubscribe", "200"),
                ("POST", "/unsubscribe", "403"), ("GET", "/nothing", "404")], "lines")
    for secret in (token("joy@example.net"), "joy@", "joy%40", "bob@", "secret=1"):
        expect(secret not in out, f"{secret!r} in the log")


@SUITE.test("SIGTERM: a request under way is answered and applied, new connections are refused, exit 0")
def test_sigterm_drains(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    body = b"List-Unsubscribe=One-Click"
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall((f"POST {unsub_path('joy@example.net')} HTTP/1.1\r\nHost: x\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10])
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    expect(srv.proc.poll() is None, "still running while a request is under way")
    refused = False
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    except OSError:
        refused = True
    expect(refused, "a new connection after SIGTERM is refused")
    s.sendall(body[10:])
    reply = b""
    while b"</html>" not in reply:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    expect(reply.startswith(b"HTTP/1.1 200"), f"the answer: {reply[:80]!r}")
    equal(srv.proc.wait(15), 0, "exit")
    equal(list_status(t)["joy@example.net"], "unsubscribed", "applied")
    expect("terminated: answering the requests under way, then stopping" in srv.output(), srv.output())


@SUITE.test("a restart applies what list.log holds and the list does not (a kill between log and list)")
def test_restart_reapplies(t):
    t.subscribers(READERS)
    web_config(t)
    os.makedirs(t.path("state"))
    with open(t.path("state", "list.log"), "w") as f:
        f.write("2026-12-01T10:00:00Z\tunsubscribe\tbob@example.net\tweb\n"
                "2026-12-01T10:00:01Z\tunsubscribe\tjoy@example.net\tweb\n"
                "2026-12-01T10:00:02Z\tunsubscr")        # torn: never answered
    srv = Serve(t)
    equal(list_status(t), {"joy@example.net": "unsubscribed", "bob@example.net": "unsubscribed",
                           "o'brien&co@example.net": ""}, "the list once serve listens")
    srv.stop()
    out = srv.output()
    expect("list.log:3: the last line was cut short" in out, out)
    expect("2 unsubscribes from" in out and "applied (herald serve had stopped before)" in out, out)
    equal(len(listlog(t)), 2, "the torn line is gone")
    srv = Serve(t)                    # and again: nothing to do, nothing said
    srv.stop()
    expect("applied" not in srv.output(), srv.output())


@SUITE.test("with web.base_url, unsubscribe.url defaults to it; the link in the mail works against serve")
def test_default_unsubscribe_url(t):
    t.post()
    t.subscribers(READERS)
    web_config(t, web={"base_url": "https://news.example.org/letters/"},
               changes={"unsubscribe": {"url": None, "mailto": None, "secret_env": "HERALD_SECRET"}})
    r = t.send("--dry-run", t.path("out"))
    equal(r.code, 0, "dry run")
    emls = sorted(os.listdir(t.path("out")))
    msg = email.message_from_bytes(open(t.path("out", emls[0]), "rb").read(), policy=email.policy.strict)
    want = f"<https://news.example.org/letters/unsubscribe?e=joy%40example.net&t={token('joy@example.net')}>"
    equal(str(msg["List-Unsubscribe"]), want, "List-Unsubscribe")
    equal(str(msg["List-Unsubscribe-Post"]), "List-Unsubscribe=One-Click", "List-Unsubscribe-Post")
    link = urllib.parse.urlsplit(want.strip("<>"))
    srv = Serve(t)
    # the proxy may pass the base path on, or strip it
    for path in (link.path, "/unsubscribe"):
        status, _, _ = srv.request("GET", f"{path}?{link.query}")
        equal(status, 200, f"GET {path}")
    status, _, _ = srv.request("POST", f"{link.path}?{link.query}", "List-Unsubscribe=One-Click",
                               {"Content-Type": "application/x-www-form-urlencoded"})
    equal(status, 200, "one-click POST of the mail's link")
    equal(list_status(t)["joy@example.net"], "unsubscribed", "the list")
    srv.stop()
    r = t.send("--dry-run", t.path("out2"))
    equal(sorted(os.listdir(t.path("out2"))), ["000001-bob@example.net.eml",
                                               "000002-o'brien&co@example.net.eml"], "the next dry run")


def confirm_token(addr, name, expires):
    msg = f"confirm\n{addr.lower()}\n{name}\n{expires}".encode()
    return f"{expires}." + hmac.new(SECRET.encode(), msg, hashlib.sha256).hexdigest()


def signup_world(t):
    """The post, READERS, a capture server, serve with signup on."""
    t.post()
    t.subscribers(READERS)
    smtp = t.server()
    web_config(t, smtp, web={"signup": True})
    return smtp, Serve(t)


def wait_mails(smtp, n, seconds=10):
    deadline = time.monotonic() + seconds
    while len(smtp.envelopes()) < n:
        expect(time.monotonic() < deadline, f"{n} mails did not arrive within {seconds} s")
        time.sleep(0.05)
    return smtp.messages()


@SUITE.test("signup: the form mails a confirmation through the relay; its link shows a button; "
            "the POST adds the reader; the next send --dry-run includes them")
def test_signup_confirm(t):
    smtp, srv = signup_world(t)
    status, headers, body = srv.request("GET", "/subscribe")
    equal(status, 200, "GET /subscribe")
    expect('<form method="post" action="subscribe">' in body and 'name="email"' in body
           and 'name="name"' in body, "the form")
    expect('<div class="hp" aria-hidden="true">' in body and 'name="website" tabindex="-1"' in body,
           "the honeypot field, hidden")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = srv.request("POST", "/subscribe",
                                  urllib.parse.urlencode({"email": "new@example.net", "name": "Zoë N",
                                                          "website": ""}), form)
    equal(status, 200, "POST /subscribe")
    expect("a mail with a confirmation link is on its way" in body, body)
    mails = wait_mails(smtp, 1)
    m = mails[0]
    equal(m.rcpt_tos, ["new@example.net"], "envelope recipient")
    equal(m.mail_from, "joy@example.org", "envelope sender")
    equal(str(m.msg["To"]), "Zoë N <new@example.net>", "To")
    equal(str(m.msg["Subject"]), "Confirm your subscription to Weekly", "Subject")
    text = m.msg.get_body(("plain",)).get_content()
    links = re.findall(r"http://127\.0\.0\.1/confirm\?\S+", text)
    equal(len(links), 1, f"one confirmation link in {text!r}")
    link = urllib.parse.urlsplit(links[0])
    q = urllib.parse.parse_qs(link.query)
    equal((q["e"], q["n"]), (["new@example.net"], ["Zoë N"]), "the link's address and name")
    expect("The link works for 48 hours." in text, text)
    # No second mail within the hour, none for a filled honeypot, none to a subscriber.
    for fields in ({"email": "new@example.net", "name": "Zoë N"},
                   {"email": "bot@example.net", "name": "", "website": "http://spam.example"},
                   {"email": "joy@example.net", "name": "Joy"}):
        status, _, body = srv.request("POST", "/subscribe", urllib.parse.urlencode(fields), form)
        equal(status, 200, f"POST {fields}")
        expect("a mail with a confirmation link is on its way" in body, "the same answer")
    time.sleep(1)
    equal(len(smtp.envelopes()), 1, "mails after the three that send none")
    before = open(t.path("subs.csv"), "rb").read()
    status, _, body = srv.request("GET", f"{link.path}?{link.query}")
    equal(status, 200, "GET the link")
    expect('<button type="submit" name="confirm" value="yes">Confirm</button>' in body, body)
    equal(open(t.path("subs.csv"), "rb").read(), before, "the list after the GET")
    # The token is bound to the address and the name.
    for e, n in (("other@example.net", "Zoë N"), ("new@example.net", "Mallory")):
        bad = urllib.parse.urlencode({"e": e, "n": n, "t": q["t"][0]})
        equal(srv.request("POST", f"/confirm?{bad}", "confirm=yes", form)[0], 403, f"token for {e}/{n}")
    old = confirm_token("late@example.net", "", int(time.time()) - 10)
    late = urllib.parse.urlencode({"e": "late@example.net", "n": "", "t": old})
    equal(srv.request("POST", f"/confirm?{late}", "confirm=yes", form)[0], 410, "expired token")
    equal(open(t.path("subs.csv"), "rb").read(), before, "the list after refused confirmations")
    status, _, body = srv.request("POST", f"{link.path}?{link.query}", "confirm=yes", form)
    equal(status, 200, "POST the link")
    expect("<strong>new@example.net</strong> is subscribed." in body, body)
    equal(list_status(t).get("new@example.net"), "", "the new row (no status column: subscribed)")
    with open(t.path("subs.csv"), encoding="utf-8") as f:
        expect(f.read().endswith("new@example.net,Zoë N\n"), "the row, with the name")
    equal([l[1:] for l in listlog(t)], [["subscribe", "new@example.net", "web", "Zoë N"]], "list.log")
    srv.stop()
    r = t.send("--dry-run", t.path("out"))
    equal(r.code, 0, "dry run")
    expect(any(n.endswith("-new@example.net.eml") for n in os.listdir(t.path("out"))),
           f"the new reader in the dry run: {os.listdir(t.path('out'))}")


@SUITE.test("signup: a Cyrillic name that fits one encoded-word is one in the confirmation's To "
            "(on a line of its own, no header line ending in a blank); Python policy.default "
            "and compat32 decode it whole")
def test_signup_confirm_name(t):
    smtp, srv = signup_world(t)
    name = "Иван Петрович Сидоров"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = srv.request("POST", "/subscribe",
                               urllib.parse.urlencode({"email": "ivan@example.net", "name": name,
                                                       "website": ""}), form)
    equal(status, 200, "POST /subscribe")
    m = wait_mails(smtp, 1)[0]
    srv.stop()
    head = m.raw.split(b"\r\n\r\n", 1)[0]
    equal([l for l in head.split(b"\r\n") if l.endswith((b" ", b"\t"))], [],
          "header lines ending in a blank")
    to_raw = re.search(rb"(?ms)^To:(.*?)\r\n(?=\S)", head).group(1).decode()
    equal(to_raw.count("=?UTF-8?"), 1, f"encoded-words in To: {to_raw!r}")
    equal(m.msg["To"].addresses[0].display_name, name, "To (policy.default)")
    legacy = email.message_from_bytes(m.raw, policy=email.policy.compat32)
    equal(str(email.header.make_header(email.header.decode_header(legacy["To"]))).strip(),
          f"{name} <ivan@example.net>", "To (compat32)")


@SUITE.test("signup after an unsubscribe: the last list.log line wins, in the list and in send")
def test_resubscribe(t):
    smtp, srv = signup_world(t)
    equal(one_click(srv, "joy@example.net")[0], 200, "unsubscribe")
    equal(list_status(t)["joy@example.net"], "unsubscribed", "after the unsubscribe")
    # A link mailed after the unsubscribe (one mailed before it is 410,
    # tests/integration_edges.py): issued a second later, valid 48 hours.
    left = int(time.time())
    while int(time.time()) == left:
        time.sleep(0.05)
    tok = confirm_token("joy@example.net", "Joy", int(time.time()) + 48 * 3600)
    path = "/confirm?" + urllib.parse.urlencode({"e": "joy@example.net", "n": "Joy", "t": tok})
    equal(srv.request("POST", path, "confirm=yes", {"Content-Type": "application/x-www-form-urlencoded"})[0],
          200, "confirm")
    equal(list_status(t)["joy@example.net"], "subscribed", "after the signup")
    srv.stop()
    r = t.send("--dry-run", t.path("out"))
    equal(r.code, 0, "dry run")
    expect(any(n.endswith("-joy@example.net.eml") for n in os.listdir(t.path("out"))),
           "joy, back on the list, is mailed")
    srv = Serve(t)                  # the replay keeps the order too
    srv.stop()
    equal(list_status(t)["joy@example.net"], "subscribed", "after a restart")


def judge_pages(t, srv, pages, headers=None):
    """Each page at 390 and 1200 px, light and dark: no sideways scroll,
    contrast 4.5 or more (the quality suite's probe); the GET ones also
    screenshotted from the live server."""
    import integration_quality as q
    form = headers or {}
    for name, (method, path, body) in pages.items():
        status, headers, text = srv.request(method, path, body, form)
        page = t.write(f"{name}.html", text)
        for width in (390, 1200):
            for dark in (False, True):
                r = q.probe(t, page, width, dark)
                what = f"{name} at {width} px, {'dark' if dark else 'light'}"
                equal(r["dark"], dark, f"{what}: prefers-color-scheme")
                expect(r["scroll"] <= width, f"{what}: {r['scroll']} px wide, scrolls sideways")
                expect(r["worst"] >= 4.5, f"{what}: contrast {r['worst']:.2f} for {r['worst_text']}")
        if method != "GET":
            continue
        for width in (390, 1200):
            for dark in (False, True):
                png = t.path(f"{name}-{width}-{'dark' if dark else 'light'}.png")
                # The quality suite's browser, but let through to the
                # loopback server (every other host still resolves to
                # nothing, so a remote resource would show as missing).
                args = [x for x in q.chromium_args(t, f"--window-size={width},900",
                                                   *(["--force-dark-mode"] if dark else []),
                                                   f"--screenshot={png}", srv.url(path))
                        if not x.startswith(("--host-resolver-rules", "--proxy-server"))]
                args.insert(1, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
                subprocess.run(args, capture_output=True, timeout=120)
                expect(os.path.exists(png), f"no screenshot {png}")
                q.check_screenshot(png, width, 900)


@SUITE.test("pages at 390 and 1200 px, light and dark: no sideways scroll, readable contrast; "
            "Chromium screenshots of each page from the live server")
def test_pages_in_chromium(t):
    import integration_quality as q
    if not q.CHROMIUM:
        raise Skip("chromium is not installed (deps/test-quality.txt)")
    smtp, srv = signup_world(t)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    tok = confirm_token("zoe@example.net", "Zoë", int(time.time()) + 3600)
    confirm = "/confirm?" + urllib.parse.urlencode({"e": "zoe@example.net", "n": "Zoë", "t": tok})
    pages = {
        "unsubscribe": ("GET", unsub_path("o'brien&co@example.net"), None),
        "unsubscribed": ("POST", unsub_path("joy@example.net"), "List-Unsubscribe=One-Click"),
        "bad-link": ("GET", unsub_path("joy@example.net", "0" * 64), None),
        "subscribe": ("GET", "/subscribe", None),
        "check-inbox": ("POST", "/subscribe", "email=zoe%40example.net&name=Zo%C3%AB"),
        "confirm": ("GET", confirm, None),
        "not-found": ("GET", "/nothing", None),
    }
    judge_pages(t, srv, pages, form)
    srv.stop()


@SUITE.test("a message already handed to a connection is withdrawn when its reader unsubscribes first")
def test_withdrawn_on_connection(t):
    t.post()
    t.subscribers(csv("a@example.net,A", "b@example.net,B", "c@example.net,C"))
    smtp = t.server("--delay-ms", "2000")     # each reply to a final dot waits 2 s
    web_config(t, smtp, changes={"smtp": {"url": smtp.url(), "starttls": "never", "timeout": 10,
                                          "connections": 1}})
    srv = Serve(t)
    sender = t.popen("send", t.path(f"{SLUG}.md"), "--json")
    deadline = time.monotonic() + 20
    while not smtp.envelopes():              # a's message is stored, its reply held back;
        expect(time.monotonic() < deadline, "the send did not start")   # b's waits on the
        time.sleep(0.02)                     # connection, handed over already
    equal(one_click(srv, "b@example.net")[0], 200, "unsubscribe b")
    returned = time.time()
    equal(sender.wait(60), 0, "send exit")
    srv.stop()
    got = smtp.received()
    equal(got, ["a@example.net", "c@example.net"], "who got the issue")
    rcpts = [r["addr"] for x in smtp.transactions() for r in x["rcpts"]]
    expect("b@example.net" not in rcpts, "b was never given to the relay")
    expect(min(r["time"] for x in smtp.transactions() for r in x["rcpts"]
               if r["addr"] == "c@example.net") > returned, "c went after the POST")
    with open(t.path("bg2.out")) as f:
        out = f.read()
    summary = json.loads(out.splitlines()[-1])
    equal((summary["sent"], summary["unsubscribed"], summary["not_attempted"]), (2, 1, 0),
          f"sent, unsubscribed, not attempted in {out!r}")


class Poster:
    """POSTs one-click unsubscribes from many threads against whichever
    herald serve is current (a restart changes the port), each until it
    is answered 200; records when each answer came and how many tries."""

    def __init__(self, srv):
        self.srv = srv
        self.lock = threading.Lock()
        self.done = {}        # addr -> time.time() the 200 was read
        self.tries = {}       # addr -> attempts

    def post(self, addr):
        n = 0
        while True:
            n += 1
            with self.lock:
                port = self.srv.port
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", unsub_path(addr), "List-Unsubscribe=One-Click",
                          {"Content-Type": "application/x-www-form-urlencoded"})
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    with self.lock:
                        self.done[addr] = time.time()
                        self.tries[addr] = n
                    return
                expect(r.status == 503, f"POST for {addr}: {r.status}")
            except (OSError, http.client.HTTPException):
                pass          # killed under us: try again on the new one
            time.sleep(0.05)

    def run(self, addrs, clients):
        q = list(addrs)
        qlock = threading.Lock()

        def worker():
            while True:
                with qlock:
                    if not q:
                        return
                    a = q.pop()
                self.post(a)
        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for th in threads:
            th.start()
        return threads


@SUITE.test("load: 1,000 one-click POSTs from 50 clients during a send to 5,000, serve killed -9 and restarted: "
            "nobody mailed after their POST returned, every POST recorded, nothing lost")
def test_load_send_and_kill(t):
    n, posts = 5000, 1000
    readers = [f"r{i:05d}@example.net" for i in range(n)]
    t.post()
    t.subscribers(csv(*(f"{a},R{i}" for i, a in enumerate(readers))))
    smtp = t.server()
    web_config(t, smtp, changes={"smtp": {"url": smtp.url(), "starttls": "never", "timeout": 10,
                                          "connections": 4}})
    srv = Serve(t)
    rnd = random.Random(13)
    chosen = rnd.sample(readers, posts)
    sender = t.popen("send", t.path(f"{SLUG}.md"), "--rate", "400/s")
    deadline = time.monotonic() + 20
    while not smtp.envelopes():
        expect(time.monotonic() < deadline and sender.poll() is None, "the send did not start")
        time.sleep(0.05)
    poster = Poster(srv)
    threads = poster.run(chosen, 50)
    while len(poster.done) < posts // 3:
        time.sleep(0.01)
    srv.proc.kill()                       # kill -9 in the middle of the load
    srv.proc.wait()
    killed_at = len(poster.done)
    new = Serve(t)
    with poster.lock:
        srv.port = new.port
    for th in threads:
        th.join(120)
    equal(len(poster.done), posts, "POSTs answered")
    send_code = sender.wait(300)
    equal(send_code, 0, "send exit")
    equal(new.stop(), 0, "serve exit")
    log(f"# killed after {killed_at} answers; {sum(v > 1 for v in poster.tries.values())} POSTs retried")
    # Nobody is handed to the relay after their POST returned.
    rcpt_times = {}
    for txn in smtp.transactions():
        for r in txn["rcpts"]:
            rcpt_times.setdefault(r["addr"], []).append(r["time"])
    late = [(a, max(rcpt_times[a]) - poster.done[a]) for a in chosen
            if a in rcpt_times and max(rcpt_times[a]) > poster.done[a]]
    equal(late, [], "readers given to the relay after their POST returned")
    spared = [a for a in chosen if a not in rcpt_times]
    log(f"# {len(spared)} of {posts} unsubscribed before the send reached them")
    expect(len(spared) >= 50, f"only {len(spared)} POSTs came before their reader's turn: the test proves little")
    # Everyone else got exactly one message.
    got = smtp.received()
    equal(len(got), len(set(got)), "nobody got two")
    equal(sorted(got), sorted(set(readers) - set(spared)), "who got the issue")
    # Every POST is in list.log: once, or once per try when a try was cut off by the kill.
    counts = {}
    for line in listlog(t):
        equal(line[1], "unsubscribe", "action")
        counts[line[2]] = counts.get(line[2], 0) + 1
    for a in chosen:
        expect(1 <= counts.get(a, 0) <= poster.tries[a], f"{a}: {counts.get(a, 0)} lines for {poster.tries[a]} tries")
    equal(set(counts), set(chosen), "addresses in list.log")
    status = list_status(t)
    missing = sorted(set(chosen) - {a for a, s in status.items() if s == "unsubscribed"})
    equal(missing, [], "in list.log, not unsubscribed in the list")
    equal(sum(s == "unsubscribed" for s in status.values()), posts, "unsubscribed in the list")


def archive_world(t, server):
    """Three posts: one sent (with {{web_url}} in it), one not yet sent,
    one sent but `archive: false`."""
    import integration_quality as q
    os.makedirs(t.path("posts", "images"), exist_ok=True)
    with open(t.path("posts", "images", "map.png"), "wb") as f:
        f.write(q.png_bytes(40, 30))
    t.write("posts/2026-11-01-sent.md", "---\nsubject: Leaves & <mulch>\ndate: 2026-11-01 08:00\n"
            "---\nHi {{name|neighbour}}, this is {{email}}'s copy.\n\n"
            "Read it on the web: {{web_url}}\n\n![a map](https://example.org/map.png)\n\n"
            "![the local map](images/map.png)\n")
    t.write("posts/2026-11-08-later.md", "---\nsubject: Not yet\ndate: 2026-11-08 08:00\n---\nSoon.\n")
    t.write("posts/2026-11-15-private.md", "---\nsubject: Members only\ndate: 2026-11-15 08:00\n"
            "archive: false\n---\nHush.\n")
    t.subscribers(csv("ann@example.net,Ann", "bob@example.net,Bob"))
    conf = web_config(t, server, {"base_url": "https://news.example.org", "archive": True,
                                  "posts": "posts"})
    for post in ("2026-11-01-sent", "2026-11-15-private"):
        r = t.send(post=t.path("posts", post + ".md"))
        equal(r.code, 0, f"send {post}: {r.err}")
    return conf


def check_issue_page(html_text, where):
    expect("Hi neighbour, this is" in html_text, f"{where}: not merged for nobody: {html_text}")
    for private in ("ann@example.net", "bob@example.net", "Ann", "token", token("ann@example.net")):
        expect(private not in html_text, f"{where}: {private!r} on the page")
    expect("Leaves &amp; &lt;mulch&gt;" in html_text, f"{where}: title not escaped")
    expect("https://news.example.org/archive/2026-11-01-sent" in html_text, f"{where}: {{{{web_url}}}}")


def check_feed(xml_text, where):
    import xml.etree.ElementTree as ET
    a = "{http://www.w3.org/2005/Atom}"
    feed = ET.fromstring(xml_text)
    equal(feed.tag, a + "feed", f"{where}: root")
    for el in ("title", "id", "updated", "author"):
        expect(feed.find(a + el) is not None, f"{where}: feed lacks <{el}>")
    entries = feed.findall(a + "entry")
    equal([e.find(a + "title").text for e in entries], ["Leaves & <mulch>"], f"{where}: entries")
    e = entries[0]
    equal(e.find(a + "id").text, "https://news.example.org/archive/2026-11-01-sent", f"{where}: id")
    expect(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", e.find(a + "updated").text),
           f"{where}: updated is not RFC 3339")
    equal(e.find(a + "link").get("href"), "https://news.example.org/archive/2026-11-01-sent",
          f"{where}: link")


@SUITE.test("archive: /archive/ lists the issues whose sending began (not the unsent one, not "
            "archive: false), each page merged for nobody, {{web_url}} its address, a valid Atom "
            "feed; herald archive OUTDIR writes the same files")
def test_archive(t):
    smtp = t.server()
    archive_world(t, smtp)
    mails = smtp.messages()
    expect(any(b"https://news.example.org/archive/2026-11-01-sent" in m.raw for m in mails),
           "{{web_url}} is not the archive page in the mail")
    srv = Serve(t)
    status, hdr, body = srv.request("GET", "/archive/")
    equal(status, 200, "index")
    expect('href="/archive/2026-11-01-sent"' in body, f"index: {body}")
    for absent in ("Not yet", "Members only", "2026-11-08-later", "2026-11-15-private"):
        expect(absent not in body, f"index shows {absent!r}")
    expect("img-src https:" in hdr["content-security-policy"] and "script-src" not in
           hdr["content-security-policy"], hdr["content-security-policy"])
    status, hdr, page = srv.request("GET", "/archive/2026-11-01-sent")
    equal(status, 200, "issue page")
    check_issue_page(page, "served page")
    for slug in ("2026-11-08-later", "2026-11-15-private", "..%2f..%2fetc%2fpasswd", "nope"):
        equal(srv.request("GET", "/archive/" + slug)[0], 404, f"/archive/{slug}")
    expect('src="/archive/2026-11-01-sent/1-map.png"' in page, f"local image not linked: {page}")
    expect("cid:" not in page, "a cid: link left on the web page")
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("GET", "/archive/2026-11-01-sent/1-map.png")
    r = c.getresponse()
    equal((r.status, r.getheader("Content-Type")), (200, "image/png"), "the image")
    with open(t.path("posts", "images", "map.png"), "rb") as f:
        equal(r.read(), f.read(), "image bytes")
    c.close()
    for bad in ("/archive/2026-11-01-sent/2-map.png", "/archive/2026-11-01-sent/..%2fsent.md",
                "/archive/2026-11-01-sent/", "/archive/2026-11-08-later/1-map.png"):
        equal(srv.request("GET", bad)[0], 404, bad)
    status, hdr, feed = srv.request("GET", "/archive/feed.xml")
    equal(status, 200, "feed")
    equal(hdr["content-type"], "application/atom+xml; charset=utf-8", "feed type")
    check_feed(feed, "served feed")
    equal(srv.request("POST", "/archive/", body="x")[0], 405, "POST to the archive")
    equal(srv.stop(), 0, "serve exit")
    r = t.herald("archive", t.path("out"))
    equal(r.code, 0, f"herald archive: {r.err}")
    expect("1 issue, index.html and feed.xml" in r.out, r.out)
    with open(t.path("out", "2026-11-01-sent", "index.html")) as f:
        static = f.read()
    check_issue_page(static, "static page")
    expect('src="1-map.png"' in static, "static page: the image beside it")
    equal(sorted(os.listdir(t.path("out", "2026-11-01-sent"))), ["1-map.png", "index.html"],
          "static issue files")
    with open(t.path("out", "feed.xml")) as f:
        check_feed(f.read(), "static feed")
    with open(t.path("out", "index.html")) as f:
        expect('href="2026-11-01-sent/"' in f.read(), "static index links")
    equal(sorted(os.listdir(t.path("out"))), ["2026-11-01-sent", "feed.xml", "index.html"], "files")


@SUITE.test("archive without base_url: each entry's tag: id is dated by its issue's year "
            "(2025 and 2026, not a year written into herald), the feed's by its oldest issue's")
def test_archive_tag_ids(t):
    import xml.etree.ElementTree as ET
    smtp = t.server()
    t.write("posts/2025-06-01-old.md", "---\nsubject: Old\ndate: 2025-06-01 08:00\n---\nHi.\n")
    t.write("posts/2026-11-01-new.md", "---\nsubject: New\ndate: 2026-11-01 08:00\n---\nHi.\n")
    t.subscribers(csv("ann@example.net,Ann"))
    web_config(t, smtp, {"base_url": None, "archive": True, "posts": "posts"})
    for post in ("2025-06-01-old", "2026-11-01-new"):
        r = t.send(post=t.path("posts", post + ".md"))
        equal(r.code, 0, f"send {post}: {r.err}")
    r = t.herald("archive", t.path("out"))
    equal(r.code, 0, f"herald archive: {r.err}")
    a = "{http://www.w3.org/2005/Atom}"
    with open(t.path("out", "feed.xml")) as f:
        feed = ET.fromstring(f.read())
    equal(feed.find(a + "id").text, "tag:example.org,2025:herald/feed", "feed id")
    equal([e.find(a + "id").text for e in feed.findall(a + "entry")],
          ["tag:example.org,2026:herald/2026-11-01-new", "tag:example.org,2025:herald/2025-06-01-old"],
          "entry ids")


@SUITE.test("archive pages in Chromium: the index and an issue at 390 and 1200 px, light and "
            "dark (no sideways scroll, contrast >= 4.5), screenshotted from the live server")
def test_archive_in_chromium(t):
    import integration_quality as q
    if not q.CHROMIUM:
        raise Skip("chromium is not installed (deps/test-quality.txt)")
    archive_world(t, t.server())
    srv = Serve(t)
    judge_pages(t, srv, {"archive": ("GET", "/archive/", None),
                         "issue": ("GET", "/archive/2026-11-01-sent", None)})
    srv.stop()


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
