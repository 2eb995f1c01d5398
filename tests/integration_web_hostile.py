#!/usr/bin/python3
"""herald serve under hostile clients and hostile input: slow and many
connections from one client (each bound to its own 127.0.0.x address:
all of 127.0.0.0/8 is loopback on Linux), the total limit and trusted
proxies, control characters in what the archive shows, what a signup may
write into the list, and the repeated one-click. The server is the real
`herald serve` on a free loopback port; what it kept open is seen from
the client sockets, what it stored from the CSV and list.log."""

import csv as csvmod
import os
import re
import select
import socket
import sys
import time
import http.client
import urllib.parse
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Suite, equal, expect, SLUG  # noqa: E402
from integration_web import (Serve, web_config, one_click, listlog, list_status,  # noqa: E402
                             READERS, signup_world, wait_mails, unsub_path)

SUITE = Suite()


def open_from(src, port, n, first=b""):
    """n connections from address src, each having sent first."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(first)
        except OSError:
            pass  # closed by the server already
        socks.append(s)
    return socks


GONE = set()  # the sockets found closed (a socket takes no attributes)


def closed_by_server(s):
    """True once the server has closed s (EOF or reset), without blocking."""
    if s in GONE:
        return True
    p = select.poll()
    p.register(s, select.POLLIN)
    if not p.poll(0):
        return False
    try:
        gone = s.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        gone = False
    except OSError:
        gone = True
    if gone:
        GONE.add(s)
    return gone


def wait_closed(socks, want, seconds):
    """Polls until at least want of socks are closed by the server, or
    seconds pass; returns how many are."""
    deadline = time.monotonic() + seconds
    while True:
        n = sum(closed_by_server(s) for s in socks)
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def warnings(srv):
    return [l for l in srv.output().splitlines() if l.startswith("herald: ")]


def request_lines(srv, client):
    return [l for l in srv.output().splitlines()
            if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ " + re.escape(client) + " ", l)]


@SUITE.test("1,200 slow connections from one client: 16 kept, the rest refused; a trickled request "
            "is closed after 10 s; another reader's one-click is answered within 2 s and applied; "
            "one log line about that client")
def test_slow_flood(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    # The request line whole, then nothing: its headers are what trickles.
    socks = open_from("127.0.0.2", srv.port, 1200, b"GET /unsubscribe HTTP/1.1\r\n")
    # A reader from another address unsubscribes meanwhile.
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=2)
    c.request("POST", unsub_path("joy@example.net"), body="List-Unsubscribe=One-Click",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    equal(r.status, 200, "the reader's one-click, answered within 2 s")
    r.read()
    c.close()
    equal(list_status(t)["joy@example.net"], "unsubscribed", "the list")
    equal([l[1:] for l in listlog(t)], [["unsubscribe", "joy@example.net", "web"]], "list.log")
    closed = wait_closed(socks, 1200 - 16, 8)
    equal(closed, 1200 - 16, "connections of 127.0.0.2 the server closed at once")
    kept = [s for s in socks if not closed_by_server(s)]
    equal(len(kept), 16, "connections of 127.0.0.2 kept")
    # Trickle one header byte per second on each.
    trickle = b"X-Slow: " + b"a" * 40
    deadline = time.monotonic() + 25
    i = 0
    while not all(closed_by_server(s) for s in kept) and time.monotonic() < deadline:
        for s in kept:
            if not closed_by_server(s):
                try:
                    s.send(trickle[i % len(trickle):i % len(trickle) + 1])
                except OSError:
                    GONE.add(s)
        i += 1
        time.sleep(1)
    equal(sum(closed_by_server(s) for s in kept), 16,
          "trickling connections the server closed (its request deadline)")
    for s in socks:
        s.close()
    equal(srv.stop(), 0, "exit")
    about = [l for l in warnings(srv) if "127.0.0.2" in l]
    equal(len(about), 1, f"log lines about 127.0.0.2: {about}")
    expect("has 16 connections open" in about[0], about[0])
    expect(len(warnings(srv)) <= 4, f"warnings in all: {warnings(srv)}")
    equal(request_lines(srv, "127.0.0.2"), [], "request log lines of the refused and closed")
    equal(len(request_lines(srv, "127.0.0.1")), 1, "the reader's request line")


@SUITE.test("web.connections in all and web.connections_per_client: the cap is per address, "
            "a trusted proxy is held to the total only; one line a minute about the limit")
def test_total_limit(t):
    t.subscribers(READERS)
    web_config(t, web={"connections": 30, "connections_per_client": 4,
                       "trusted_proxies": ["127.0.0.5"]})
    srv = Serve(t)
    line = b"GET /unsubscribe HTTP/1.1\r\n"
    a = open_from("127.0.0.2", srv.port, 6, line)
    equal(wait_closed(a, 2, 5), 2, "of 6 from 127.0.0.2, closed")
    proxy = open_from("127.0.0.5", srv.port, 20, line)
    equal(wait_closed(proxy, 1, 0.5), 0, "of 20 from the trusted proxy, closed")
    b = open_from("127.0.0.3", srv.port, 4, line)     # 28 open
    c = open_from("127.0.0.4", srv.port, 4, line)     # 2 of these fit
    equal(wait_closed(c, 2, 5), 2, "of 4 from 127.0.0.4 at the limit of 30, closed")
    late = open_from("127.0.0.6", srv.port, 3, line)
    equal(wait_closed(late, 3, 5), 3, "from 127.0.0.6 once all 30 are open, closed")
    equal(sum(closed_by_server(s) for s in a + proxy + b + c), 4, "the 30 others still open")
    for s in a + proxy + b + c + late:
        s.close()
    equal(srv.stop(), 0, "exit")
    full = [l for l in warnings(srv) if "(web.connections) are in use" in l]
    equal(len(full), 1, f"lines about the limit: {full}")
    capped = [l for l in warnings(srv) if "(web.connections_per_client)" in l]
    equal(len(capped), 1, f"lines about the per-client cap: {capped}")
    expect("127.0.0.2 has 4 connections open" in capped[0], capped[0])
    equal([l for l in srv.output().splitlines() if re.match(r"\d{4}-\d\d-\d\dT", l)], [],
          "request log lines (no connection got past its request line)")


# ---- item 8: smaller holes -------------------------------------------------

@SUITE.test("a control character in a post's subject: the Atom feed and the pages parse (it is "
            "left out), and check warns at its FILE:LINE")
def test_feed_controls(t):
    smtp = t.server()
    os.makedirs(t.path("posts"), exist_ok=True)
    post = t.write("posts/2026-11-01-odd.md", "---\nsubject: Bell\x07 and \x1b[31mred\x7f & co\n"
                   "date: 2026-11-01 08:00\npreheader: a\x01b\n---\nHello.\n")
    t.subscribers(READERS)
    web_config(t, smtp, {"base_url": "https://news.example.org", "archive": True, "posts": "posts"})
    r = t.send(post=post)
    equal(r.code, 0, f"send: {r.err}")
    srv = Serve(t)
    status, _, feed = srv.request("GET", "/archive/feed.xml")
    equal(status, 200, "feed")
    a = "{http://www.w3.org/2005/Atom}"
    root = ET.fromstring(feed)   # a control character makes this raise
    equal([e.find(a + "title").text for e in root.findall(a + "entry")], ["Bell and [31mred & co"],
          "the entry's title, without its controls")
    for path in ("/archive/", "/archive/2026-11-01-odd"):
        status, _, page = srv.request("GET", path)
        equal(status, 200, path)
        expect(not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page), f"{path}: a control: {page!r}")
        expect("Bell and [31mred &amp; co" in page, f"{path}: the title: {page!r}")
    srv.stop()
    r = t.herald("archive", t.path("out"))
    equal(r.code, 0, f"herald archive: {r.err}")
    with open(t.path("out", "feed.xml"), encoding="utf-8") as f:
        ET.fromstring(f.read())
    r = t.herald("check", post)
    expect(f"{post}:2: warning: subject: holds the control character U+0007" in r.err, r.err)
    expect(f"{post}:4: warning: preheader: holds the control character U+0001" in r.err, r.err)


def signup(srv, email, name):
    return srv.request("POST", "/subscribe", urllib.parse.urlencode({"email": email, "name": name}),
                       {"Content-Type": "application/x-www-form-urlencoded"})


@SUITE.test("signup: names with ESC, DEL, C1, TAB or a bidi override and address literals are "
            "refused (400, no mail); a name starting with = + - @ is stored behind a quote")
def test_signup_input(t):
    smtp, srv = signup_world(t)
    for name in ("Eve\x1b[2J", "Eve\x7f", "Eve\u0085", "Eve\tTab", "\u202egpj.exe", "Eve\u2066x\u2069"):
        status, _, body = signup(srv, "eve@example.net", name)
        equal(status, 400, f"name {name!r}")
        expect("The name is too long or holds characters we cannot use." in body, body)
    for addr in ("x@[127.0.0.1]", "x@[IPv6:::1]", "=1+2@example.net", "-x@example.net"):
        status, _, body = signup(srv, addr, "X")
        equal(status, 400, f"address {addr!r}")
        expect("Please use an address at a domain name" in body, body)
    status, _, _ = signup(srv, "calc@example.net", "=HYPERLINK(\"http://x.example\",\"y\")")
    equal(status, 200, "a formula-like name")
    status, _, _ = signup(srv, "ok@example.net", "\u05e9\u05dc\u05d5\u05dd Zo\u00eb")
    equal(status, 200, "a Hebrew name")
    mails = wait_mails(smtp, 2)
    equal(sorted(m.rcpt_tos[0] for m in mails), ["calc@example.net", "ok@example.net"],
          "confirmation mails: only the two accepted")
    for m in mails:
        link = re.findall(r"http://127\.0\.0\.1/confirm\?\S+", m.msg.get_body(("plain",)).get_content())[0]
        u = urllib.parse.urlsplit(link)
        status, _, _ = srv.request("POST", f"{u.path}?{u.query}", "confirm=yes",
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        equal(status, 200, f"confirm {m.rcpt_tos[0]}")
    srv.stop()
    with open(t.path("subs.csv"), newline="", encoding="utf-8") as f:
        rows = {r["email"]: r["name"] for r in csvmod.DictReader(f)}
    equal(rows.get("calc@example.net"), "'=HYPERLINK(\"http://x.example\",\"y\")", "the formula name, defused")
    equal(rows.get("ok@example.net"), "\u05e9\u05dc\u05d5\u05dd Zo\u00eb", "the other name as given")
    expect("eve@example.net" not in rows, "a refused signup in the list")


@SUITE.test("a repeated one-click for an address unsubscribed already: 200, no second list.log line, "
            "the list not read; a line another process added still counts; after a restart once more")
def test_repeated_one_click(t):
    t.subscribers(READERS)
    web_config(t)
    srv = Serve(t)
    equal(one_click(srv, "joy@example.net")[0], 200, "first POST")
    equal(len(listlog(t)), 1, "list.log after the first")
    # A list that cannot be read: a pass over it would say so.
    t.write("subs.csv", "not,a,list\n")
    for addr in ("joy@example.net", "JOY@example.net", "joy@example.net"):
        status, _, body = one_click(srv, addr)
        equal(status, 200, f"again: {addr}")
        expect("is unsubscribed and gets no more of these mails" in body, body)
    equal(len(listlog(t)), 1, "list.log after three more")
    expect('no "email" column' not in srv.output(), f"the list was read: {srv.output()}")
    # Another writer (a second serve) records a signup: the next one-click is new.
    with open(t.path("state", "list.log"), "a") as f:
        f.write("2026-12-01T00:00:00Z\tsubscribe\tjoy@example.net\tweb\tJoy\n")
    t.subscribers(READERS)
    equal(one_click(srv, "joy@example.net")[0], 200, "after the signup")
    equal([l[1] for l in listlog(t)], ["unsubscribe", "subscribe", "unsubscribe"], "list.log")
    equal(list_status(t)["joy@example.net"], "unsubscribed", "the list")
    srv.stop()
    # After a restart a line may be one a killed serve never answered: the
    # first repeat is recorded again (the reader's retry is its answer),
    # the next ones are not.
    srv = Serve(t)
    for i in range(3):
        equal(one_click(srv, "joy@example.net")[0], 200, f"after a restart, {i + 1}")
    equal(len(listlog(t)), 4, "list.log after a restart and three repeats")
    srv.stop()


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
