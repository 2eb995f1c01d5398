#!/usr/bin/python3
"""Segments (issue 14.3): `send --where COL=VALUE` (repeatable; also
COL!=VALUE and COL=A|B) and a post's `audience:` front matter select the
rows every rule holds for; the journal, resume, suppression and --due work
per post as before.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_segments.py [PATTERN...]

Against the capture server (tests/smtpd.py): each test counts what the
server stored per reader and compares it with the rows that match.
"""

import json
import os
import shutil
import sys

from harness import EX_DATAERR, EX_OK, EX_USAGE, SLUG, Suite, csv, equal, expect

SUITE = Suite()
test = SUITE.test

ROWS = [("ann@example.net", "Ann", "fr", "pro"), ("bob@example.net", "Bob", "en", "free"),
        ("cem@example.net", "Cem", "FR ", "free"), ("dan@example.net", "Dan", "de", "pro"),
        ("eve@example.net", "Eve", "", "pro"), ("fay@example.net", "Fay", "fr", "")]
LIST = csv(*(",".join(r) for r in ROWS), header="email,name,lang,plan")


def rows_where(pred):
    return sorted(r[0] for r in ROWS if pred(r[2].strip().lower(), r[3].strip().lower()))


def world(t, server=None, audience=None):
    t.subscribers(LIST)
    t.post()
    if audience:
        with open(t.path(f"{SLUG}.md")) as f:
            text = f.read()
        t.write(f"{SLUG}.md", text.replace("---\n", f"---\naudience: {audience}\n", 1))
    return t.config(server)


def received(server):
    return sorted(server.by_rcpt())


@test("--where: =, != and A|B, repeated (all must hold), case and blanks ignored: the server "
      "gets exactly the rows that match; the summary and --json count the rest")
def test_where_rules(t):
    cases = [
        (["lang=fr"], lambda l, p: l == "fr"),
        (["lang!=fr"], lambda l, p: l != "fr"),
        (["lang=fr|de"], lambda l, p: l in ("fr", "de")),
        (["lang=fr", "plan=pro"], lambda l, p: l == "fr" and p == "pro"),
        (["lang=", "plan!=free"], lambda l, p: l == "" and p != "free"),
    ]
    for where, pred in cases:
        server = t.server()
        world(t, server)
        args = [a for w in where for a in ("--where", w)]
        r = t.send(*args, "--json")
        equal(r.code, EX_OK, f"{where}: exit")
        want = rows_where(pred)
        equal(received(server), want, f"{where}: who got it")
        out = json.loads(r.out)
        equal(out["sent"], len(want), f"{where}: sent")
        equal(out["excluded"], len(ROWS) - len(want), f"{where}: excluded")
        server.stop()
        shutil.rmtree(t.path("state"), ignore_errors=True)  # a fresh journal per case
    server = t.server()
    world(t, server)
    r = t.herald("-v", "send", t.path(f"{SLUG}.md"), "--where", "lang=fr")
    expect(", 3 not in the segment" in r.err, f"summary line: {r.err}")


@test("--where runs never mark the post sent: a later run without it (or send --due) "
      "sends the rest, and nobody twice")
def test_where_then_rest(t):
    server = t.server()
    world(t, server)
    equal(t.send("--where", "lang=fr").code, EX_OK, "segment run")
    equal(received(server), rows_where(lambda l, p: l == "fr"), "first run")
    expect(not os.path.exists(t.path("state", f"{SLUG}.done")), "a --where run marked the post done")
    equal(t.send("--due").code, EX_OK, "--due run")
    mails = server.by_rcpt()  # fails if anyone got two
    equal(sorted(mails), sorted(r[0] for r in ROWS), "everyone once")
    expect(os.path.exists(t.path("state", f"{SLUG}.done")), "the full run did not mark it done")


@test("audience: in the front matter: send, preview and check keep to it; --due marks the post "
      "done once the audience has it; --where narrows it further")
def test_audience(t):
    server = t.server()
    conf = world(t, server, audience="lang=fr")
    r = t.herald("preview", t.path(f"{SLUG}.md"), "-o", t.path("p"), "--no-screenshots")
    equal(r.code, EX_OK, "preview")
    with open(t.path("p", f"{SLUG}.eml"), "rb") as f:
        expect(b"To: Ann <ann@example.net>" in f.read(), "preview is not for the first fr reader")
    r = t.herald("preview", t.path(f"{SLUG}.md"), "--as", "bob@example.net", "-o", t.path("p"),
                 "--no-screenshots")
    equal(r.code, EX_DATAERR, "preview --as outside the audience")
    expect("bob@example.net is not in the post's audience (lang=fr)" in r.err, r.err)
    equal(t.herald("check", t.path(f"{SLUG}.md")).code, EX_OK, "check")
    r = t.send("--where", "plan=pro")
    equal(received(server), ["ann@example.net"], "audience and --where")
    r = t.send("--due")
    equal(r.code, EX_OK, "--due")
    equal(received(server), rows_where(lambda l, p: l == "fr"), "the audience, once each")
    expect(os.path.exists(t.path("state", f"{SLUG}.done")), "not marked done")
    equal(t.send("--due").code, EX_OK, "--due again")
    equal(len(server.messages()), 3, "a done post was sent again")


@test("bad segments: a column the list lacks is 65 naming it and the list's columns (send, "
      "check); bad syntax is 64 (--where) or 65 at post.md:LINE (audience); nothing sent")
def test_bad_segments(t):
    server = t.server()
    world(t, server)
    r = t.send("--where", "country=fr")
    equal(r.code, EX_DATAERR, "missing column")
    expect('--where: ' in r.err and 'has no column "country" (its columns: email, name, lang, plan)'
           in r.err, r.err)
    r = t.send("--where", "lang")
    equal(r.code, EX_USAGE, "no operator")
    expect('--where: "lang": expected COLUMN=VALUE, COLUMN!=VALUE or COLUMN=A|B' in r.err, r.err)
    world(t, server, audience="=fr")
    r = t.send()
    equal(r.code, EX_DATAERR, "audience syntax")
    expect(f"{SLUG}.md:2: audience: \"=fr\": no column before the '='" in r.err, r.err)
    world(t, server, audience="country=fr")
    r = t.herald("check", t.path(f"{SLUG}.md"))
    equal(r.code, EX_DATAERR, "check, missing column")
    expect(f"{SLUG}.md:2: audience: " in r.err and 'no column "country"' in r.err, r.err)
    equal(server.messages(), [], "something was sent")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
