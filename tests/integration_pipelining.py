#!/usr/bin/python3
"""herald's transaction phase (issue 15, part 1): SMTP pipelining (RFC
2920) and CHUNKING (RFC 3030) on the connection libcurl opened.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_pipelining.py [PATTERN...]

What the server saw is read from tests/faultsmtp.py's events: for each
command line, how many bytes the client had already sent behind it
("behind"), so a client that waits for each reply shows 0 there and a
pipelining one does not. Every test also counts what the server stored
per reader (exactly once), and the journal and bounces.log agree. The
real-server tests use a private Postfix (tests/postfix.py), which offers
PIPELINING and CHUNKING, relaying to a tests/smtpd.py capture server.

Replies out of turn (issue 21): faultsmtp holds a dot's reply past the
next envelope's, answers 354 to RCPT, sends a reply nobody asked for, a
line that is no reply, a 1xx, a multi-line reply with mixed codes. Each
test counts what the server stored per reader and what the journal says
(sent, uncertain): no refused reader journaled as sent, nobody stored
twice across the run and a rerun, pipelining off for the rest of the run.
"""

import email
import email.policy
import json
import os
import re
import shutil
import sys
import time

from harness import EX_OK, Skip, Suite, csv, equal, expect, log
import postfix

SUITE = Suite()
test = SUITE.test

READERS = [f"r{i}@example.net" for i in range(1, 6)]
BASE = {"smtp": {"timeout": 3, "starttls": "never", "connections": 1},
        "retry": {"attempts": 3, "initial_delay": 0.1, "max_delay": 0.2}}


def world(t, server, readers=READERS, post_extra="", smtp=None):
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(readers, 1))))
    t.post(post_extra)
    cfg = {k: dict(v) for k, v in BASE.items()}
    cfg["smtp"].update(smtp or {})
    t.config(server, cfg)
    return cfg


def sending_conns(s):
    """The connections that carried mail (the first is herald's probe)."""
    return sorted({e["conn"] for e in s.events() if e.get("cmd", "").startswith("MAIL")})


def commands(s, conn):
    return [e for e in s.events() if e.get("conn") == conn and "cmd" in e]


def journal(t):
    return sorted(x[1] for x in t.journal())


def exactly_once(t, s, readers):
    got = s.received()
    equal(sorted(got), sorted(readers), "readers stored, each exactly once")
    equal(journal(t), sorted(readers), "journal")


@test("PIPELINING offered: MAIL, RCPT and DATA go as one group, and each final "
      "dot goes with the next message's envelope; every reader stored once")
def test_groups(t):
    s = t.fault_server(args=["--pipelining"])
    world(t, s)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    exactly_once(t, s, READERS)
    conns = sending_conns(s)
    equal(len(conns), 1, "connections that carried mail")
    cmds = commands(s, conns[0])
    for e in cmds:
        verb = e["cmd"].split(" ")[0].split(":")[0]
        if verb in ("MAIL", "RCPT"):
            expect(e["behind"] > 0, f"{e['cmd']!r} sent alone, its reply awaited: {e}")
        if verb == "DATA":
            equal(e["behind"], 0, "bytes sent after DATA before its 354")
    dots = [e for e in cmds if e["cmd"] == "."]
    equal(len(dots), len(READERS), "end-of-data dots")
    for d in dots[:-1]:
        expect(d["behind"] > 0, f"the next envelope did not ride with the dot: {dots}")
    # Round trips on the wire: the group's replies are read together, so
    # each message costs one write by herald after the first.
    equal(sum(1 for e in cmds if e["cmd"].startswith("RSET")), 0, "RSETs on a clean run")


@test("no PIPELINING offered: each command waits for its reply (control for "
      "the test above: the same server, the same counts)")
def test_lockstep(t):
    s = t.fault_server()
    world(t, s)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    exactly_once(t, s, READERS)
    for conn in sending_conns(s):
        for e in commands(s, conn):
            if e["cmd"] != "QUIT":
                equal(e["behind"], 0, f"bytes behind {e['cmd']!r} before its reply")


@test("CHUNKING offered: MAIL, RCPT and BDAT LAST with the message in one write, "
      "no DATA, no dot; the stored bytes equal what DATA delivers")
def test_chunking(t):
    s = t.fault_server(args=["--pipelining", "--chunking"])
    world(t, s)
    r = t.send("--force")
    equal(r.code, EX_OK, "exit code")
    exactly_once(t, s, READERS)
    cmds = commands(s, sending_conns(s)[0])
    verbs = [e["cmd"].split(" ")[0].split(":")[0] for e in cmds]
    expect("DATA" not in verbs, f"DATA sent to a CHUNKING server: {verbs}")
    bdat = [e for e in cmds if e["cmd"].startswith("BDAT")]
    equal(len(bdat), len(READERS), "BDAT commands")
    for e in bdat:
        expect(re.fullmatch(r"BDAT \d+ LAST", e["cmd"]), f"BDAT line: {e['cmd']!r}")
    for e in cmds:
        if e["cmd"].startswith(("MAIL", "RCPT")):
            expect(e["behind"] > 0, f"{e['cmd']!r} sent alone: {e}")
    # The same list over DATA: each reader's message has the same body.
    d = t.fault_server(args=["--pipelining"])
    t.config(d, {**BASE})
    equal(t.send("--force").code, EX_OK, "exit code over DATA")
    body = {}
    for m in d.messages():
        body[m.rcpt_tos[0]] = m.msg.get_body(("plain",)).get_content()
    for m in s.messages():
        got = m.msg.get_body(("plain",)).get_content()
        equal(got, body[m.rcpt_tos[0]], f"text of {m.rcpt_tos[0]} over BDAT and DATA")
        expect(m.raw.endswith(b"\r\n"), "message ends with CRLF")


@test("refusals inside pipelined groups are each the right reader's at the right "
      "stage: 550 RCPT, 554 DATA, 452 after the dot once, the connection closed "
      "at a dot with the next envelope in flight; each stored once, exit 0")
def test_group_accounting(t):
    a, b, c, d, e = READERS
    s = t.fault_server({"at": "rcpt", "rcpt": b, "reply": "550 5.1.1 <%s>: no such user" % b},
                       {"at": "data", "rcpt": c, "reply": "554 5.7.1 content refused"},
                       {"at": "dot", "rcpt": d, "reply": "452 4.3.1 try later", "times": 1},
                       {"at": "dot", "rcpt": a, "do": "close", "times": 1},
                       args=["--pipelining"])
    world(t, s)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    exactly_once(t, s, [a, d, e])
    equal(sorted(tuple(x[1:5]) for x in t.bounces()),
          [(b, "hard", "5.1.1", "550"), (c, "hard", "5.7.1", "554")], "bounces.log")
    # The transaction after a refused RCPT begins with RSET.
    events = s.events()
    mails = [x for x in events if x.get("cmd", "").startswith(("MAIL", "RSET"))]
    expect(any(x["cmd"] == "RSET" for x in mails), f"no RSET after a refusal: {mails}")
    # A rerun sends nothing more.
    r2 = t.send()
    equal(r2.code, EX_OK, "exit code of the rerun")
    equal(sorted(s.received()), sorted([a, d, e]), "stored after the rerun")


def journal_split(t):
    """The journal's readers marked sent and marked uncertain."""
    sent, unsure = [], []
    for row in t.journal():
        (unsure if row[3].endswith("\tuncertain") else sent).append(row[1])
    return sorted(sent), sorted(unsure)


def misorder_check(t, s, readers, refused, r, most_uncertain=1):
    """After a run against a server whose replies went out of turn: no
    refused reader journaled as sent, nobody stored twice, every reader
    stored is in the journal, what is uncertain is at most
    most_uncertain; the refused ones that are not uncertain bounced.
    Returns (sent, uncertain)."""
    got = s.received()
    equal(len(got), len(set(got)), f"readers stored more than once: {sorted(got)}")
    sent, unsure = journal_split(t)
    equal(sorted(set(sent) & set(refused)), [], "refused readers journaled as sent")
    equal(sorted(set(sent) - set(got)), [], "journaled as sent, never stored")
    equal(sorted(set(got) - set(sent) - set(unsure)), [], "stored, not in the journal")
    expect(len(unsure) <= most_uncertain, f"uncertain: {unsure}")
    bounced = sorted(x[1] for x in t.bounces())
    equal(bounced, sorted(set(refused) - set(unsure)), "bounced: the refused, less the uncertain")
    equal(sorted(set(sent) | set(unsure) | set(bounced)), sorted(readers), "every reader accounted for")
    return sent, unsure


def pipelining_off_said(r, n=1):
    said = [l for l in r.err.splitlines() if "pipelining off for" in l]
    equal(len(said), n, f"'pipelining off for RELAY: REASON' lines on stderr: {r.err[-3000:]!r}")
    return said


MANY = [f"m{i:02d}@example.net" for i in range(1, 31)]
MANY_REFUSED = MANY[2::3]   # m03, m06, ...: 10 of 30


@test("a server that holds a dot's 550 until after the next envelope's 250, 250, "
      "354 (issue 21): no refused reader journaled as sent, nobody stored twice, "
      "at most one uncertain; pipelining off for the rest of the run and the "
      "rest bounced right; a rerun sends nothing")
def test_misordered_dot_reply(t):
    rules = [{"at": "dot", "rcpt": a, "do": "hold", "reply": "550 5.7.1 content refused"}
             for a in MANY_REFUSED]
    s = t.fault_server(*rules, args=["--pipelining"])
    world(t, s, readers=MANY)
    r = t.send("--json")
    sent, unsure = misorder_check(t, s, MANY, MANY_REFUSED, r)
    equal(r.code, EX_OK, "exit code")
    said = pipelining_off_said(r)
    expect("354" in said[0], f"the reason names the 354 out of turn: {said}")
    equal(len(unsure), 1, "uncertain: the message whose dot's reply was out of turn")
    j = json.loads(r.out)
    equal((j["sent"], j["bounced"], j["uncertain"], j["deferred"]),
          (len(MANY) - len(MANY_REFUSED), len(MANY_REFUSED) - 1, 1, 0),
          "--json sent, bounced, uncertain, deferred")
    relay = s.url().split("//", 1)[1]
    equal(list(j["pipelining_off"]), [relay], "--json pipelining_off")
    expect("354 as the reply to RCPT" in j["pipelining_off"][relay], f"reason: {j}")
    equal(sorted(s.received()), sorted(set(MANY) - set(MANY_REFUSED)), "stored")
    # After the violation every command waits for its reply.
    conns = sending_conns(s)
    for conn in conns[1:]:
        for e in commands(s, conn):
            if e["cmd"] != "QUIT":
                equal(e["behind"], 0, f"conn {conn}: bytes behind {e['cmd']!r} before its reply")
    r2 = t.send()
    equal(r2.code, EX_OK, "exit code of the rerun")
    equal(sorted(s.received()), sorted(set(MANY) - set(MANY_REFUSED)), "stored after the rerun")
    equal(journal_split(t), (sent, unsure), "journal after the rerun")


def later_lockstep(s, first):
    """Every connection after `first` that carried mail waited for each
    reply (after the violation: one command at a time)."""
    for conn in sending_conns(s):
        if conn <= first:
            continue
        for e in commands(s, conn):
            # BDAT's chunk rides behind its command by design.
            if e["cmd"] != "QUIT" and not e["cmd"].startswith("BDAT"):
                equal(e["behind"], 0, f"conn {conn}: bytes behind {e['cmd']!r} before its reply")


def out_of_turn(t, rule, args, want_uncertain, stored_twice_risk=True):
    """One reply out of turn (rule) on the first connection with mail;
    every reader stored exactly once, the journal's sent and uncertain
    readers exactly want_uncertain uncertain, pipelining off said once
    when the server pipelines, the rest one command at a time, and a
    rerun sends nothing."""
    s = t.fault_server(rule, args=args)
    world(t, s)
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    got = s.received()
    equal(sorted(got), sorted(READERS), "readers stored, each exactly once")
    sent, unsure = journal_split(t)
    equal(unsure, sorted(want_uncertain), "journaled uncertain")
    equal(sorted(sent + unsure), sorted(READERS), "journal: every reader once")
    equal(t.bounces(), [], "bounces.log")
    if "--pipelining" in args:
        pipelining_off_said(r)
        later_lockstep(s, sending_conns(s)[0])
    r2 = t.send()
    equal(r2.code, EX_OK, "exit code of the rerun")
    equal(sorted(s.received()), sorted(READERS), "stored after the rerun")
    equal(journal_split(t), (sent, unsure), "journal after the rerun")
    return s, r


A, B, C, D, E = READERS


@test("354 as the reply to a pipelined RCPT (with the last message's dot in the "
      "group): that message is uncertain, the envelope goes again one command at a "
      "time, everyone stored once, pipelining off")
def test_354_to_rcpt(t):
    out_of_turn(t, {"at": "rcpt", "rcpt": C, "reply": "354 go ahead", "times": 1},
                ["--pipelining"], [B])


@test("an extra 550 after a dot's 250 (a count that does not add up): MAIL's "
      "reply is then a 550 and RCPT's a 250 after it; the message of that dot is "
      "uncertain, nobody refused or stopped, everyone stored once")
def test_extra_reply(t):
    out_of_turn(t, {"at": "dot", "rcpt": B, "do": "extra", "times": 1,
                    "reply": "550 5.7.1 sender rejected"}, ["--pipelining"], [B])


@test("a 421 right behind a dot's 250 (the server closing, as RFC 5321 3.8 "
      "allows at any time) is no reply out of turn: that reader sent, the rest "
      "on a new connection, pipelining stays on; lockstep, pipelined and BDAT")
def test_421_behind_250(t):
    for args in ([], ["--pipelining"], ["--pipelining", "--chunking"]):
        shutil.rmtree(t.path("state"), ignore_errors=True)
        s = t.fault_server({"at": "dot", "rcpt": B, "do": "extra", "times": 1,
                            "reply": "421 4.3.2 closing"}, args=args)
        world(t, s)
        r = t.send()
        equal(r.code, EX_OK, f"exit code ({args})")
        exactly_once(t, s, READERS)
        equal(journal_split(t)[1], [], f"uncertain ({args})")
        expect("pipelining off" not in r.err, f"pipelining turned off ({args}): {r.err}")


@test("an extra 250 after a group's 354 (more replies than commands, in the same "
      "read): the message whose dot was in that group is uncertain")
def test_extra_after_354(t):
    out_of_turn(t, {"at": "data", "rcpt": B, "do": "extra", "times": 1,
                    "reply": "250 2.0.0 what"}, ["--pipelining"], [A])


@test("a reply line whose 4th character is neither space nor hyphen (250Xfoo, "
      "2500 ok) is no reply: the group is out of turn")
def test_bad_fourth_char(t):
    out_of_turn(t, {"at": "rcpt", "rcpt": C, "reply": "250Xfoo", "raw": True, "times": 1},
                ["--pipelining"], [B])
    shutil.rmtree(t.path("state"), ignore_errors=True)
    out_of_turn(t, {"at": "rcpt", "rcpt": C, "reply": "2500 ok", "raw": True, "times": 1},
                ["--pipelining"], [B])


def stored_garbage(t, name, rule):
    for args in ([], ["--pipelining"], ["--pipelining", "--chunking"]):
        shutil.rmtree(t.path("state"), ignore_errors=True)
        log(f"# --- {name} with server args {args}")
        out_of_turn(t, rule, args, [B])


@test("a 1xx before the dot's 250 (the message stored): herald takes no 1xx, so "
      "the message is uncertain and never sent again; lockstep, pipelined and BDAT")
def test_1xx_reply(t):
    stored_garbage(t, "1xx", {"at": "dot", "rcpt": B, "do": "prefix", "times": 1,
                              "reply": "150 hold on"})


@test("a line that is no SMTP reply before the dot's 250 (the message stored): "
      "uncertain, never sent again (it used to be retried: stored twice); "
      "lockstep, pipelined and BDAT")
def test_garbage_at_dot(t):
    stored_garbage(t, "garbage", {"at": "dot", "rcpt": B, "do": "prefix", "times": 1,
                                  "reply": "ok, queued", "raw": True})


@test("a multi-line reply whose lines have different codes, to the dot (the "
      "message stored): uncertain, never sent again")
def test_mismatched_multiline(t):
    stored_garbage(t, "mismatched", {"at": "dot", "rcpt": B, "do": "prefix", "times": 1,
                                     "reply": ["250-2.0.0 one", "550 5.0.0 two"]})


@test("a relay that answers every dot out of turn (a 1xx first), with no PIPELINING: "
      "connections + 2 uncertain in a row stop the run (exit 69, the error says out "
      "of turn); nobody stored twice, nobody else tried; a rerun elsewhere sends the rest")
def test_always_out_of_turn(t):
    s = t.fault_server({"at": "dot", "do": "prefix", "reply": "150 thinking"})
    world(t, s)
    r = t.send()
    equal(r.code, 69, "exit code")
    expect(re.search(r"herald: .*3 messages in a row were answered out of turn", r.err),
           f"the error: {r.err!r}")
    got = s.received()
    equal(len(got), len(set(got)), f"stored twice: {got}")
    sent, unsure = journal_split(t)
    equal((sent, unsure), ([], sorted(got)), "journal: the stored ones uncertain, none sent")
    # connections + 2 in a row, and the one more the connection had
    # already started when the relay was taken out.
    expect(3 <= len(unsure) <= 4, f"uncertain: {unsure}")
    healthy = t.fault_server()
    t.config(healthy, {**BASE})
    equal(t.send().code, EX_OK, "exit code of the rerun")
    equal(sorted(healthy.received()), sorted(set(READERS) - set(got)), "the rerun sent the rest")


@test("smtp.pipelining = false against a server that offers PIPELINING: every "
      "command waits for its reply (the wire order in the transcript); each stored once")
def test_pipelining_false(t):
    s = t.fault_server(args=["--pipelining"])
    world(t, s, smtp={"pipelining": False})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    exactly_once(t, s, READERS)
    for conn in sending_conns(s):
        verbs = []
        for e in commands(s, conn):
            verbs.append(e["cmd"].split(" ")[0].split(":")[0])
            if e["cmd"] != "QUIT":
                equal(e["behind"], 0, f"bytes behind {e['cmd']!r} before its reply")
        # DATA's event is written once its message is read: after the dot's.
        equal(verbs[:5], ["EHLO", "MAIL", "RCPT", ".", "DATA"], "wire order")
    expect("pipelining off" not in r.err, f"a pipelining-off notice for what was asked: {r.err}")


@test("smtp.pipelining = \"no\": FILE:LINE, expected true or false, exit 78, nothing sent")
def test_pipelining_not_bool(t):
    s = t.fault_server(args=["--pipelining"])
    world(t, s, smtp={"pipelining": "no"})
    r = t.send()
    equal(r.code, 78, "exit code")
    expect(re.search(r"herald\.conf:\d+: smtp\.pipelining: expected true or false", r.err),
           f"error: {r.err!r}")
    equal(s.received(), [], "stored")


DOTS = """

...and so it begins.

.a paragraph that begins with a dot

. and one with a dot and a space

```
.gitignore
. ./env.sh
..
.
```
"""


@test("a post full of lines that begin with dots: no line of any message begins "
      "with '.', so nothing needs stuffing; the text arrives whole over DATA, "
      "BDAT and the plain (non-pipelining) path")
def test_dots(t):
    out = t.path("dry")
    world(t, None, post_extra=DOTS)
    r = t.send("--dry-run", out)
    equal(r.code, EX_OK, "exit code of the dry run")
    files = sorted(os.listdir(out))
    equal(len(files), len(READERS), "messages written")
    for name in files:
        with open(os.path.join(out, name), "rb") as f:
            raw = f.read()
        starts = [l for l in raw.split(b"\r\n") if l.startswith(b".")]
        equal(starts, [], f"lines of {name} that begin with a dot")
    want_text = [".a paragraph that begins with a dot", ". and one with a dot and a space",
                 ".gitignore", ". ./env.sh", ".."]
    for args in ([], ["--pipelining"], ["--pipelining", "--chunking"]):
        s = t.fault_server(args=args)
        t.config(s, {**BASE})
        equal(t.send("--force").code, EX_OK, f"exit code ({args})")
        got = s.by_rcpt()
        equal(sorted(got), sorted(READERS), f"readers stored ({args})")
        for m in got.values():
            text = m.msg.get_body(("plain",)).get_content()
            html = m.msg.get_body(("html",)).get_content()
            for line in want_text:
                expect(line in text.splitlines() or "    " + line in text.splitlines(),
                       f"{line!r} not a line of the text part ({args}): {text!r}")
                expect(line in html, f"{line!r} not in the HTML part ({args})")
            lines = [l.strip() for l in text.splitlines()]
            expect("." in lines, f"the lone dot line lost ({args}): {text!r}")


def need_postfix():
    why = postfix.available()
    if why:
        raise Skip(why)


def postfix_world(t, pf, smtp=None):
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(READERS, 1))))
    t.post()
    cfg = {"smtp": {"url": pf.url(), "starttls": "never", "timeout": 10,
                    "connections": 1, **(smtp or {})},
           "retry": {"attempts": 2, "initial_delay": 0.2, "max_delay": 0.4}}
    t.write("herald.conf", open(t.config(None, cfg)).read())


def wait_received(s, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(s.received()) < n:
        time.sleep(0.1)
    time.sleep(0.3)
    return s.received()


def postfix_send(t, main):
    """A private Postfix that refuses r2 at RCPT, relaying to a capture
    server: herald's transcript, and what got through."""
    need_postfix()
    cap = t.server()
    bad = READERS[1]
    with postfix.Postfix(t.path("pf"), relayhost=cap.port,
                         recipient_restrictions="check_recipient_access "
                         f"inline:{{ {{{bad}=550 5.1.1 No such user}} }}, "
                         "permit_mynetworks, reject", main=main) as pf:
        postfix_world(t, pf)
        r = t.herald("-v", "send", t.path("issue-1.md"))
        equal(r.code, EX_OK, "exit code")
        ok = [a for a in READERS if a != bad]
        equal(sorted(wait_received(cap, len(ok))), sorted(ok), "relayed, each once")
        equal(journal(t), sorted(ok), "journal")
        equal([tuple(x[1:5]) for x in t.bounces()], [(bad, "hard", "5.1.1", "550")],
              "bounces.log")
        for m in cap.messages():
            expect(m.msg.get_body(("plain",)) is not None, "a text part arrived")
        time.sleep(0.5)
        t.write("pf.log", pf.log())
        return r.err


@test("a real Postfix (PIPELINING and CHUNKING): BDAT LAST, one reader refused "
      "at RCPT and bounced, the others relayed once")
def test_postfix_bdat(t):
    log = postfix_send(t, main=None)
    expect(re.search(r"^smtp \d+ > BDAT \d+ LAST$", log, re.M), "no BDAT in the transcript")
    expect(not re.search(r"^smtp \d+ > DATA$", log, re.M), "DATA sent to a CHUNKING server")


@test("a real Postfix with CHUNKING switched off (smtpd_discard_ehlo_keywords): "
      "pipelined DATA, one reader refused and bounced, the others relayed once")
def test_postfix_data(t):
    log = postfix_send(t, main={"smtpd_discard_ehlo_keywords": "chunking"})
    expect(re.search(r"^smtp \d+ > DATA$", log, re.M), "no DATA in the transcript")
    expect(not re.search(r"BDAT", log), "BDAT sent to a server without CHUNKING")
    expect(re.search(r"^smtp \d+ < 250-PIPELINING", log, re.M), "Postfix offered no PIPELINING")
    # The transcript is in wire order: MAIL, RCPT and DATA before their
    # replies, and the dot's reply after the next envelope.
    lines = [l.split(" ", 2)[2] for l in log.splitlines() if re.match(r"smtp [1-9]\d* [<>] ", l)]
    for i, l in enumerate(lines):
        if l.startswith("> MAIL FROM"):
            equal(lines[i + 1][:9], "> RCPT TO", "the line after MAIL in the transcript")
            equal(lines[i + 2], "> DATA", "the line after RCPT in the transcript")


@test("a real Postfix offering neither PIPELINING nor CHUNKING: herald waits for "
      "every reply, and Postfix logs no improper command pipelining")
def test_postfix_no_pipelining(t):
    log = postfix_send(t, main={"smtpd_discard_ehlo_keywords": "chunking, pipelining"})
    lines = [l.split(" ", 2)[2] for l in log.splitlines() if re.match(r"smtp [1-9]\d* [<>] ", l)]
    for i, l in enumerate(lines):
        if l.startswith(("> MAIL", "> RCPT", "> DATA", "> RSET")):
            expect(lines[i + 1].startswith("<"), f"{l!r} not followed by its reply: {lines[i:i+3]}")
    pflog = open(t.path("pf.log"), encoding="utf-8", errors="replace").read()
    expect("improper command pipelining" not in pflog, "Postfix saw improper pipelining")


@test("a real Postfix that times an idle connection out (smtpd_timeout 1s, 421) "
      "between paced messages: herald sees it and opens a new connection; no "
      "retry, nobody deferred, each reader relayed once")
def test_postfix_idle_timeout(t):
    need_postfix()
    cap = t.server()
    with postfix.Postfix(t.path("pf"), relayhost=cap.port,
                         main={"smtpd_timeout": "1s"}) as pf:
        postfix_world(t, pf, smtp={"timeout": 5})
        cfg = open(t.path("herald.conf")).read()
        cfg = re.sub(r"retry = \{[^}]*\}", "retry = { attempts = 1; initial_delay = 0; max_delay = 0; }", cfg)
        t.write("herald.conf", cfg + "\nrate = { per_second = 0.4; };\n")
        readers = READERS[:3]
        t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(readers, 1))))
        r = t.herald("-v", "send", t.path("issue-1.md"))
        equal(r.code, EX_OK, "exit code")
        equal(sorted(wait_received(cap, 3)), sorted(readers), "relayed, each once")
        equal(journal(t), sorted(readers), "journal")
        expect("deferred after" not in r.err, f"a deferral: {r.err}")
        mails = [l for l in r.err.splitlines() if re.match(r"smtp [1-9]\d* > MAIL", l)]
        equal(len(mails), 3, "MAIL commands (no retry)")
        expect(re.search(r"< 421 ", r.err), "Postfix's idle timeout was not seen")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
