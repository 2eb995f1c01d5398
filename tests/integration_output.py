#!/usr/bin/python3
"""Output a person reads (issue 12, part 5): one line where a success
used to be silent, no rate when nothing was sent, dry-run errors that
name the dry-run directory, one usage error, no "//" in paths, preview
screenshots of the whole message, the text footer wrapped at 72 and the
templates' lang from the config.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_output.py [PATTERN...]

Each test asserts the exact text herald prints (or, for the screenshot,
that the picture reaches the footer as Chromium lays it out).
"""

import email
import email.policy
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import EX_CONFIG, EX_OK, EX_USAGE, Suite, csv, equal, expect

SUITE = Suite()
test = SUITE.test
CHROMIUM = shutil.which("chromium")
EX_CANTCREAT = 73


def herald_lines(text):
    return [l for l in text.splitlines() if l.startswith("herald: ")]


def world(t, server=None, changes=None, readers=("ann@example.net,Ann",), post_extra=""):
    t.post(post_extra)
    t.subscribers(csv(*readers))
    return t.config(server, changes or {})


def parts(path):
    with open(path, "rb") as f:
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    return {p.get_content_type(): p.get_content() for p in msg.walk()
            if p.get_content_maintype() == "text"}


@test("bounces list with nobody suppressed: one line on stderr that says so, nothing on "
      "stdout (scripts read TSV there), exit 0; -q keeps it quiet")
def test_bounces_list_empty(t):
    world(t)
    r = t.herald("bounces", "list")
    equal(r.code, EX_OK, "exit code")
    equal(r.out, "", "stdout")
    equal(r.err, "nobody is suppressed: no hard bounce, complaint or 3 soft bounces in a row "
                 f"in {t.path('state')}/bounces.log\n", "stderr")
    r = t.herald("-q", "bounces", "list")
    equal((r.code, r.out, r.err), (EX_OK, "", ""), "with -q")


@test("every reader refused (nothing sent): the summary has no msg/s, the JSON rate is 0")
def test_no_rate_when_nothing_sent(t):
    s = t.fault_server({"at": "rcpt", "reply": "550 5.1.1 Recipient address rejected: "
                                                "User unknown"})
    readers = ("ann@example.net,Ann", "bob@example.net,Bob", "cy@example.net,Cy")
    world(t, s, {"retry": {"attempts": 1}}, readers)
    r = t.herald("-v", "send", t.path("issue-1.md"))
    summary = [l for l in r.err.splitlines() if l.startswith("issue-1: ")]
    equal(len(summary), 1, f"one summary line in {r.err!r}")
    expect(re.fullmatch(r"issue-1: sent 0, bounced 3, deferred 0, skipped 0 bad rows; "
                        r"\d+\.\d s", summary[0]), f"summary: {summary[0]!r}")
    r = t.herald("send", t.path("issue-1.md"), "--force", "--json")
    equal(json.loads(r.out)["posts"][0]["rate"], 0, "JSON rate")


@test("--dry-run into a file, or below one: \"cannot create dry-run directory\" with the "
      "path, exit 73, no summary")
def test_dry_run_directory_errors(t):
    world(t)
    t.write("afile", "x")
    r = t.send("--dry-run", t.path("afile") + "/")
    equal(r.code, EX_CANTCREAT, "exit code")
    equal(r.err, f"herald: {t.path('afile')}: cannot create dry-run directory: a file of that "
                 "name is in the way\n", "into a file")
    r = t.send("--dry-run", t.path("afile", "out"))
    equal(r.code, EX_CANTCREAT, "exit code")
    equal(r.err, f"herald: {t.path('afile', 'out')}: cannot create dry-run directory: Not a "
                 "directory\n", "below a file")


@test("send --dry-run with no DIR: one usage error that says what is missing")
def test_dry_run_without_dir(t):
    world(t)
    r = t.herald("send", t.path("issue-1.md"), "--dry-run")
    equal(r.code, EX_USAGE, "exit code")
    equal(r.err, "herald: send: --dry-run needs a value: the directory the .eml files go to\n"
                 "Try 'herald --help'.\n", "stderr")
    r = t.herald("send", t.path("issue-1.md"), "--dry-rum", "x")
    equal(r.err, "herald: send: unknown option --dry-rum\nTry 'herald --help'.\n", "typo")


@test("no \"//\" in printed paths: --dry-run DIR/, state_dir and templates ending in /")
def test_no_double_slash(t):
    world(t, changes={"state_dir": "state/", "templates": t.path("tpl") + "/"})
    shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "templates"),
                    t.path("tpl"))
    r = t.herald("-v", "send", t.path("issue-1.md"), "--dry-run", t.path("out") + "//")
    equal(r.code, EX_OK, "exit code")
    equal(r.err.splitlines()[-1], f"messages are in {t.path('out')}/", "last line")
    r = t.herald("bounces", "list")
    expect(f"in {t.path('state')}/bounces.log\n" in r.err, f"state path: {r.err!r}")
    os.remove(t.path("tpl", "default.txt"))
    r = t.send("--dry-run", t.path("out"))
    expect(f"{t.path('tpl')}/default.txt" in r.err and "//" not in r.err,
           f"template path: {r.err!r}")


@test("the text footer is wrapped at 72 per reader (a long address and list name); the "
      "URL keeps a line of its own, whole")
def test_footer_wrapped(t):
    addr = "ann.marie.longname-for-the-footer@mail.subdomain.example.net"
    world(t, changes={"list_id": "The Garden Lane Allotment Society Weekly Letter "
                                 "<weekly.example.org>"}, readers=(f"{addr},Ann",))
    r = t.send("--dry-run", t.path("out"))
    equal(r.code, EX_OK, "exit code")
    text = parts(os.path.join(t.path("out"), os.listdir(t.path("out"))[0]))["text/plain"]
    text = text.replace("\r\n", "\n")
    footer = text[text.rindex("\n-- \n") + 5:]
    url = "https://example.org/u?e=" + addr.replace("@", "%40") + "&t="
    for line in footer.splitlines():
        if line.startswith(url):
            continue
        expect(len(line) <= 72, f"footer line of {len(line)} columns: {line!r}")
    expect(re.search("^" + re.escape(url) + "[0-9a-f]{64}$", footer, re.M),
           f"the unsubscribe URL whole on a line: {footer!r}")
    # preview (which renders the part whole) and send (which wraps the
    # encoded footer only) give the reader the same text.
    equal(t.herald("preview", t.path("issue-1.md"), "-o", t.path("pv"), "--no-screenshots").code,
          EX_OK, "preview")
    with open(t.path("pv", "issue-1.txt"), encoding="utf-8") as f:
        equal(f.read(), text, "preview's .txt and the sent text part")
    words = " ".join(footer.split())
    expect(f"You are receiving this because {addr} subscribed to The Garden Lane Allotment "
           "Society Weekly Letter." in words, f"the footer's words: {words!r}")


@test("lang in the templates comes from language (\"fr\"), default en; a bad tag is a "
      "FILE:LINE error")
def test_language(t):
    world(t)
    t.send("--dry-run", t.path("en"))
    p = parts(os.path.join(t.path("en"), os.listdir(t.path("en"))[0]))
    expect('<html lang="en" dir="ltr"' in p["text/html"], "lang=en by default")
    t.config(None, {"language": "fr", "template": "plain"})
    t.send("--dry-run", t.path("fr"))
    p = parts(os.path.join(t.path("fr"), os.listdir(t.path("fr"))[0]))
    expect('<html lang="fr" dir="ltr">' in p["text/html"], "lang=fr in plain.html")
    t.config(None, {"language": "fr\" onload=\"x"})
    with open(t.path("herald.conf")) as f:
        line = next(i for i, l in enumerate(f, 1) if l.startswith("language"))
    r = t.send("--dry-run", t.path("x"))
    equal(r.code, EX_CONFIG, "exit code")
    equal(herald_lines(r.err), [f"herald: {t.path('herald.conf')}:{line}: language: expected a "
                                "language tag such as \"fr\" or \"pt-BR\", found \"fr\" "
                                "onload=\"x\""], "message")


# The footer's bottom edge as Chromium lays the preview out at a width:
# the page in an iframe that tall enough for anything, measured onload.
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" style="border:0;width:{w}px;height:30000px" srcdoc="{src}"></iframe>
<script>onload = function () {{
  var d = document.getElementById('f').contentDocument;
  var a = d.querySelector('a[href^="https://example.org/u?"]');
  var td = a && a.closest('td');
  var o = document.createElement('pre'); o.id = 'result';
  o.textContent = td ? Math.ceil(td.getBoundingClientRect().bottom) : -1;
  document.body.appendChild(o); }};</script></body></html>"""


def footer_bottom(t, page, width):
    with open(page, encoding="utf-8") as f:
        src = html.escape(f.read(), quote=True)
    probe = t.write(f"probe-{width}.html", PROBE.format(w=width, src=src))
    profile = tempfile.mkdtemp(dir=t.dir)
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", "--disable-background-networking",
                          f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
                          "--proxy-server=http://127.0.0.1:9", "--window-size=1300,1000",
                          "--dump-dom", "file://" + probe],
                         capture_output=True, timeout=120).stdout.decode()
    m = re.search(r'<pre id="result">(-?\d+)', out)
    expect(m and int(m.group(1)) > 0, "the probe found no footer")
    return int(m.group(1))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    expect(head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@test("preview screenshots cover the whole message: past 2,000 px, down to the footer with "
      "the unsubscribe link, desktop and mobile")
def test_preview_whole_message(t):
    expect(CHROMIUM, "chromium is not installed (deps/test-quality.txt)")
    long = "\n\n".join(f"Paragraph {i}: the beds are tucked in for winter and the shed roof "
                       "is finally dry, so there are three more Saturdays before we lock up."
                       for i in range(60))
    world(t, post_extra="\n\n" + long + "\n")
    r = t.herald("preview", t.path("issue-1.md"), "-o", t.path("pv"))
    equal(r.code, EX_OK, "exit code")
    page = t.path("pv", "issue-1.html")
    for name, width in (("desktop", 1200), ("mobile", 390)):
        png = t.path("pv", f"issue-1-{name}.png")
        w, h = png_size(png)
        bottom = footer_bottom(t, page, width)
        equal(w, width, f"{name} width")
        expect(h > 2000, f"{name}: {h} px: the message is longer than 2000 px")
        expect(h >= bottom, f"{name}: the picture stops at {h} px, the footer ends at {bottom}")
        expect(re.search(rf"issue-1-{name}\.png +{width} x {h} px, {name}, the whole message",
                         r.out), f"{name} line in {r.out!r}")
    leftovers = [n for n in os.listdir(t.path("pv")) if "measure" in n]
    equal(leftovers, [], "measuring copies left beside the preview")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
