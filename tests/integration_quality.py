#!/usr/bin/python3
"""herald's email-quality suite: preview files and screenshots, `check`
lints, DKIM signatures, the templates in a real browser, SpamAssassin.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_quality.py [PATTERN...]

Independent tools judge herald's output: python3-dkim verifies signatures
against the public key of a key pair made here (openssl genrsa), headless
Chromium renders the HTML (network off), SpamAssassin scores it with
Debian's shipped rules and no network tests (-L). deps/test-quality.txt
names their packages. TAP on stdout, a log on stderr (tests/harness.py).
"""

import email
import email.header
import email.policy
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import dkim

from harness import (EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_OK, HERALD, ROOT,
                     Suite, csv, equal, expect, log)

SUITE = Suite()
QUALITY = os.path.join(ROOT, "tests", "fixtures", "quality")
EXAMPLE = os.path.join(ROOT, "examples", "2026-11-30-weekly.md")
EXAMPLE_SLUG = "2026-11-30-weekly"
CHROMIUM = shutil.which("chromium")

READERS = csv("joy@example.org,Joy Adeyemi,Leeds",
              "zoe@example.net,Zoë Ångström,Uppsala",
              "d.kowalski@example.com,,Bradford",
              header="email,name,city")


# ---- helpers ------------------------------------------------------------

def world(t, changes=None, server=None, subs=READERS):
    """The subscriber list and a config in t's temp dir."""
    t.subscribers(subs)
    return t.config(server, changes)


def dkim_key(t):
    """A fresh 2048-bit key pair: (private key path, DNS TXT record)."""
    key = t.path("dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dkim_changes(key):
    return {"dkim": {"domain": "example.org", "selector": "hd2026", "key_file": key}}


def verify(raw, txt):
    """python3-dkim's verdict, the key served for the one name asked."""
    asked = []

    def dns(name, timeout=5):
        asked.append(name)
        return txt if name == b"hd2026._domainkey.example.org." else None
    ok = dkim.verify(raw, dnsfunc=dns)
    equal(asked, [b"hd2026._domainkey.example.org."], "DNS names looked up")
    return ok


def signature_tags(raw):
    msg = email.message_from_bytes(raw)
    sigs = msg.get_all("DKIM-Signature") or []
    equal(len(sigs), 1, "DKIM-Signature headers")
    flat = re.sub(r"\s+", "", sigs[0])
    return dict(kv.split("=", 1) for kv in flat.split(";") if kv)


def parts(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}


def png_pixels(path):
    """(width, height, rows of RGB(A) tuples) of an 8-bit RGB/RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    expect(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    expect(depth == 8 and ctype in (2, 6), f"{path}: depth {depth}, colour type {ctype}")
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
    for y in range(h):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, bpp


def check_screenshot(path, width, height):
    """The right size, and a page with text on it: many colours (glyph
    edges), a fair share of pixels off the background colour."""
    w, h, rows, bpp = png_pixels(path)
    equal(w, width, f"{os.path.basename(path)} width")
    # The whole message (herald measures the page): at least this tall.
    expect(h >= height, f"{os.path.basename(path)}: {h} px tall, want {height} or more")
    counts = {}
    for row in rows[::4]:                      # every 4th row is plenty
        for x in range(0, w * bpp, bpp * 2):
            px = row[x:x + 3]
            counts[px] = counts.get(px, 0) + 1
    total = sum(counts.values())
    background = max(counts.values())
    expect(len(counts) >= 20, f"{path}: only {len(counts)} colours: blank?")
    ink = 1 - background / total
    expect(ink > 0.02, f"{path}: {ink:.1%} of pixels off the background: blank?")
    return len(counts), ink


# The page the layout probe loads: the message's HTML in an iframe of the
# width under test (srcdoc keeps it same-origin, so the script can measure
# it), and a script that writes what it measured into the DOM, which
# --dump-dom prints.
PROBE_JS = r"""
function rgb(c) { return c.match(/[\d.]+/g).map(Number); }
function lum(c) { var m = rgb(c).map(function (v) { v /= 255;
  return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * m[0] + 0.7152 * m[1] + 0.0722 * m[2]; }
window.onload = function () {
  var f = document.getElementById('f'), d = f.contentDocument, w = f.contentWindow;
  var cv = d.createElement('div'); cv.style.backgroundColor = 'Canvas';
  d.body.appendChild(cv); var canvas = w.getComputedStyle(cv).backgroundColor; cv.remove();
  function bg(el) { for (; el; el = el.parentElement) { var c = w.getComputedStyle(el).backgroundColor;
    if (rgb(c).length < 4 || rgb(c)[3] > 0) return c; } return canvas; }
  var r = {dark: w.matchMedia('(prefers-color-scheme: dark)').matches,
           viewport: w.innerWidth, scroll: d.documentElement.scrollWidth,
           worst: 99, worst_text: '', captions: []};
  var ph = d.querySelector('.preheader');
  if (ph) { var b = ph.getBoundingClientRect(); r.preheader = [b.width, b.height, ph.textContent.trim().slice(0, 30)]; }
  d.querySelectorAll('.caption').forEach(function (c) { var b = c.getBoundingClientRect();
    r.captions.push([b.width, b.height, c.textContent.trim()]); });
  d.querySelectorAll('body *').forEach(function (e) {
    var t = ''; for (var k = e.firstChild; k; k = k.nextSibling) if (k.nodeType == 3) t += k.data;
    t = t.trim(); var b = e.getBoundingClientRect();
    if (!t || !b.width || !b.height || e.closest('.preheader')) return;
    var l1 = lum(w.getComputedStyle(e).color), l2 = lum(bg(e));
    var cr = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (cr < r.worst) { r.worst = cr; r.worst_text = e.tagName + ': ' + t.slice(0, 40); } });
  var o = document.createElement('pre'); o.id = 'result'; o.textContent = JSON.stringify(r);
  document.body.appendChild(o);
};
"""


def chromium_args(t, *extra):
    profile = tempfile.mkdtemp(dir=t.dir)
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            *extra]


def probe(t, html_path, width, dark):
    with open(html_path, encoding="utf-8") as f:
        src = f.read()
    page = t.write(f"probe-{width}-{int(dark)}.html",
                   '<!DOCTYPE html><html><body style="margin:0">'
                   f'<iframe id="f" style="border:0;width:{width}px;height:3000px" '
                   f'srcdoc="{html.escape(src, quote=True)}"></iframe>'
                   f"<script>{PROBE_JS}</script></body></html>")
    args = chromium_args(t, "--window-size=1300,3000", *(["--force-dark-mode"] if dark else []),
                         "--dump-dom", "file://" + page)
    out = subprocess.run(args, capture_output=True, timeout=120).stdout.decode()
    m = re.search(r'<pre id="result">([^<]*)', out)
    expect(m, f"the probe page wrote no result at {width} px (dark={dark})")
    r = json.loads(html.unescape(m.group(1)))
    log(f"#   probe {os.path.basename(html_path)} {width} px dark={dark}: {r}")
    return r


def spam_score(t, eml):
    """SpamAssassin's score and rules, local tests only, in a home of its
    own (it writes user_prefs there)."""
    home = t.path("sa-home")
    os.makedirs(home, exist_ok=True)
    with open(eml, "rb") as f:
        p = subprocess.run(["spamassassin", "-L", "-t"], stdin=f, capture_output=True,
                           timeout=120, env={**os.environ, "HOME": home})
    out = p.stdout.decode(errors="replace")
    m = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+ tests=(.*?)\s+autolearn",
                  out, re.M | re.S)
    expect(m, "no X-Spam-Status in spamassassin's output: " + p.stderr.decode()[-500:])
    details = out[out.find("Content analysis details"):].strip()
    return float(m.group(1)), re.sub(r"\s+", "", m.group(2)).split(","), details


def preview(t, post, outdir="preview", *args, **kw):
    return t.herald("preview", post, "-o", t.path(outdir), *args, **kw)


# ---- preview ------------------------------------------------------------

@SUITE.test("preview: .html, .txt and .eml are the reader's message; sizes printed; "
            "desktop and mobile screenshots with content")
def test_preview(t):
    world(t)
    tmp = t.path("tmp")          # where the browser's throw-away profile goes
    os.makedirs(tmp)
    r = preview(t, EXAMPLE, "preview", "--as", "zoe@example.net", env={"TMPDIR": tmp})
    equal(r.code, EX_OK, "exit code")
    out = t.path("preview")
    with open(os.path.join(out, f"{EXAMPLE_SLUG}.eml"), "rb") as f:
        raw = f.read()
    p = parts(raw)
    for ext, ctype in (("html", "text/html"), ("txt", "text/plain")):
        with open(os.path.join(out, f"{EXAMPLE_SLUG}.{ext}"), encoding="utf-8") as f:
            got, want = f.read(), p[ctype].replace("\r\n", "\n")
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(got))
            raise AssertionError(f"the .{ext} file and the {ctype} part differ at {at}: "
                                 f"{got[at:at + 60]!r} / {want[at:at + 60]!r}")
    expect("Hi Zoë Ångström," in p["text/plain"], "--as reader's name in the text part")
    for ext in ("html", "txt", "eml"):
        size = os.path.getsize(os.path.join(out, f"{EXAMPLE_SLUG}.{ext}"))
        expect(re.search(rf"{EXAMPLE_SLUG}\.{ext}\s+{size} bytes", r.out),
               f"the size of the .{ext} ({size}) is not printed")
    expect(re.search(r"HTML part, \d+ quoted-printable", r.out), "HTML part's encoded size")
    expect(re.search(r"text part, \d+ quoted-printable", r.out), "text part's encoded size")
    expect(re.search(r"whole message to zoe@example\.net: \d+% of Gmail's 102 KB", r.out),
           "whole message's share of the clip size")
    expect(CHROMIUM, "chromium is not installed (deps/test-quality.txt)")
    for name, w in (("desktop", 1200), ("mobile", 390)):
        png = os.path.join(out, f"{EXAMPLE_SLUG}-{name}.png")
        expect(os.path.exists(png), f"no {name} screenshot")
        colours, ink = check_screenshot(png, w, 2000)
        log(f"#   {name}: {colours} colours, {ink:.1%} ink")
        expect(f"{EXAMPLE_SLUG}-{name}.png" in r.out, f"{name} screenshot not listed")
    equal(os.listdir(tmp), [], "browser profiles left in $TMPDIR")


@SUITE.test("preview: no Chromium (or --no-screenshots) skips the screenshots and says so")
def test_preview_no_chromium(t):
    world(t)
    r = preview(t, EXAMPLE, "a", env={"HERALD_CHROMIUM": ""})
    equal(r.code, EX_OK, "exit code")
    expect("screenshots skipped" in r.out, "no word that screenshots were skipped")
    equal(sorted(os.listdir(t.path("a"))),
          [f"{EXAMPLE_SLUG}.{e}" for e in ("eml", "html", "txt")], "files")
    r = preview(t, EXAMPLE, "b", "--no-screenshots")
    equal(r.code, EX_OK, "exit code")
    equal(len(os.listdir(t.path("b"))), 3, "files with --no-screenshots")


# ---- templates ----------------------------------------------------------

@SUITE.test("templates in Chromium: default and plain fit 390 px, hide the preheader, "
            "show the caption, keep text at 4.5:1 contrast in light and dark mode")
def test_template_layout(t):
    expect(CHROMIUM, "chromium is not installed (deps/test-quality.txt)")
    for template in ("default", "plain"):
        world(t, {"template": template})
        equal(preview(t, EXAMPLE, template, "--no-screenshots").code, EX_OK, "preview")
        page = t.path(template, f"{EXAMPLE_SLUG}.html")
        with open(page, encoding="utf-8") as f:
            src = f.read()
        expect('name="color-scheme" content="light dark"' in src, f"{template}: color-scheme meta")
        expect('name="viewport"' in src, f"{template}: viewport meta")
        for width in (1200, 390):
            for dark in (False, True):
                r = probe(t, page, width, dark)
                what = f"{template} at {width} px, {'dark' if dark else 'light'}"
                equal(r["dark"], dark, f"{what}: prefers-color-scheme")
                equal(r["viewport"], width, f"{what}: viewport width")
                expect(r["scroll"] <= width, f"{what}: {r['scroll']} px wide, scrolls sideways")
                equal(r["preheader"][:2], [0, 0], f"{what}: preheader box")
                expect(r["preheader"][2].startswith("41 bags"), f"{what}: preheader text")
                expect(len(r["captions"]) == 1 and r["captions"][0][1] > 10 and
                       r["captions"][0][2].startswith("Saturday’s crew spread 41 bags"),
                       f"{what}: caption not shown: {r['captions']}")
                expect(r["worst"] >= 4.5, f"{what}: contrast {r['worst']:.2f}:1 for "
                       f"{r['worst_text']!r} (WCAG AA wants 4.5:1)")


@SUITE.test("figures: a lone image gets its caption (the emphasised line after it, else "
            "its title) in the HTML; the text part keeps alt text and caption")
def test_figures(t):
    world(t)
    post = t.write("fig.md", "---\nsubject: Figures\npreheader: Two pictures\n---\n"
                   "Intro.\n\n![Beds under leaves](https://example.org/a.jpg)\n\n"
                   "*Photo: Priya & co.*\n\n"
                   '![The shed](https://example.org/b.jpg "The new roof, <felted>")\n\n'
                   "![Inline](https://example.org/c.jpg) in a sentence stays inline.\n")
    equal(preview(t, post, "p", "--no-screenshots").code, EX_OK, "preview")
    with open(t.path("p", "fig.html"), encoding="utf-8") as f:
        page = f.read()
    figs = re.findall(r'<table role="presentation" class="figure".*?</table>', page, re.S)
    equal(len(figs), 2, "figures")
    expect('alt="Beds under leaves"' in figs[0] and
           re.search(r'class="caption"[^>]*>\s*<em>Photo: Priya &amp; co\.</em>', figs[0]),
           f"first figure: {figs[0]}")
    expect('alt="The shed"' in figs[1] and
           re.search(r'class="caption"[^>]*>\s*The new roof, &lt;felted&gt;', figs[1]),
           f"second figure: {figs[1]}")
    expect(re.search(r'<p><img src="https://example.org/c.jpg" alt="Inline" /> in a sentence', page),
           "an image inside a paragraph stays as it was")
    with open(t.path("p", "fig.txt"), encoding="utf-8") as f:
        text = f.read()
    expect("[image: Beds under leaves]" in text and "Photo: Priya & co." in text,
           f"text part: {text}")


# ---- RFC 2047 headers ----------------------------------------------------

NAMES = [
    # (address, display name): Cyrillic long enough to need three encoded
    # words, CJK, a long hyphenated Latin name, and one that fits one word.
    ("kv@example.org", "Константин Константинович Петрович-Водкин"),
    ("jp@example.org", "山田太郎左衛門之助 東京都千代田区丸の内営業部長"),
    ("bd@example.org", "Bérénice-Amélie Rosemonde Dûbois-Bénard de la Tour-d'Auvergne"),
    ("pv@example.org", "Петрович-Водкин"),
]
SUBJECTS = ["Новости недели для Константина Константиновича Петровича-Водкина из Хвалынска",
            "東京都千代田区丸の内の週刊ニュースレター第三号をお届けします、どうぞよろしく"]


def decode_2047(value):
    """RFC 2047 as written (section 6.2: the blank between two encoded-words
    is not text), through compat32's decoder."""
    import email.header
    return str(email.header.make_header(email.header.decode_header(value)))


@SUITE.test("RFC 2047: Cyrillic, CJK and long hyphenated names and subjects split only "
            "between words, decode whole (Python, mblaze), and no header line passes 78 "
            "(76 with encoded-words)")
def test_rfc2047_headers(t):
    server = t.server()
    for k, subject in enumerate(SUBJECTS):
        t.write(f"post{k}.md", f"---\nsubject: {subject}\ndate: 2026-11-30 08:00\n---\n"
                "Hi {{name}}.\n")
        world(t, {"from": "Константин Петрович-Водкин из редакции <joy@example.org>"}, server,
              subs=csv(*(f"{a},{n}" for a, n in NAMES)))
        r = t.send(post=t.path(f"post{k}.md"))
        equal(r.code, EX_OK, f"send of {subject!r}")
    got = server.messages()
    equal(len(got), 2 * len(NAMES), "messages")
    names = dict(NAMES)
    mblaze = shutil.which("mhdr")
    expect(mblaze, "mblaze's mhdr is missing (deps/test-quality.txt)")
    for i, m in enumerate(got):
        head = m.raw.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            limit = 76 if b"=?" in line else 78
            # Longer only where RFC 5322 gives no place to fold: one
            # token (a URL in List-Unsubscribe) after the name.
            token = line.strip() if line[:1] in b" \t" else line.partition(b": ")[2]
            expect(len(line) <= limit or b" " not in token.strip(),
                   f"message {i}: a {len(line)}-octet header line: {line!r}")
        msg = email.message_from_bytes(m.raw, policy=email.policy.default)
        legacy = email.message_from_bytes(m.raw)
        rcpt = m.rcpt_tos[0]
        equal(str(msg["Subject"]), SUBJECTS[i // len(NAMES)], f"message {i}: Subject (policy.default)")
        want_to = f"{names[rcpt]} <{rcpt}>"
        equal(decode_2047(legacy["To"]), want_to, f"message {i}: To (RFC 2047)")
        equal(decode_2047(legacy["From"]), "Константин Петрович-Водкин из редакции <joy@example.org>",
              f"message {i}: From (RFC 2047)")
        # policy.default keeps the blank between two encoded-words of a
        # display name (CPython issue 128110): a name that needs several
        # words shows an extra blank there, but every word stays whole.
        shown = msg["To"].addresses[0].display_name
        equal(shown.split(), names[rcpt].split(), f"message {i}: the words of the To name "
              "(policy.default)")
        if rcpt == "pv@example.org":
            equal(shown, names[rcpt], "a name that fits one encoded-word (policy.default)")
        path = t.path(f"m{i}.eml")
        with open(path, "wb") as f:
            f.write(m.raw)
        r = subprocess.run(["mhdr", "-d", "-h", "From:To:Subject", path],
                           capture_output=True, text=True, check=True)
        equal(r.stdout.splitlines(), ["Константин Петрович-Водкин из редакции <joy@example.org>",
                                      want_to, SUBJECTS[i // len(NAMES)]],
              f"message {i}: mblaze's mhdr -d")


# (display name, encoded-words the To header holds, words left as atoms):
# issue 21 item 9. Each that fits one encoded-word is one, ASCII words stay
# atoms, and only the 40-character name is split (None: more than one
# encoded-word, each ending at a space, so no word of the name is cut).
ONE_WORD_NAMES = [
    ("Jürgen Müller", 1, []),
    ("Jürgen Schmidt", 1, ["Schmidt"]),
    ("José Luis García", 2, ["Luis"]),
    ("山田 太郎", 1, []),
    ("Иван Петрович Сидоров", 1, []),
    ("Александра Константиновна Преображенская", None, []),
]
LONG_NAME = ONE_WORD_NAMES[-1][0]


def etpan_names(t):
    """tests/etpan_names.c built once per case: libetpan's reading of From
    and To."""
    exe = t.path("etpan_names")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libetpan"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-o", exe, os.path.join(ROOT, "tests", "etpan_names.c"),
                    *[f for f in flags if not f.startswith("-specs")]], check=True)
    return exe


@SUITE.test("RFC 2047 names: a display name that fits one encoded-word is one (Cyrillic, "
            "CJK, two umlauts), ASCII words stay atoms (one umlaut, José Luis García), a "
            "40-character one splits between words; Python policy.default and compat32, "
            "mblaze and libetpan all decode each to the name given; DKIM verifies")
def test_rfc2047_one_word_names(t):
    server = t.server()
    sender = "Иван Петрович Сидоров"
    key, txt = dkim_key(t)
    world(t, {"from": f"{sender} <joy@example.org>", **dkim_changes(key)}, server,
          subs=csv(*(f"r{i}@example.org,{n}" for i, (n, _, _) in enumerate(ONE_WORD_NAMES))))
    t.post()
    equal(t.send().code, EX_OK, "send")
    got = server.by_rcpt()
    equal(len(got), len(ONE_WORD_NAMES), "messages")
    etpan = etpan_names(t)
    for i, (name, words, atoms) in enumerate(ONE_WORD_NAMES):
        rcpt = f"r{i}@example.org"
        raw = got[rcpt].raw
        head = raw.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line[:3] in (b"To:", b"From") or (line[:1] == b" " and b"=?" in line):
                expect(len(line) <= 78, f"{name}: a {len(line)}-octet header line: {line!r}")
        to_raw = re.search(rb"(?ms)^To:(.*?)\r\n(?=\S)", head).group(1).decode()
        from_raw = re.search(rb"(?ms)^From:(.*?)\r\n(?=\S)", head).group(1).decode()
        n = to_raw.count("=?UTF-8?")
        expect(n == words if words else n > 1, f"{name}: {n} encoded-words in To: {to_raw!r}")
        equal(from_raw.count("=?UTF-8?"), 1, f"From: one encoded-word: {from_raw!r}")
        if not words:
            parts = [email.header.decode_header(w)[0][0].decode()
                     for w in re.findall(r"=\?UTF-8\?[QB]\?[^?]*\?=", to_raw)]
            equal("".join(parts), name, f"{name}: its encoded-words joined")
            expect(all(p.endswith(" ") for p in parts[:-1]), f"{name}: a word cut: {parts}")
        plain = re.sub(r"=\?UTF-8\?[QB]\?[^?]*\?=", " ", to_raw).split()
        equal(plain, atoms + [f"<{rcpt}>"], f"{name}: the words left as they are in To")
        expect(verify(raw, txt), f"{name}: the DKIM signature does not verify")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        shown = msg["To"].addresses[0].display_name
        if name == LONG_NAME:
            # Split in two: policy.default keeps the blank between the
            # words (CPython issue 128110), so the split is at a space.
            equal(shown.split(), name.split(), f"{name}: words (policy.default)")
        else:
            equal(shown, name, f"{name}: To (policy.default)")
        equal(msg["From"].addresses[0].display_name, sender, "From (policy.default)")
        legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
        equal(decode_2047(legacy["To"]).strip(), f"{name} <{rcpt}>", f"{name}: To (compat32)")
        equal(decode_2047(legacy["From"]).strip(), f"{sender} <joy@example.org>", "From (compat32)")
        path = t.path(f"n{i}.eml")
        with open(path, "wb") as f:
            f.write(raw)
        r = subprocess.run(["mhdr", "-d", "-h", "From:To", path], capture_output=True,
                           text=True, check=True)
        equal(r.stdout.splitlines(), [f"{sender} <joy@example.org>", f"{name} <{rcpt}>"],
              f"{name}: mblaze's mhdr -d")
        r = subprocess.run([etpan, path], capture_output=True, text=True)
        equal((r.returncode, r.stdout.splitlines()),
              (0, [f"{sender} <joy@example.org>", f"{name} <{rcpt}>"]), f"{name}: libetpan")


@SUITE.test("dots: a post whose lines begin with dots reaches the server whole, and no line "
            "of the message begins with a dot (nothing for SMTP's dot-stuffing to do)")
def test_leading_dots(t):
    server = t.server()
    body = ("Hi {{name}}.\n\n.\n\n..\n\n. a lone dot line would end DATA\n\n"
            "```\n.\n..\n.hidden\n...\n```\n\n" + "x" * 75 + ".after_a_soft_break\n")
    t.write("dots.md", "---\nsubject: .dots\ndate: 2026-11-30 08:00\n---\n" + body)
    world(t, None, server)
    r = t.send(post=t.path("dots.md"))
    equal(r.code, EX_OK, "send")
    got = server.messages()
    equal(len(got), len(READERS.splitlines()) - 1, "messages")
    for m in got:
        starts = [line for line in m.raw.split(b"\r\n") if line.startswith(b".")]
        equal(starts, [], f"lines opening with a dot in the message to {m.rcpt_tos[0]}")
        msg = email.message_from_bytes(m.raw, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        for want in ("\n.\n", "\n..\n", "    .hidden\n    ...\n", ". a lone dot line",
                     "x" * 75 + ".after_a_soft_break"):
            expect(want in text, f"{want!r} missing from the text part:\n{text}")
        html_part = msg.get_body(("html",)).get_content()
        expect(".hidden" in html_part, "the code block is missing from the HTML part")
        equal(str(msg["Subject"]), ".dots", "Subject")


@SUITE.test("headers: the config's extra lines are merged per reader, RFC 2047 where needed, "
            "DKIM-signed and over-signed (python3-dkim verifies; a prepended copy fails); a "
            "bad name is 78 at FILE:LINE; a merged line break skips that reader only")
def test_extra_headers(t):
    server = t.server()
    key, txt = dkim_key(t)
    hdrs = {"headers": ["Feedback-ID: {{slug}}:weekly:herald", "X-Campaign: {{slug}} für {{city}}"]}
    world(t, {**dkim_changes(key), **hdrs}, server,
          subs=csv("joy@example.org,Joy,Leeds", 'bad@example.org,Bad,"Oslo\nBcc: x@example.net"',
                   "zoe@example.net,Zoë,Uppsala", header="email,name,city"))
    r = t.send(post=EXAMPLE)
    equal(r.code, EX_OK, "send")
    expect("bad@example.org" not in [m.rcpt_tos[0] for m in server.messages()],
           "the reader whose field holds a line break was sent to")
    expect("X-Campaign header" in r.err and "line break" in r.err, f"no warning: {r.err}")
    got = server.by_rcpt()
    equal(sorted(got), ["joy@example.org", "zoe@example.net"], "recipients")
    for rcpt, city in (("joy@example.org", "Leeds"), ("zoe@example.net", "Uppsala")):
        raw = got[rcpt].raw
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        equal(str(msg["Feedback-ID"]), f"{EXAMPLE_SLUG}:weekly:herald", f"{rcpt}: Feedback-ID")
        equal(str(msg["X-Campaign"]), f"{EXAMPLE_SLUG} für {city}", f"{rcpt}: X-Campaign")
        expect(verify(raw, txt), f"{rcpt}: does not verify")
        signed = [h.lower() for h in signature_tags(raw)["h"].split(":")]
        for h in ("feedback-id", "x-campaign"):
            equal(signed.count(h), 2, f"{rcpt}: {h} signed and over-signed")
        expect(not verify(b"Feedback-ID: other:spam:x\r\n" + raw, txt),
               f"{rcpt}: a prepended Feedback-ID still verifies")
    for line, want in (('"Subject: x"', "herald writes Subject itself"),
                       ('"Bad Name: x"', '"Bad Name" is not a header name'),
                       ('"X-Empty:"', "X-Empty has no value"),
                       ('"X-A: {{nope}}"', 'unknown merge field "nope"')):
        conf = t.config(server, {**hdrs, "headers": ["X-Fine: 1", line[1:-1]]})
        r = t.herald("check", EXAMPLE, conf=conf)
        expect(r.code in (EX_CONFIG, EX_DATAERR), f"{line}: exit {r.code}")
        expect(want in r.err, f"{line}: message: {r.err}")
        n = [i for i, l in enumerate(open(conf).read().split("\n"), 1) if line in l]
        expect(n and f"herald.conf:{n[0]}:" in r.err, f"{line}: no FILE:LINE in {r.err}")


# ---- attachments ---------------------------------------------------------

def mshow_tree(t, raw):
    """mblaze's view of a message's MIME structure (mshow -t)."""
    with open(t.path("m.eml"), "wb") as f:
        f.write(raw)
    return subprocess.run(["mshow", "-t", t.path("m.eml")], capture_output=True, text=True,
                          check=True).stdout


@SUITE.test("attachments: multipart/mixed around the alternative, MIME types from libmagic, "
            "bytes equal to the files, RFC 2231 names (Python strict, mblaze mshow -t), signed; "
            "check: a missing file is 66 at post.md:LINE, over 1 MB a warning, not a clip error")
def test_attachments(t):
    server = t.server()
    key, txt = dkim_key(t)
    world(t, dkim_changes(key), server)
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    files = {"report.pdf": pdf, "données été.csv": "a,b\nÅ,2\n".encode(),
             "blob.bin": bytes(range(256)) * 9}
    os.makedirs(t.path("posts", "files"))
    for name, data in files.items():
        with open(t.path("posts", "files", name), "wb") as f:
            f.write(data)
    t.write("posts/att.md", "---\nsubject: Files\ndate: 2026-11-30 08:00\n"
            "attachments: files/report.pdf, files/données été.csv ,files/blob.bin\n---\n"
            "Hi {{name}}, three files.\n")
    post = t.path("posts", "att.md")
    r = t.send(post=post)
    equal(r.code, EX_OK, "send")
    got = server.messages()
    equal(len(got), 3, "messages")
    for m in got:
        msg = email.message_from_bytes(m.raw, policy=email.policy.strict)
        equal(msg.get_content_type(), "multipart/mixed", "top")
        parts = [p.get_content_type() for p in msg.iter_parts()]
        # The types file(1), libmagic's own command, gives.
        want = [subprocess.run(["file", "-b", "--mime-type", t.path("posts", "files", n)],
                               capture_output=True, text=True, check=True).stdout.strip()
                for n in files]
        equal(want[:2], ["application/pdf", "text/plain"], "file(1)'s types")
        equal(parts, ["multipart/alternative"] + want, "parts")
        seen = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
        equal(sorted(seen), sorted(files), "file names")
        for name, data in files.items():
            equal(seen[name], data, f"bytes of {name}")
        expect(b"filename*=UTF-8''donn%C3%A9es%20%C3%A9t%C3%A9.csv" in m.raw,
               "the RFC 2231 name is missing or quoted")
        expect(verify(m.raw, txt), "does not verify")
        tree = mshow_tree(t, m.raw)
        for want in ("multipart/mixed", "multipart/alternative", "text/plain", "text/html",
                     'application/pdf size=45 name="report.pdf"', 'name="données été.csv"'):
            expect(want in tree, f"mshow -t lacks {want!r}:\n{tree}")
    # check: a missing file, a big one
    t.write("posts/missing.md", "---\nsubject: Files\ndate: 2026-11-30 08:00\n"
            "attachments: files/nope.pdf\n---\nHi.\n")
    r = t.herald("check", t.path("posts", "missing.md"))
    equal(r.code, EX_NOINPUT, "check, missing attachment")
    expect("missing.md:4: attachment " in r.err and "nope.pdf: No such file" in r.err, r.err)
    with open(t.path("posts", "files", "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))
    t.write("posts/big.md", "---\nsubject: Files\ndate: 2026-11-30 08:00\n"
            "attachments: files/big.bin\n---\nHi.\n")
    r = t.herald("check", t.path("posts", "big.md"))
    equal(r.code, EX_OK, f"check, big attachment: {r.err}")
    expect("1 attachment of 3.0 MB in all go to every reader (4.0 MB on the wire" in r.err, r.err)
    expect("Gmail clips" not in r.err, f"an attachment counted as clipped text: {r.err}")


@SUITE.test("postal_address: in the footer of both default templates' HTML and text parts; "
            "check warns when it is unset")
def test_postal_address(t):
    server = t.server()
    for template in ("default", "plain"):
        world(t, {"template": template}, server)
        r = t.send("--test", post=EXAMPLE)
        equal(r.code, EX_OK, f"{template}: send")
        m = server.messages()[-1]
        msg = email.message_from_bytes(m.raw, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()
        html_part = msg.get_body(("html",)).get_content()
        footer = text[text.rindex("\n-- "):]
        expect("1 Garden Lane, Springfield" in footer, f"{template}: text footer:\n{footer}")
        expect(">1 Garden Lane, Springfield</p>" in html_part, f"{template}: not in the HTML")
    conf = t.config(server, {"postal_address": None})
    r = t.herald("check", EXAMPLE, conf=conf)
    equal(r.code, EX_OK, "check without postal_address")
    expect("warning: no postal_address: commercial mail must show a physical address" in r.err,
           r.err)
    r = t.herald("check", EXAMPLE, conf=t.config(server))
    expect("no postal_address" not in r.err, f"warned with it set: {r.err}")


# ---- embedded images -----------------------------------------------------

def png_bytes(w, h):
    raw = b"".join(b"\x00" + b"\x2a\x6f\x97" * w for _ in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


IMG_WIDTH_JS = """window.onload = function () {
  var d = document.getElementById('f').contentDocument, most = 0;
  d.querySelectorAll('img').forEach(function (i) {
    most = Math.max(most, Math.ceil(i.getBoundingClientRect().right)); });
  var o = document.createElement('pre'); o.id = 'result';
  o.textContent = most + ' ' + d.documentElement.scrollWidth;
  document.body.appendChild(o); };"""


@SUITE.test("embedded images: a local image is a cid: part in multipart/related around the HTML "
            "(one part however often shown), sized for the layout; remote ones stay links; the "
            "text says [image: alt]; at 390 px without <style> the 1600 px image fits (Chromium)")
def test_embedded_images(t):
    server = t.server()
    key, txt = dkim_key(t)
    world(t, dkim_changes(key), server)
    os.makedirs(t.path("posts", "images"))
    big = png_bytes(1600, 900)
    with open(t.path("posts", "images", "bridge.png"), "wb") as f:
        f.write(big)
    t.write("posts/img.md", "---\nsubject: Bridge\ndate: 2026-11-30 08:00\n---\n"
            "Hi {{name}}.\n\n![Map of the Tumen bridge](images/bridge.png)\n*The bridge, 1938.*\n\n"
            "Again, small: ![the bridge again](images/bridge.png), and a remote one: "
            "![a remote map](https://example.org/map.png).\n")
    post = t.path("posts", "img.md")
    equal(t.send(post=post).code, EX_OK, "send")
    for m in server.messages():
        msg = email.message_from_bytes(m.raw, policy=email.policy.strict)
        alt = msg.get_body(("related", "html", "plain"))
        equal(msg.get_content_type(), "multipart/alternative", "top")
        kinds = [p.get_content_type() for p in msg.iter_parts()]
        equal(kinds, ["text/plain", "multipart/related"], "alternative's parts")
        rel = list(msg.iter_parts())[1]
        inner = list(rel.iter_parts())
        equal([p.get_content_type() for p in inner], ["text/html", "image/png"], "related's parts")
        img = inner[1]
        cid = img["Content-ID"].strip("<>")
        equal(img.get_payload(decode=True), big, "image bytes")
        html_part = inner[0].get_content()
        tags = re.findall(r"<img [^>]*>", html_part)
        equal(len(tags), 3, f"img tags: {tags}")
        for tag in tags[:2]:
            expect(f'src="cid:{cid}"' in tag, f"not the image part: {tag}")
            expect('width="520" height="292"' in tag and "max-width:100%" in tag, f"size: {tag}")
        expect('src="https://example.org/map.png"' in tags[2], f"remote: {tags[2]}")
        text = " ".join(msg.get_body(("plain",)).get_content().split())
        expect("[image: Map of the Tumen bridge]" in text and "[image: a remote map]" in text, text)
        expect(verify(m.raw, txt), "does not verify")
        tree = mshow_tree(t, m.raw)
        expect("multipart/related" in tree and 'image/png' in tree, tree)
    # A phone without the template's <style>: the image keeps inside 390 px.
    expect(CHROMIUM, "chromium is not installed (deps/test-quality.txt)")
    equal(t.herald("preview", post, "-o", t.path("pv"), "--no-screenshots").code, EX_OK, "preview")
    with open(t.path("pv", "img.html"), encoding="utf-8") as f:
        page = re.sub(r"(?s)<style.*?</style>", "", f.read())
    expect("file://" in page, "preview does not show the image from its file")
    probe_page = t.write("probe.html", '<!DOCTYPE html><html><body style="margin:0">'
                         '<iframe id="f" style="border:0;width:390px;height:3000px" '
                         f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
                         f"<script>{IMG_WIDTH_JS}</script></body></html>")
    out = subprocess.run(chromium_args(t, "--window-size=400,3000", "--allow-file-access-from-files",
                                       "--dump-dom", "file://" + probe_page),
                         capture_output=True, timeout=120).stdout.decode()
    got = re.search(r'<pre id="result">(\d+) (\d+)', out)
    expect(got, f"the probe said nothing: {out[-300:]}")
    right, scroll = int(got.group(1)), int(got.group(2))
    expect(0 < right <= 390, f"the image ends at {right} px, past 390")
    expect(scroll <= 390, f"the page is {scroll} px wide at 390")
    # check: a missing image is 66 at its line
    t.write("posts/gone.md", "---\nsubject: Gone\ndate: 2026-11-30 08:00\n---\nHi.\n\n"
            "![gone](images/nope.png)\n")
    r = t.herald("check", t.path("posts", "gone.md"))
    equal(r.code, EX_NOINPUT, "check, missing image")
    expect("gone.md:7: image " in r.err and "nope.png: No such file" in r.err, r.err)
    t.write("posts/notimg.md", "---\nsubject: Gone\ndate: 2026-11-30 08:00\n---\nHi.\n\n"
            "![not one](notimg.md)\n")
    r = t.herald("check", t.path("posts", "notimg.md"))
    equal(r.code, EX_DATAERR, "check, not an image")
    expect("notimg.md:7: image " in r.err and "not a PNG, JPEG or GIF image" in r.err, r.err)


def boundary_lines(raw, msg):
    """Each multipart's boundary: how often it occurs in raw at all, and
    how many lines it begins (a part's delimiter or the closing one)."""
    got = {}
    for p in msg.walk():
        b = p.get_boundary()
        if b:
            bb = b.encode()
            lines = [l for l in raw.split(b"\r\n") if l.startswith(b"--" + bb)]
            expect(all(l in (b"--" + bb, b"--" + bb + b"--") for l in lines),
                   f"a line begins with {b!r} but is no delimiter: {lines}")
            got[b] = (raw.count(bb), len(lines), len(list(p.iter_parts())))
    return got


@SUITE.test("MIME boundaries, one set per run: a subject, text and a file name holding what "
            "they look like (--=_, =_M, =_R, a whole delimiter line) leave every part whole "
            "(Python strict): each boundary stands only in its Content-Type and on its "
            "delimiter lines, the parts decode to what was written, the messages verify")
def test_boundaries(t):
    server = t.server()
    key, txt = dkim_key(t)
    world(t, dkim_changes(key), server)
    os.makedirs(t.path("posts", "files"))
    pic = png_bytes(40, 30)
    note = b"--=_M\r\n--=_R\r\n=_\r\n--=_6b117ca3.240efb5b8e913ada--\r\n"
    with open(t.path("posts", "files", "pic.png"), "wb") as f:
        f.write(pic)
    with open(t.path("posts", "files", "--=_M notes.txt"), "wb") as f:
        f.write(note)
    lines = ["--=_", "--=_M", "=_R=_=_", "--=_6b117ca3.240efb5b8e913ada--"]
    t.write("posts/b.md", "---\nsubject: Parts =_M and --=_ for {{name|you}}\n"
            "date: 2026-11-30 08:00\nattachments: files/--=_M notes.txt\n---\n"
            "Hi {{name}}.\n\n![a picture](files/pic.png)\n\n```\n"
            + "".join(f"{l}\n" for l in lines) + "```\n")
    equal(t.send(post=t.path("posts", "b.md")).code, EX_OK, "send")
    got = server.by_rcpt()
    equal(len(got), 3, "messages")
    for rcpt, m in got.items():
        msg = email.message_from_bytes(m.raw, policy=email.policy.strict)
        name = {"joy@example.org": "Joy Adeyemi", "zoe@example.net": "Zoë Ångström"}.get(rcpt, "you")
        equal(str(msg["Subject"]), f"Parts =_M and --=_ for {name}", f"{rcpt}: subject")
        equal([p.get_content_type() for p in msg.walk()],
              ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
               "text/html", "image/png", "text/plain"], f"{rcpt}: the tree")
        for b, (n, delim, nparts) in boundary_lines(m.raw, msg).items():
            equal(delim, nparts + 1, f"{rcpt}: delimiter lines of {b}")
            equal(n, nparts + 2, f"{rcpt}: {b} stands elsewhere than its Content-Type and lines")
        # a code block: as written in both parts
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html_part = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
        for l in lines:
            expect(f"\n    {l}\n" in text, f"{rcpt}: the text lost {l!r}")
            expect(f"{l}\n" in html_part, f"{rcpt}: the HTML lost {l!r}")
        att = list(msg.iter_attachments())
        equal([(a.get_filename(), a.get_payload(decode=True)) for a in att],
              [("--=_M notes.txt", note)], f"{rcpt}: the attachment")
        imgs = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        equal(imgs[0].get_payload(decode=True), pic, f"{rcpt}: the image")
        expect(verify(m.raw, txt), f"{rcpt}: does not verify")


@SUITE.test("a subject and a merged header holding *=\"...\" reach the reader as written "
            "(only the parts' own RFC 2231 parameters lose their quotes)")
def test_star_equals_quote(t):
    server = t.server()
    world(t, {"headers": ['X-Note: a*="b" for {{city}}']}, server)
    t.write("posts/s.md", '---\nsubject: Sale *="50" off, {{name|friend}}\n'
            "date: 2026-11-30 08:00\n---\nHi.\n")
    equal(t.send(post=t.path("posts", "s.md")).code, EX_OK, "send")
    m = server.by_rcpt()["joy@example.org"]
    msg = email.message_from_bytes(m.raw, policy=email.policy.strict)
    equal(str(msg["Subject"]), 'Sale *="50" off, Joy Adeyemi', "subject")
    equal(str(msg["X-Note"]), 'a*="b" for Leeds', "X-Note")


@SUITE.test("a message over the relay's EHLO SIZE: the send stops before the first reader "
            "(exit 65, the figures and the fix), nothing stored, nobody bounced or journaled")
def test_relay_size(t):
    server = t.server("--size", "100000")
    world(t, None, server)
    os.makedirs(t.path("posts"))
    with open(t.path("posts", "big.bin"), "wb") as f:
        f.write(os.urandom(200000))
    t.write("posts/big.md", "---\nsubject: Big\ndate: 2026-11-30 08:00\n"
            "attachments: big.bin\n---\nHi.\n")
    r = t.send(post=t.path("posts", "big.md"))
    equal(r.code, EX_DATAERR, "exit")
    expect(re.search(r"the message to \S+ is \d+ bytes, and the relay takes at most 100000 "
                     r"\(its EHLO SIZE\): make it smaller", r.err), r.err)
    equal(server.messages(), [], "stored")
    equal(t.bounces(), [], "bounces.log")
    equal(t.journal("big"), [], "journal")
    # Under the limit it goes.
    t.write("posts/small.md", "---\nsubject: Small\ndate: 2026-11-30 08:00\n---\nHi.\n")
    equal(t.send(post=t.path("posts", "small.md")).code, EX_OK, "a small one")
    equal(len(server.messages()), len(READERS.splitlines()) - 1, "stored")


# ---- DKIM ---------------------------------------------------------------

@SUITE.test("DKIM: --dry-run, --test over SMTP and preview are all signed; python3-dkim "
            "verifies them with the public key; a changed byte fails")
def test_dkim(t):
    server = t.server()
    key, txt = dkim_key(t)
    world(t, dkim_changes(key), server)
    equal(t.send("--dry-run", t.path("dry"), post=EXAMPLE).code, EX_OK, "dry run")
    emls = sorted(os.listdir(t.path("dry")))
    equal(len(emls), 3, "dry-run messages")
    raws = []
    for name in emls:
        with open(t.path("dry", name), "rb") as f:
            raws.append(f.read())
    equal(t.send("--test=me@example.org", post=EXAMPLE).code, EX_OK, "test send")
    (m,) = server.messages()
    raws.append(m.raw)
    equal(preview(t, EXAMPLE, "p", "--no-screenshots").code, EX_OK, "preview")
    with open(t.path("p", f"{EXAMPLE_SLUG}.eml"), "rb") as f:
        raws.append(f.read())
    for i, raw in enumerate(raws):
        expect(raw.startswith(b"DKIM-Signature: "), f"message {i}: signature is not the first header")
        expect(verify(raw, txt), f"message {i} does not verify")
        tags = signature_tags(raw)
        equal((tags["v"], tags["a"], tags["c"], tags["d"], tags["s"]),
              ("1", "rsa-sha256", "relaxed/relaxed", "example.org", "hd2026"), f"message {i} tags")
        signed = [h.lower() for h in tags["h"].split(":")]
        for h in ("from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
                  "content-type", "list-id", "list-unsubscribe", "list-unsubscribe-post"):
            expect(h in signed, f"message {i}: {h} not signed (h={tags['h']})")
        for h in ("from", "subject", "list-unsubscribe", "list-unsubscribe-post", "list-id",
                  "content-type", "mime-version"):
            equal(signed.count(h), 2, f"message {i}: {h} over-signed")
        for h in ("cc", "sender"):
            equal(signed.count(h), 1, f"message {i}: {h} signed as absent")
    # The verifier is not a rubber stamp.
    raw = raws[0]
    body = raw.index(b"\r\n\r\n") + 4
    expect(not verify(raw[:body] + raw[body:].replace(b"Saturday", b"Sunday", 1), txt),
           "a changed body still verifies")
    expect(not verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), txt),
           "a changed subject still verifies")
    expect(not verify(b"From: Mallory <m@example.org>\r\n" + raw, txt),
           "an added From still verifies")
    # A copy with a header prepended (a list exploder, a forger) fails,
    # whichever header it is; one that herald does not sign does not.
    for added in (b"List-Id: Other <other.example.net>", b"Content-Type: text/plain",
                  b"MIME-Version: 1.0", b"Cc: everyone@example.net",
                  b"Sender: Mallory <m@example.net>"):
        expect(not verify(added + b"\r\n" + raw, txt),
               f"a copy with {added.split(b':')[0].decode()} prepended still verifies")
    expect(verify(b"X-Forwarded-For: 192.0.2.1\r\n" + raw, txt),
           "a prepended header herald does not sign broke the signature")


@SUITE.test("DKIM config: half a group exits 78, a missing key 66, a key that is no key 65")
def test_dkim_config_errors(t):
    world(t, {"dkim": {"domain": "example.org", "selector": "s1"}})
    r = t.herald("preview", EXAMPLE, "-o", t.path("p"), "--no-screenshots")
    equal(r.code, EX_CONFIG, "exit code for a group without key_file")
    expect("dkim.key_file is missing" in r.err, f"message: {r.err}")
    world(t, {"dkim": {"domain": "exa mple.org", "selector": "s1", "key_file": "k"}})
    r = t.herald("check", EXAMPLE)
    equal(r.code, EX_CONFIG, "exit code for a bad domain")
    expect("is not a DNS name" in r.err, f"message: {r.err}")
    world(t, dkim_changes("missing.key"))
    r = t.herald("preview", EXAMPLE, "-o", t.path("p"), "--no-screenshots")
    equal(r.code, EX_NOINPUT, "exit code for a missing key")
    expect(t.path("missing.key") in r.err and "openssl genrsa" in r.err, f"message: {r.err}")
    t.write("bad.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    world(t, dkim_changes("bad.key"))
    r = t.send("--dry-run", t.path("dry"), post=EXAMPLE)
    equal(r.code, EX_DATAERR, "exit code for a key that does not parse")
    expect(t.path("bad.key") in r.err, f"message names the key file: {r.err}")


# ---- SpamAssassin -------------------------------------------------------

@SUITE.test("SpamAssassin (-L, Debian's rules): examples/ as herald signs and sends it "
            "scores <= 0 with the default and the plain template")
def test_spamassassin(t):
    expect(shutil.which("spamassassin"), "spamassassin is not installed (deps/test-quality.txt)")
    key, _ = dkim_key(t)
    for template in ("default", "plain"):
        world(t, {**dkim_changes(key), "template": template})
        equal(t.send("--dry-run", t.path(template), post=EXAMPLE).code, EX_OK, "dry run")
        eml = t.path(template, sorted(os.listdir(t.path(template)))[0])
        score, rules, details = spam_score(t, eml)
        log(f"#   {template}: score {score}, rules {rules}")
        for line in details.splitlines():
            log("#     " + line)
        expect(score <= 0, f"{template}: score {score} > 0; rules: {rules}")


# ---- check --------------------------------------------------------------

def check(t, post, changes=None, template_dir=None):
    base = {"subscribers": os.path.join(QUALITY, "subs.csv")}
    if template_dir:
        base["templates"] = template_dir
    t.config(None, {**base, **(changes or {})})
    return t.herald("check", post)


def fixture(name):
    return os.path.join(QUALITY, name)


@SUITE.test("check: the clean fixture and examples/ pass with no error and no warning")
def test_check_clean(t):
    key, _ = dkim_key(t)
    os.chmod(key, 0o600)
    for post in (fixture("good.md"), EXAMPLE):
        r = check(t, post, dkim_changes(key))
        equal(r.code, EX_OK, f"exit code for {post}")
        expect(re.search(r": 0 errors, 0 warnings; \d+ bytes for joy@example.org", r.out),
               f"summary line: {r.out}")
        equal(r.err, "", "stderr")


# fixture: (exit code, "FILE:LINE" or "FILE", what the finding says)
LINTS = {
    "no-alt.md": (EX_DATAERR, ":8", "error: image without alt text"),
    "relative-link.md": (EX_DATAERR, ":12", "error: relative URL"),
    "http-link.md": (EX_DATAERR, ":12", "error: http: link"),
    "http-image.md": (EX_DATAERR, ":8", "error: http: image"),
    "click-here.md": (EX_DATAERR, ":12", 'error: the link text "click here" says nothing'),
    "unknown-field.md": (EX_DATAERR, ":6", 'error: unknown merge field "nmae"'),
    "no-subject.md": (EX_DATAERR, "", 'the front matter has no "subject:"'),
    "long-subject.md": (EX_OK, " (message to joy@example.org)",
                        "warning: the subject is 101 characters"),
    "no-preheader.md": (EX_OK, "", "warning: no preheader"),
}


@SUITE.test("check: each post lint trips on its fixture, with FILE:LINE, and exits 65 "
            "(warnings alone exit 0)")
def test_check_post_lints(t):
    key, _ = dkim_key(t)
    os.chmod(key, 0o600)
    for name, (code, where, says) in LINTS.items():
        r = check(t, fixture(name), dkim_changes(key))
        equal(r.code, code, f"{name}: exit code")
        expect(f"herald: {fixture(name)}{where}: {says}" in r.err,
               f"{name}: no \"{fixture(name)}{where}: {says}\" in: {r.err}")
        errors = [l for l in r.err.splitlines() if ": error: " in l]
        equal(len(errors), 1 if code == EX_DATAERR and name != "no-subject.md" else 0,
              f"{name}: errors reported")


@SUITE.test("check: a message over 102 KB is an error (Gmail clips it)")
def test_check_size(t):
    with open(fixture("good.md"), encoding="utf-8") as f:
        good = f.read()
    para = "The compost bays were turned again and the worms are doing well. " * 12
    big = t.write("big.md", good + "".join(f"\n{para}\n" for _ in range(150)))
    r = check(t, big)
    equal(r.code, EX_DATAERR, "exit code")
    expect(re.search(r"big\.md \(message to joy@example\.org\): error: the message is \d+ bytes "
                     r"\([\d.]+ KB\); Gmail clips messages over 102 KB", r.err), f"stderr: {r.err}")
    equal(check(t, fixture("good.md")).code, EX_OK, "the fixture without the padding")


@SUITE.test("check: config and template lints: no unsubscribe (78), no DKIM (warning), "
            "template without {{unsubscribe_url}} or with http:/relative URLs (65)")
def test_check_config_template(t):
    good = fixture("good.md")
    r = check(t, good, {"unsubscribe": None})
    equal(r.code, EX_CONFIG, "exit code without unsubscribe")
    expect("error: no unsubscribe.url nor unsubscribe.mailto" in r.err, f"stderr: {r.err}")
    r = check(t, good, {"unsubscribe": {"url": "http://example.org/u?e={{email}}"}})
    equal(r.code, EX_CONFIG, "exit code for an http unsubscribe URL")
    expect("error: unsubscribe.url is not https://" in r.err, f"stderr: {r.err}")
    r = check(t, good)
    equal(r.code, EX_OK, "exit code without DKIM")
    expect("herald.conf: warning: no DKIM for example.org" in r.err, f"stderr: {r.err}")
    key, _ = dkim_key(t)
    os.chmod(key, 0o600)
    r = check(t, good, {"dkim": {"domain": "example.net", "selector": "s", "key_file": key}})
    equal(r.code, EX_OK, "exit code with a DKIM domain not aligned")
    expect("warning: dkim.domain example.net is not the From domain example.org" in r.err,
           f"stderr: {r.err}")
    templates = os.path.join(QUALITY, "templates")
    r = check(t, good, {"template": "nounsub"}, templates)
    equal(r.code, EX_DATAERR, "exit code for a template without {{unsubscribe_url}}")
    for ext in ("html", "txt"):
        expect(f"nounsub.{ext}: error: no {{{{unsubscribe_url}}}}" in r.err, f"{ext}: {r.err}")
    r = check(t, good, {"template": "httplogo"}, templates)
    equal(r.code, EX_DATAERR, "exit code for a template with an http logo")
    expect("httplogo.html:5: error: http: image" in r.err, f"stderr: {r.err}")
    expect("httplogo.html:7: error: relative URL" in r.err, f"stderr: {r.err}")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
