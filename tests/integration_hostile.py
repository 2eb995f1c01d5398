#!/usr/bin/python3
"""herald fed hostile input (issue 6): subscriber fields with CR/LF/NUL,
1 MB fields, invalid UTF-8, odd addresses (quotes, comments, IDN, IP
literals), a 10 MB post, 10,000 nested quotes and list items, raw HTML
with <script>, merge-field values holding "}}" and "{{...}}".

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_hostile.py [PATTERN...]

Each input gets a clear error (FILE:LINE: reason, one line) or correct
output; none crashes herald, hangs it, or puts a header into a message.
Messages go to tests/faultsmtp.py, which takes any address it is given,
so what herald sends is exactly what the server records.
"""

import email
import email.header
import email.policy
import os
import re
import sys
import time

from harness import (
    EX_DATAERR, EX_OK, Suite, equal, expect)

SUITE = Suite()
test = SUITE.test

CONFIG = {"smtp": {"timeout": 10}, "retry": {"attempts": 1}}


def csv_bytes(*rows, header=b"email,name"):
    return b"\n".join((header,) + tuple(
        r.encode() if isinstance(r, str) else r for r in rows)) + b"\n"


def world(t, rows, header=b"email,name", post_extra="", config=None, srv=True):
    s = t.fault_server() if srv else None
    t.write("subs.csv", csv_bytes(*rows, header=header))
    t.post(post_extra)
    cfg = dict(CONFIG)
    cfg.update(config or {})
    t.config(s, cfg)
    return s


def clean_stderr(r):
    """Every line herald printed is one readable line: no control bytes
    (a hostile field must not reach the terminal raw), none huge."""
    for line in r.err.splitlines():
        expect(len(line) < 1200, f"stderr line of {len(line)} bytes")
        expect(not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line),
               f"control bytes on stderr: {line!r}")


def headers_of(raw):
    head = raw.split(b"\r\n\r\n", 1)[0]
    return email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)


def no_injection(mails, *names):
    """No message carries a header the hostile input tried to add, and
    every header line is a proper header or a folded continuation."""
    for m in mails:
        head = m.raw.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            expect(re.match(rb"^[A-Za-z0-9-]+: |^[ \t]", line),
                   f"not a header line in message {m.seq}: {line[:120]!r}")
            expect(len(line) <= 998, f"header line of {len(line)} octets")
        h = headers_of(m.raw)
        for n in names:
            equal(h.get_all(n), None, f"{n}: header in message {m.seq}")
        expect(b"\r\n" in m.raw and not re.search(rb"[^\r]\n", m.raw),
               f"bare LF in message {m.seq}")


# ---- subscriber fields --------------------------------------------------

@test("CR/LF in the name, the address or a subject field, NUL anywhere: "
      "that row skipped with FILE:LINE: reason, no header injected, others sent")
def test_crlf_nul_fields(t):
    rows = [
        b"ok1@example.net,Ann",
        b'evil1@example.net,"Eve\r\nBcc: victim@example.com"',
        b'"evil2@example.net\nBcc: victim@example.com",Eve',
        b"evil3@example.net,Eve\x00Bcc: x@example.com",
        b'evil4@example.net,"Eve",\"Paris\r\nX-Injected: yes\"',
        b"ok2@example.net,Bob",
    ]
    s = t.fault_server()
    t.write("subs.csv", b"email,name,city\n" + b"\n".join(
        r if r.count(b",") >= 2 else r + b"," for r in rows) + b"\n")
    t.post(name="issue-1.md")
    post = open(t.path("issue-1.md"), encoding="utf-8").read()
    t.write("issue-1.md", post.replace("subject: ", "subject: {{city|Home}}: ", 1))
    t.config(s, CONFIG)
    r = t.send()
    equal(r.code, EX_OK, "exit code (bad rows are warnings)")
    clean_stderr(r)
    equal(sorted(s.received()), ["ok1@example.net", "ok2@example.net"], "sent")
    subs = t.path("subs.csv")
    # evil1's quoted CRLF spans lines 3-4, so evil2 starts on line 5
    for line, why in ((3, "line break in the name"), (5, "line break in the email"),
                      (7, "NUL byte in the name"), (8, 'line break in field "city"')):
        expect(re.search(rf"{re.escape(subs)}:{line}: [^\n]*{why}", r.err),
               f"no '{subs}:{line}: ...{why}' in {r.err!r}")
    no_injection(s.messages(), "Bcc", "X-Injected")
    for m in s.messages():
        expect(b"victim@example.com" not in m.raw, "injected address in a message")


@test("1 MB fields: a 1 MB address and a 1 MB name (bound for To:) are refused "
      "in one line each, a 1 MB body field is sent correctly")
def test_megabyte_fields(t):
    big = "x" * (1 << 20)
    s = world(t, [f"{big}@example.net,Ann,", f"big1@example.net,{big},",
                  f"big2@example.net,Bob,{big}"],
              header=b"email,name,note",
              post_extra="\nNote: {{note}}\n")
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    clean_stderr(r)
    expect(re.search(r"subs\.csv:2: invalid address .*(longer|local part)", r.err),
           f"no clear error for the 1 MB address: {r.err[:300]!r}")
    expect(re.search(r"subs\.csv:3: the name field is 1048576 bytes; at most 256 \(it goes into "
                     r"the To header\)", r.err), f"no clear error for the 1 MB name: {r.err[:300]!r}")
    got = {m.rcpt_tos[0]: m for m in s.messages()}
    equal(sorted(got), ["big2@example.net"], "sent")
    no_injection(got.values())
    msg = email.message_from_bytes(got["big2@example.net"].raw,
                                   policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    expect(big in text.replace("\n", ""), "the 1 MB field is not in the text part")


@test("invalid UTF-8 in the name (a header) refuses that row; in a body "
      "field it is refused or repaired, never sent raw")
def test_invalid_utf8(t):
    s = world(t, [b"ann@example.net,Ann,ok", b"bad1@example.net,Bad\xc3\x28Name,x",
                  b"bad2@example.net,Bob,over\xe0\x80\xaflong",
                  b"bad3@example.net,Cyd,\xed\xa0\x80surrogate"],
              header=b"email,name,note", post_extra="\nNote: {{note}}\n")
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    clean_stderr(r)
    expect(re.search(r"subs\.csv:3: .*(UTF-8|utf-8)", r.err),
           f"no clear error for line 3: {r.err!r}")
    for m in s.messages():
        msg = email.message_from_bytes(m.raw, policy=email.policy.default)
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                part.get_payload(decode=True).decode("utf-8")  # strict: raises
    expect("ann@example.net" in s.received(), "the good row was not sent")
    expect("bad1@example.net" not in s.received(), "a header with invalid UTF-8 was sent")


ACCEPT = ["plain@example.net", "o'brien+tag@example.net",
          '"john.q"@example.net', "joy@[127.0.0.1]", "joy@[IPv6:2001:db8::1]",
          "joy@xn--bcher-kva.example"]
REFUSE = [("joy(comment)@example.net", "invalid character"),
          ('"john q"@example.net', "quoted local part"),
          ("joy@bücher.example", "non-ASCII"),
          ("joy@[999.1.1.1]", "IPv4"),
          ("joy@[IPv6:zz::1]", "IPv6"),
          ("Joy <joy@example.net>", "space"),
          ("joy@example.net, eve@example.com", "more than one @"),
          ('"a\\"b"@example.net', None),
          ("joy@-example.net", "hyphen"),
          ("joy..x@example.net", "consecutive dots")]


@test("addresses: quoted local parts, IP literals, punycode accepted and "
      "sent to exactly that address; comments, spaces, raw IDN, bad "
      "literals, lists refused with a reason")
def test_odd_addresses(t):
    rows = [f'"{a.replace(chr(34), chr(34) * 2)}",R{i}' for i, a in
            enumerate(ACCEPT + [x for x, _ in REFUSE], 1)]
    s = world(t, rows)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    clean_stderr(r)
    refused_ok = [x for x, why in REFUSE if why is None]
    got = s.received()
    equal(sorted(got), sorted(ACCEPT + [a for a in refused_ok if a in got]),
          "RCPT TO of the messages sent")
    for i, (a, why) in enumerate(REFUSE, len(ACCEPT) + 2):
        if why is None:
            continue
        expect(re.search(rf"subs\.csv:{i}: invalid address .*{re.escape(why)}", r.err),
               f"line {i} ({a!r}): no error naming {why!r} in {r.err!r}")
    for m in s.messages():
        to = headers_of(m.raw)["To"]
        expect(m.rcpt_tos[0] in to, f"To: {to!r} does not hold {m.rcpt_tos[0]}")
    no_injection(s.messages())


@test("--dry-run names files after odd addresses safely (no '/' or control "
      "character in a file name)")
def test_dry_run_names(t):
    world(t, ["a/b@example.net,Slash", "joy@[127.0.0.1],Lit"], srv=False)
    out = t.path("out")
    r = t.send("--dry-run", out)
    equal(r.code, EX_OK, "exit code")
    names = sorted(os.listdir(out))
    equal(len(names), 2, f"files: {names}")
    for n in names:
        expect("/" not in n and not re.search(r"[\x00-\x1f]", n), f"file name {n!r}")


@test("an address with a terminal escape is reported without the raw escape")
def test_escape_in_address(t):
    s = world(t, [b"ann@example.net,Ann", b"\x1b[31mred\x1b[0m@example.net,Red"])
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    clean_stderr(r)
    expect(re.search(r'subs\.csv:3: invalid address "\\x1b\[31mred', r.err),
           f"stderr: {r.err!r}")
    equal(s.received(), ["ann@example.net"], "sent")
    # a column name is a merge-field name: no escapes there either
    bad = t.write("badhead.csv", b"email,na\x1b[2Jme\nann@example.net,Ann\n")
    r = t.herald("subscribers", "check", bad)
    equal(r.code, EX_DATAERR, "exit code for a column name with ESC")
    clean_stderr(r)
    expect(re.search(r"badhead\.csv:1: control character 0x1b in the name of column 2",
                     r.err), f"stderr: {r.err!r}")


# ---- template fields ----------------------------------------------------

@test('merge values holding "}}", "{{email}}" and "{{unsubscribe_url}}" '
      "are printed as they are, never expanded again")
def test_braces_in_values(t):
    s = world(t, ['ann@example.net,"}} {{email}} {{unsubscribe_url}} {{",Paris}}'],
              header=b"email,name,city", post_extra="\nCity: {{city}}.\n")
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    (m,) = s.messages()
    msg = email.message_from_bytes(m.raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    expect("}} {{email}} {{unsubscribe_url}} {{" in text,
           f"name not literal in the text part: {text[:400]!r}")
    expect("City: Paris}}." in text, "city not literal in the text part")
    expect("}} {{email}} {{unsubscribe_url}} {{" in html, "name not literal in HTML")
    to = str(msg["To"])
    expect("}} {{email}}" in to, f"To: {to!r}")


# ---- posts --------------------------------------------------------------

def big_post(t, body, name="big.md"):
    return t.write(name, "---\nsubject: Big {{name}}\n---\n" + body)


@test("a post of 10 MB of text: sent whole to two readers (within the run's time limit)")
def test_ten_megabytes(t):
    para = ("All work and no play makes Jack a dull boy. " * 20 + "\n\n")
    body = para * (10 * (1 << 20) // len(para) + 1)
    s = world(t, ["ann@example.net,Ann", "bob@example.net,Bob"])
    post = big_post(t, body)
    r = t.herald("send", post)   # bounded by t.herald's time limit
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), ["ann@example.net", "bob@example.net"], "sent")
    m = s.messages()[0]
    expect(len(m.raw) > 20 * (1 << 20), f"message is only {len(m.raw)} bytes")
    msg = email.message_from_bytes(m.raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    equal(text.count("dull boy"), body.count("dull boy"), "sentences in the text part")


def nested(t, body, what, max_line=400):
    """max_line: the longest text line allowed, unless a word that long
    makes it (such a word gets a line of its own)."""
    s = world(t, ["ann@example.net,Ann"])
    post = big_post(t, body)
    # No clock: a quadratic blow-up runs into t.herald's own time limit.
    r = t.herald("send", post)
    equal(r.code, EX_OK, "exit code")
    (m,) = s.messages()
    msg = email.message_from_bytes(m.raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    # past 32 levels the width left is a few columns: words, not phrases
    words = text.split()
    expect("innermost" in words and "words" in words,
           f"{what}: the innermost text is lost")
    for line in text.splitlines():
        # Over max_line only for a word that long, which gets a line of
        # its own (a link's " [N]" is bound to its text, never broken off).
        words = re.sub(r" (\[\d+\])", r"\1", line).split()
        expect(len(line) <= max_line or len(words) == 1,
               f"{what}: text line of {len(line)} characters in {len(words)} words")
    return msg


@test("10,000 nested block quotes: sent, the text part keeps the words "
      "(no stack overflow, no quadratic blow-up)")
def test_deep_quotes(t):
    msg = nested(t, "> " * 10000 + "innermost words\n", "10,000 quotes")
    html = msg.get_body(("html",)).get_content()
    expect("innermost words" in html, "HTML lost the text")
    equal(html.count("<blockquote>"), 10000, "blockquotes in the HTML part")


@test("10,000 nested list items (and 5,000 nested emphasis/links): sent, text kept")
def test_deep_lists(t):
    body = "- " * 10000 + "innermost words\n\n" + "*a " * 5000 + "x" + " b*" * 5000 + \
        "\n\n" + "[" * 3000 + "y" + "](https://e.org/)" * 3000 + "\n"
    # the unmatched brackets make one 54 KB word: it gets a line of its own
    nested(t, body, "10,000 list items")


@test("raw HTML with <script>: dropped by default; unsafe_html = true "
      "keeps the HTML but the tagfilter still disarms <script>")
def test_raw_html(t):
    extra = ('\n<div class="note"><b>kept?</b></div>\n\n'
             'Inline <span style="color:red">span</span> and '
             '<script>alert("inline")</script>.\n\n'
             '<script>\nalert("block");\n</script>\n\n'
             '<iframe src="https://evil.example/"></iframe>\n')
    s = world(t, ["ann@example.net,Ann"], post_extra=extra)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    (m,) = s.messages()
    html = email.message_from_bytes(m.raw, policy=email.policy.default) \
        .get_body(("html",)).get_content()
    expect("<script" not in html.lower() and "<iframe" not in html.lower(),
           "raw <script>/<iframe> reached the HTML part")
    expect('<div class="note">' not in html, "raw HTML kept without unsafe_html")
    # unsafe_html = true
    s2 = t.fault_server()
    t.config(s2, dict(CONFIG, unsafe_html=True))
    r = t.send("--force")
    equal(r.code, EX_OK, "exit code with unsafe_html")
    (m,) = s2.messages()
    html = email.message_from_bytes(m.raw, policy=email.policy.default) \
        .get_body(("html",)).get_content()
    expect('<div class="note"><b>kept?</b></div>' in html, "raw HTML dropped with unsafe_html")
    expect('<span style="color:red">span</span>' in html, "inline HTML dropped")
    expect("<script" not in html.lower() and "<iframe" not in html.lower(),
           "tagfilter did not disarm <script>/<iframe>")
    expect("&lt;script" in html, "no disarmed &lt;script in the HTML part")
    # a typo'd type is a config error, not silently false
    t.config(s2, dict(CONFIG, unsafe_html="yes"))
    r = t.send("--force")
    equal(r.code, 78, "exit code for unsafe_html = \"yes\"")
    expect(re.search(r"herald\.conf:\d+: unsafe_html: expected true or false", r.err),
           f"stderr: {r.err!r}")


@test("a post with a NUL byte, and one with an unclosed front matter: "
      "one-line error, exit 65, nothing sent")
def test_broken_posts(t):
    s = world(t, ["ann@example.net,Ann"])
    p1 = t.write("nul.md", b"---\nsubject: x\n---\nbody\x00more\n")
    p2 = t.write("open.md", "---\nsubject: x\n" + "# comment\n" * 1000)
    for p, why in ((p1, "NUL byte"), (p2, "not closed")):
        r = t.herald("send", p)
        equal(r.code, EX_DATAERR, f"exit code for {os.path.basename(p)}")
        clean_stderr(r)
        expect(re.search(rf"^herald: {re.escape(p)}(:\d+)?: .*{why}", r.err, re.M),
               f"stderr: {r.err!r}")
    equal(s.received(), [], "sent")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
