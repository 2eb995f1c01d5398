#!/usr/bin/python3
"""herald's suite for posts as people write them: captions right below an
image, literal "{{" (the \\{{ escape; code spans and blocks unmerged),
merge-field errors that send, preview and check word alike at the post's
FILE:LINE, front-matter dates with a UTC offset, and what `send --due`
says about the posts it skips.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_posts.py [PATTERN...]

Mail goes to tests/smtpd.py and is read back with Python's email package;
the HTML part is walked with html.parser. The clock is set with
libfaketime (deps/test-faults.txt), preloaded with TZ=UTC. TAP on stdout,
a log on stderr (tests/harness.py).
"""

import calendar
import html.parser
import os
import sys
import time

from harness import (EX_DATAERR, EX_OK, Skip, Suite, csv, equal, expect)

SUITE = Suite()
READERS = csv("joy@example.org,Joy", "zoe@example.net,Zoë")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def front(subject="Notes", date="2026-11-30 08:00", extra=""):
    return (f"---\nsubject: {subject}\ndate: {date}\n"
            f"preheader: One line for the inbox\n{extra}---\n")


def world(t, post_body, changes=None, server=None, name="post.md", **fm):
    t.subscribers(READERS)
    t.config(server, changes)
    return t.write(name, front(**fm) + post_body)


def parts(mail):
    """(html, text) of a received multipart/alternative message."""
    got = {}
    for p in mail.msg.walk():
        if p.get_content_type() in ("text/html", "text/plain"):
            got[p.get_content_type()] = p.get_content()
    return got["text/html"].replace("\r\n", "\n"), got["text/plain"].replace("\r\n", "\n")


def sent(t, body, rcpt="joy@example.org", changes=None):
    """Sends a post of body to READERS: (post path, html, text) of what
    rcpt received."""
    srv = t.server()
    post = world(t, body, changes=changes, server=srv)
    equal(t.send(post=post).code, EX_OK, "send exit code")
    return (post, *parts(srv.by_rcpt()[rcpt]))


class Cells(html.parser.HTMLParser):
    """The text of each <td class=...> and <code>, and every <img>."""

    def __init__(self):
        super().__init__()
        self.stack, self.cells, self.imgs, self.codes = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append((a.get("src"), a.get("alt"), [s[0] for s in self.stack]))
        elif tag in ("td", "code"):
            self.stack.append([a.get("class", tag), ""])

    def handle_endtag(self, tag):
        if tag in ("td", "code") and self.stack:
            cls, text = self.stack.pop()
            (self.codes if cls == "code" else self.cells).append((cls, text.strip()))

    def handle_data(self, data):
        for s in self.stack:
            s[1] += data


def cells(html_text):
    c = Cells()
    c.feed(html_text)
    return c


def faketime(now, tz="UTC"):
    """Environment that runs herald at `now` (UTC, the clock running) with
    TZ=tz. An offset from the real clock, so TZ cannot shift it."""
    if not os.path.exists(FAKETIME_LIB):
        raise Skip("libfaketime is not installed")
    at = calendar.timegm(time.strptime(now, "%Y-%m-%d %H:%M:%S"))
    return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{at - time.time():+.0f}", "TZ": tz,
            "ASAN_OPTIONS": "detect_leaks=0:verify_asan_link_order=0"}


# ---- captions -----------------------------------------------------------

CAPTIONED = ("Hi {{name}},\n\n"
             "![Volunteers spreading leaves](https://example.org/leaf.jpg)\n"
             "*Saturday's crew. Photo: Priya Raman.*\n\n"
             "Unsubscribe: {{unsubscribe_url}}\n")


@SUITE.test("caption right below an image (no blank line): a caption cell in the HTML part, "
            "its own line under [image: ...] in the text part")
def test_caption_below(t):
    _, h, text = sent(t, CAPTIONED)
    c = cells(h)
    expect(("caption", "Saturday\u2019s crew. Photo: Priya Raman.") in c.cells,
           f"no caption cell in: {c.cells}")
    equal([(src, alt, within[-1]) for src, alt, within in c.imgs],
          [("https://example.org/leaf.jpg", "Volunteers spreading leaves", "figure-image")],
          "images and the cell each is in")
    lines = text.split("\n")
    i = lines.index("[image: Volunteers spreading leaves]")
    equal(lines[i + 1], "Saturday\u2019s crew. Photo: Priya Raman.", "line under the image")


@SUITE.test("caption after a blank line: the same caption cell as right below")
def test_caption_next_paragraph(t):
    _, h, text = sent(t, CAPTIONED.replace("jpg)\n*", "jpg)\n\n*"))
    expect(("caption", "Saturday\u2019s crew. Photo: Priya Raman.") in cells(h).cells,
           "caption cell")
    expect("[image: Volunteers spreading leaves]\n\nSaturday\u2019s crew. Photo: Priya Raman.\n"
           in text, f"text part: {text}")


@SUITE.test("check warns, at the image's line, about a line under an image that may or "
            "may not be its caption (and exits 0)")
def test_check_unclear_caption(t):
    post = world(t, "Hi {{name}},\n\n"
                 "![Volunteers spreading leaves](https://example.org/leaf.jpg)\n"
                 "Photo: Priya Raman.\n\nUnsubscribe: {{unsubscribe_url}}\n")
    r = t.herald("check", post)
    equal(r.code, EX_OK, "exit code")
    expect(f"herald: {post}:8: warning: cannot tell whether this line is the caption of the "
           "image above it (https://example.org/leaf.jpg): write a caption as one emphasised "
           "line, *Photo: ...*, or leave a blank line between the image and the text\n" in r.err,
           f"no caption warning in: {r.err}")
    world(t, CAPTIONED)
    r = t.herald("check", post)
    expect("cannot tell" not in r.err, f"a warning for a clear caption: {r.err}")


# ---- literal braces -----------------------------------------------------

TEMPLATING = ("Hi {{name}},\n\n"
              "Greet a reader with `{{name}}`, or with a fallback:\n\n"
              "```\nDear {{ name | reader }},\n{{ never closed\n```\n\n"
              "In prose, write \\{{name}} to show the braces.\n\n"
              "Unsubscribe: {{unsubscribe_url}}\n")


@SUITE.test("{{name}} in a code span and a code block reaches the reader as written; "
            "prose \\{{name}} shows {{name}}; prose fields still merge")
def test_code_not_merged(t):
    post, h, text = sent(t, TEMPLATING, rcpt="zoe@example.net")
    equal(cells(h).codes, [("code", "{{name}}"),
                           ("code", "Dear {{ name | reader }},\n{{ never closed")],
          "code elements")
    expect("<p>Hi Zoë,</p>" in h, "prose field merged in HTML")
    expect("In prose, write {{name}} to show the braces." in h, "prose escape in HTML")
    for line in ("Hi Zoë,", "Greet a reader with {{name}}, or with a fallback:",
                 "    Dear {{ name | reader }},", "    {{ never closed",
                 "In prose, write {{name}} to show the braces."):
        expect(line in text.split("\n"), f"no line {line!r} in the text part: {text}")
    r = t.herald("check", post)
    equal(r.code, EX_OK, "check exit code")
    expect(": error:" not in r.err, f"check found errors: {r.err}")


@SUITE.test("merge_code = true: fields in code merge like prose")
def test_merge_code(t):
    _, h, text = sent(t, "Hi `{{name}}`.\n\nUnsubscribe: {{unsubscribe_url}}\n",
                      changes={"merge_code": True})
    equal(cells(h).codes, [("code", "Joy")], "code elements")
    expect("Hi Joy." in text, f"text part: {text}")


# ---- merge errors: the same words from send, preview and check ------------

def three_ways(t, post):
    """(command, exit code, stderr) of send, preview and check."""
    out = []
    for args in (("send", post), ("preview", post, "-o", t.path("pv"), "--no-screenshots"),
                 ("check", post)):
        r = t.herald(*args)
        out.append((args[0], r.code, r.err))
    return out


@SUITE.test("a malformed merge field: send, preview and check say FILE:LINE and the field, "
            "in the same words, exit 65, and send sends nothing")
def test_malformed_field_everywhere(t):
    srv = t.server()
    post = world(t, "Hi,\n\nBye {{ {{{ }}.\n\nUnsubscribe: {{unsubscribe_url}}\n", server=srv)
    what = (f"{post}:8: %smalformed merge field \"{{{{ {{{{{{ }}}}\": expected {{{{name}}}} or "
            "{{name|fallback}} (for a literal \"{{\", write \\{{)")
    for cmd, code, err in three_ways(t, post):
        equal(code, EX_DATAERR, f"{cmd} exit code")
        want = "herald: " + what % ("error: " if cmd == "check" else "") + "\n"
        expect(want in err, f"{cmd}: no {want!r} in: {err}")
        if cmd != "check":
            equal(err, want, f"{cmd} stderr")
    equal(srv.messages(), [], "messages sent")


@SUITE.test("an unknown merge field: send, preview and check name it at its line with the "
            "\"did you mean\"")
def test_unknown_field_everywhere(t):
    post = world(t, "Hi {{nmae|there}},\n\nUnsubscribe: {{unsubscribe_url}}\n")
    what = (f"{post}:6: %sunknown merge field \"nmae\": no list column nor built-in field "
            "has that name (did you mean \"name\"?)")
    for cmd, code, err in three_ways(t, post):
        equal(code, EX_DATAERR, f"{cmd} exit code")
        want = "herald: " + what % ("error: " if cmd == "check" else "") + "\n"
        expect(want in err, f"{cmd}: no {want!r} in: {err}")


@SUITE.test("an unclosed \"{{\" in prose: the same FILE:LINE message from send and check")
def test_unclosed_field(t):
    post = world(t, "Hi,\n\nA {{name\n\nUnsubscribe: {{unsubscribe_url}}\n")
    tail = "\"{{\" without \"}}\" on the same line (for a literal \"{{\", write \\{{)\n"
    r = t.send(post=post)
    equal((r.code, r.err), (EX_DATAERR, f"herald: {post}:8: {tail}"), "send")
    r = t.herald("check", post)
    expect(f"herald: {post}:8: error: {tail}" in r.err, f"check: {r.err}")


# ---- dates ---------------------------------------------------------------

@SUITE.test("date with an offset (+01:00) is that time whatever TZ says: send --due waits "
            "until 07:00 UTC (not 08:00 in New York), -v says how long")
def test_date_offset_due(t):
    srv = t.server()
    post = world(t, "Hi {{name}}.\n\nUnsubscribe: {{unsubscribe_url}}\n", server=srv,
                 date="2026-11-30 08:00 +01:00")
    r = t.herald("-v", "send", "--due", post, env=faketime("2026-11-30 06:30:00"))
    equal(r.code, EX_OK, "exit code before")
    equal(r.err, f"{post}: due in 30 minutes (date: 2026-11-30 08:00 +01:00), skipped\n"
          f"nothing due: {post} is due in 30 minutes\n", "stderr before")
    equal(srv.messages(), [], "messages before")
    r = t.herald("send", "--due", post, env=faketime("2026-11-30 07:00:30", tz="America/New_York"))
    equal(r.code, EX_OK, "exit code after")
    equal(len(srv.messages()), 2, "messages after")


@SUITE.test("a bad date names its line and the two forms")
def test_bad_date(t):
    post = world(t, "Hi.\n", date="2026-11-30 08:00 CET")
    r = t.herald("check", post)
    equal(r.code, EX_DATAERR, "exit code")
    equal(r.err, f"herald: {post}:3: date \"2026-11-30 08:00 CET\" is not YYYY-MM-DD HH:MM "
          "(local time) nor YYYY-MM-DD HH:MM +01:00 (that offset from UTC; Z for UTC)\n",
          "stderr")


# ---- send --due: what it skipped and why ---------------------------------

def due_dir(t, srv):
    t.subscribers(READERS)
    t.config(srv)
    body = "Hi {{name}}.\n\nUnsubscribe: {{unsubscribe_url}}\n"
    t.write("posts/2026-11-01-sent.md", front(date="2026-11-01 08:00") + body)
    t.write("posts/2027-01-15-x.md", front(date="2027-01-15 08:00") + body)
    return t.path("posts")


@SUITE.test("send --due -v: each skipped post with why (due in 44 days, sent already), then "
            "one line saying nothing is due")
def test_due_verbose(t):
    srv = t.server()
    d = due_dir(t, srv)
    r = t.herald("send", "--due", d, env=faketime("2026-12-02 08:00:00"))
    equal(r.code, EX_OK, "first run")
    equal(len(srv.messages()), 2, "the due post went out")
    r = t.herald("-v", "send", "--due", d, env=faketime("2026-12-02 08:00:00"))
    equal(r.code, EX_OK, "exit code")
    equal(r.out, "", "stdout")
    equal(r.err, f"{d}/2026-11-01-sent.md: sent to the whole list already, skipped\n"
          f"{d}/2027-01-15-x.md: due in 44 days (date: 2027-01-15 08:00), skipped\n"
          f"nothing due in {d}: 1 post not due yet (next: {d}/2027-01-15-x.md, in 44 days), "
          "1 already sent\n", "stderr")
    equal(len(srv.messages()), 2, "nothing more sent")


@SUITE.test("send --due with nothing due: one line on a terminal, silence for cron")
def test_due_nothing(t):
    srv = t.server()
    d = due_dir(t, srv)
    os.remove(os.path.join(d, "2026-11-01-sent.md"))
    r = t.herald_tty("send", "--due", d, env=faketime("2026-12-02 08:00:00"))
    equal(r.code, EX_OK, "exit code on a terminal")
    equal(r.out.replace("\r\n", "\n"),
          f"nothing due in {d}: 1 post not due yet (next: {d}/2027-01-15-x.md, in 44 days), "
          "0 already sent\n", "terminal")
    r = t.herald("send", "--due", d, env=faketime("2026-12-02 08:00:00"))
    equal((r.code, r.out, r.err), (EX_OK, "", ""), "cron run")
    equal(srv.messages(), [], "messages")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
