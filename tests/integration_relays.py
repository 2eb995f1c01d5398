#!/usr/bin/python3
"""Several relays (issue 15, part 2): smtp = ( { url = ...; weight = 3; },
{ url = ...; } ) spreads the readers over relays by weight; a relay that
is down, dies or refuses the sender is taken out and its readers go to
the others without a deferral; only when every relay is out does the run
end as it does with one. Each relay may have its own rate windows, kept
across runs in state/relays.log. The summary and --json count per relay.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_relays.py [PATTERN...]

Every test runs real servers (tests/smtpd.py, tests/faultsmtp.py) on
loopback and counts, per server, what each stored: every reader exactly
once over all of them, and per relay the share the weights give.
"""

import json
import os
import re
import sys
import time

from harness import (
    EX_OK, EX_UNAVAILABLE, EX_CONFIG, Suite, base_config, closed_port, csv, equal, expect,
    libconfig, libconfig_value, merged)

SUITE = Suite()
test = SUITE.test

RETRY = {"attempts": 3, "initial_delay": 0.2, "max_delay": 0.4}


def readers(n, tag="r"):
    return [f"{tag}{i:03d}@example.net" for i in range(1, n + 1)]


def world(t, relays, addrs, extra=None):
    """The list, the post and a config whose smtp is a list of relays
    (each a dict of its keys; starttls never, timeout 3 unless given)."""
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(addrs, 1))))
    t.post()
    cfg = merged(base_config("smtp://unused"), {"smtp": None, "retry": RETRY, **(extra or {})})
    entries = ",\n  ".join(libconfig_value({"starttls": "never", "timeout": 3, **r}, "  ")
                           for r in relays)
    return t.write("herald.conf", libconfig(cfg) + f"smtp = (\n  {entries}\n);\n")


def received(*servers):
    """{address: count} over all servers' stores."""
    got = {}
    for s in servers:
        for a in s.received():
            got[a] = got.get(a, 0) + 1
    return got


def once_each(addrs, *servers):
    got = received(*servers)
    twice = sorted(a for a, n in got.items() if n > 1)
    equal(twice, [], "readers who got more than one message")
    missing = sorted(set(addrs) - set(got))
    equal(missing, [], "readers who got nothing")
    equal(sorted(got), sorted(addrs), "who received")


def relays_json(r):
    j = json.loads(r.out)
    expect("relays" in j and "relays" in j["posts"][0], f"no per-relay counts in --json: {r.out}")
    return j, {x["name"]: x for x in j["posts"][0]["relays"]}


# ---- the split ---------------------------------------------------------

@test("weights 3:1 over two servers: every reader exactly once, 3/4 of them "
      "(+-5%) at the weight-3 relay, --json and the summary count per relay")
def test_weights(t):
    addrs = readers(200)
    a, b = t.server(), t.server()
    # Unthrottled, with as many connections each: both relays are busy
    # most of the time, and the split must still follow the weights, not
    # the relays' speed.
    world(t, [{"url": a.url(), "weight": 3, "name": "big", "connections": 2},
              {"url": b.url(), "name": "small", "connections": 2}], addrs)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    once_each(addrs, a, b)
    na, nb = len(a.received()), len(b.received())
    expect(0.70 <= na / len(addrs) <= 0.80, f"share of the weight-3 relay: {na} of {len(addrs)}")
    j, per = relays_json(r)
    equal((per["big"]["sent"], per["small"]["sent"]), (na, nb), "--json sent per relay")
    equal(j["sent"], len(addrs), "--json sent")
    for name in ("big", "small"):
        equal((per[name]["bounced"], per[name]["deferred"], per[name]["uncertain"],
               per[name]["out"]), (0, 0, 0, False), f"{name}: bounced, deferred, uncertain, out")
    equal({x["name"]: x["sent"] for x in j["relays"]}, {"big": na, "small": nb},
          "top-level relays")
    # The one-line summary (-v off a terminal) has a line per relay.
    r = t.herald("-v", "send", "--force", t.path("issue-1.md"))
    equal(r.code, EX_OK, "exit code of the second run")
    expect(re.search(r"^issue-1: relay big: sent \d+, bounced 0, deferred 0$", r.err, re.M),
           f"relay line for big: {r.err!r}")
    expect(re.search(r"^issue-1: relay small: sent \d+, bounced 0, deferred 0$", r.err, re.M),
           f"relay line for small: {r.err!r}")


@test("a 550 for one reader is that reader's bounce with several relays too "
      "(once its relay has accepted someone), and nobody else's")
def test_perm_per_relay(t):
    addrs = readers(12)
    gone = addrs[7]
    a = t.server("--reject", gone)
    b = t.server("--reject", gone)
    world(t, [{"url": a.url()}, {"url": b.url()}], addrs)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    got = received(a, b)
    equal(sorted(got), sorted(set(addrs) - {gone}), "who received")
    equal([row[1] for row in t.bounces()], [gone], "bounces.log")
    j, per = relays_json(r)
    equal(sum(x["bounced"] for x in per.values()), 1, "bounced over the relays")


@test("replies out of turn from one relay (a 354 to RCPT): pipelining off for "
      "that relay only, said once on stderr and in --json; the other keeps "
      "pipelining; every reader once over both")
def test_pipelining_off_per_relay(t):
    addrs = readers(16)
    bad = t.fault_server({"at": "rcpt", "reply": "354 go ahead", "times": 1}, args=["--pipelining"])
    good = t.fault_server(args=["--pipelining"])
    world(t, [{"url": bad.url(), "name": "bad"}, {"url": good.url(), "name": "good"}], addrs)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    once_each(addrs, bad, good)
    said = [l for l in r.err.splitlines() if "pipelining off for" in l]
    equal(len(said), 1, f"pipelining-off lines on stderr: {r.err!r}")
    expect("pipelining off for bad: 354 as the reply to RCPT" in said[0], f"the line: {said}")
    j = json.loads(r.out)
    equal(sorted(j["posts"][0]["pipelining_off"]), ["bad"], "--json pipelining_off")
    equal(sorted(j["pipelining_off"]), ["bad"], "--json pipelining_off of the whole")
    # The good relay pipelined every message; the bad one after the first
    # group one command per reply.
    def mail_events(s):
        return [e for e in s.events() if e.get("cmd", "").startswith("MAIL")]
    expect(all(e["behind"] > 0 for e in mail_events(good)),
           f"the good relay stopped pipelining: {mail_events(good)}")
    first = min(e["conn"] for e in mail_events(bad))
    later = [e for e in bad.events() if "cmd" in e and e["conn"] != first and e["cmd"] != "QUIT"
             and e["conn"] in {x["conn"] for x in mail_events(bad)}]
    expect(later, "the bad relay carried no mail after its reply out of turn")
    for e in later:
        equal(e["behind"], 0, f"bad relay, conn {e['conn']}: bytes behind {e['cmd']!r}")


# ---- a relay that is not there ------------------------------------------

@test("one relay down from the start (closed port): everything goes to the "
      "other, exit 0, no deferrals, no retries; --json says why it was taken out")
def test_one_down_from_start(t):
    addrs = readers(40)
    b = t.server()
    world(t, [{"url": f"smtp://127.0.0.1:{closed_port()}", "name": "dead", "weight": 5},
              {"url": b.url(), "name": "live"}], addrs)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    once_each(addrs, b)
    j, per = relays_json(r)
    equal((j["deferred"], j["retried"], j["not_attempted"]), (0, 0, 0),
          "deferred, retried, not attempted")
    equal(per["dead"]["out"], True, "dead relay out")
    expect("connection refused" in per["dead"]["why"].lower(), f"why: {per['dead']['why']!r}")
    equal((per["live"]["sent"], per["live"]["out"]), (40, False), "live relay")
    expect("relay dead taken out" in r.err, f"warning about the relay: {r.err!r}")
    expect(not re.search(r"deferred after|retrying in", r.err), f"deferrals or waits: {r.err!r}")


@test("a relay that refuses herald (username set, no AUTH offered: a fatal "
      "probe) is taken out; the other carries every reader, exit 0")
def test_one_fatal(t):
    addrs = readers(20)
    a, b = t.server(), t.server()
    world(t, [{"url": a.url(), "name": "noauth", "username": "joy", "password": "pw"},
              {"url": b.url(), "name": "open"}], addrs)
    os.chmod(t.path("herald.conf"), 0o600)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    equal(a.received(), [], "stored at the relay that was taken out")
    once_each(addrs, b)
    j, per = relays_json(r)
    equal(per["noauth"]["out"], True, "refusing relay out")
    expect("auth" in per["noauth"]["why"].lower(), f"why: {per['noauth']['why']!r}")
    equal(j["deferred"], 0, "deferred")


@test("a relay refusing the sender at MAIL mid-run (550 5.7.1, sender side): "
      "taken out, its readers go to the other, nobody bounced, exit 0")
def test_sender_refused_mid_run(t):
    addrs = readers(30)
    a = t.fault_server({"at": "mail", "conn": 3,
                        "reply": "550 5.7.1 Sender address rejected: not owned by user"},
                       {"at": "mail", "conn": 2, "times": 3, "reply": "250 2.1.0 Ok"},
                       {"at": "mail", "conn": 2,
                        "reply": "550 5.7.1 Sender address rejected: not owned by user"})
    b = t.server()
    world(t, [{"url": a.url(), "name": "picky"}, {"url": b.url(), "name": "fine"}], addrs)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    once_each(addrs, a, b)
    equal(t.bounces(), [], "bounces.log")
    j, per = relays_json(r)
    equal(per["picky"]["out"], True, "refusing relay out")
    equal((j["deferred"], j["bounced"]), (0, 0), "deferred, bounced")


@test("one relay dies mid-run (its server killed): no reader lost, each once in "
      "the journal (a copy the dead server stored unanswered is the only double), "
      "no deferrals, exit 0")
def test_one_dies_mid_run(t):
    addrs = readers(300)
    a = t.server("--delay-ms", "15")
    b = t.server("--delay-ms", "15")
    world(t, [{"url": a.url(), "name": "doomed", "connections": 2},
              {"url": b.url(), "name": "steady", "connections": 2}], addrs)
    p = t.popen("send", "--json", t.path("issue-1.md"))
    deadline = time.monotonic() + 30
    while len(a.received()) < 30 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    expect(p.poll() is None, "herald finished before the relay could be killed")
    a.proc.kill()
    a.proc.wait()
    code = p.wait(120)
    out = open(t.path("bg1.out")).read()
    for line in out.splitlines():
        print("#   " + line, file=sys.stderr)
    equal(code, EX_OK, "exit code")
    j = json.loads(out.splitlines()[-1])
    per = {x["name"]: x for x in j["relays"]}
    equal(per["doomed"]["out"], True, "the killed relay out")
    equal(j["deferred"], 0, "deferred")
    # By herald's account nobody is doubled: the journal has each reader
    # once. A second copy can only be one the dead server stored and never
    # answered (it never took responsibility, RFC 5321 6.1, so it is sent
    # again): at most one per connection, each missing from its count.
    rows = t.journal()
    equal(sorted(row[1] for row in rows), sorted(addrs), "journal: each reader once")
    got = received(a, b)
    twice = sorted(x for x, n in got.items() if n > 1)
    unanswered = len(a.received()) - per["doomed"]["sent"] - per["doomed"]["uncertain"]
    equal(len(twice), unanswered, f"doubled readers {twice} and messages the dead relay never answered")
    expect(unanswered <= 2, f"{unanswered} unanswered at the dead relay (2 connections)")
    uncertain = {row[1] for row in t.journal() if row[3].endswith("\tuncertain")}
    missing = set(addrs) - set(got)
    expect(missing <= uncertain, f"lost readers not journalled uncertain: {sorted(missing - uncertain)}")
    equal(j["uncertain"], len(uncertain), "uncertain in --json and the journal")
    equal(j["sent"] + j["uncertain"], len(addrs), "sent + uncertain")
    expect(len(b.received()) > len(addrs) // 2, f"the other relay carried the rest: {len(b.received())}")


@test("both relays down: exit 69 the way one relay ends, nothing sent, readers "
      "not attempted (no deferrals)")
def test_both_down(t):
    addrs = readers(5)
    world(t, [{"url": f"smtp://127.0.0.1:{closed_port()}", "name": "one"},
              {"url": f"smtp://127.0.0.1:{closed_port()}", "name": "two"}], addrs)
    r = t.send("--json")
    equal(r.code, EX_UNAVAILABLE, "exit code")
    j, per = relays_json(r)
    equal((j["sent"], j["deferred"], j["not_attempted"]), (0, 0, 5),
          "sent, deferred, not attempted")
    expect(per["one"]["out"] and per["two"]["out"], f"both out: {per}")
    expect(re.search(r"herald: smtp://127\.0\.0\.1:\d+: .*connection refused.*3 attempts.*"
                     r"nothing was sent", r.err, re.I | re.S),
           f"the one-relay message for the last one: {r.err!r}")


# ---- windows -------------------------------------------------------------

@test("per_minute = 5 on one relay: it takes exactly 5, the other the rest, "
      "without waiting; a second run within the minute gives it none (relays.log)")
def test_relay_window(t):
    addrs = readers(30)
    a, b = t.server(), t.server()
    world(t, [{"url": a.url(), "name": "quota", "weight": 3, "per_minute": 5},
              {"url": b.url(), "name": "bulk"}], addrs)
    started = time.monotonic()
    r = t.send("--json")
    took = time.monotonic() - started
    equal(r.code, EX_OK, "exit code")
    once_each(addrs, a, b)
    equal(len(a.received()), 5, "messages at the relay with per_minute = 5")
    expect(took < 20, f"the run waited for the window: {took:.1f} s")
    j, per = relays_json(r)
    equal((per["quota"]["sent"], per["bulk"]["sent"]), (5, 25), "--json per relay")
    log = open(t.path("state", "relays.log")).read().splitlines()
    equal(len(log), 5, f"relays.log lines: {log}")
    expect(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\tquota", l) for l in log),
           f"relays.log: {log}")
    r = t.send("--force", "--json")
    equal(r.code, EX_OK, "exit code of the second run")
    equal(len(a.received()), 5, "the windowed relay after the second run")
    equal(len(b.received()), 25 + 30, "the other relay after the second run")


@test("the top-level rate stays a cap over all relays together: per_minute = 8 "
      "with --until-quota sends 8 over both, exit 75")
def test_global_cap(t):
    addrs = readers(20)
    a, b = t.server(), t.server()
    world(t, [{"url": a.url()}, {"url": b.url()}], addrs, {"rate": {"per_minute": 8}})
    r = t.send("--until-quota", "--json")
    equal(r.code, 75, "exit code")
    equal(len(a.received()) + len(b.received()), 8, "messages over both relays")
    expect(a.received() and b.received(), "both relays used")
    equal(json.loads(r.out)["sent"], 8, "--json sent")


# ---- one relay: as before ------------------------------------------------

@test("smtp = { ... } (one group) and a one-entry list: no per-relay output, "
      "--json without 'relays', the summary line as before")
def test_single_unchanged(t):
    addrs = readers(4)
    s = t.server()
    t.subscribers(csv(*(f"{a},Reader" for a in addrs)))
    t.post()
    t.config(s)
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    j = json.loads(r.out)
    expect("relays" not in j and "relays" not in j["posts"][0], f"relays in --json: {r.out}")
    r = t.herald("-v", "send", "--force", t.path("issue-1.md"))
    equal(r.code, EX_OK, "exit code")
    expect(re.search(r"^issue-1: sent 4, bounced 0, deferred 0, skipped 0 bad rows; ", r.err, re.M),
           f"summary: {r.err!r}")
    expect("relay" not in r.err, f"relay lines with one relay: {r.err!r}")
    world(t, [{"url": s.url()}], addrs)
    r = t.send("--force", "--json")
    equal(r.code, EX_OK, "exit code of the one-entry list")
    expect("relays" not in json.loads(r.out), f"relays in --json: {r.out}")
    equal(len(s.received()), 12, "messages stored")


# ---- config errors ------------------------------------------------------

def config_error(t, text, line, *needles):
    t.subscribers(csv("a@example.net,A"))
    t.post()
    base = libconfig(merged(base_config("smtp://unused"), {"smtp": None}))
    conf = t.write("herald.conf", base + text)
    r = t.send()
    equal(r.code, EX_CONFIG, "exit code")
    first = len(base.splitlines())
    want = f"{conf}:{first + line}: "
    expect(want in r.err, f"{want!r} not in {r.err!r}")
    for n in needles:
        expect(n in r.err, f"{n!r} not in {r.err!r}")


@test("config errors at FILE:LINE: an empty list, a bad weight, a duplicate "
      "name, an entry without url, an unknown key in an entry, a non-group entry")
def test_config_errors(t):
    config_error(t, "smtp = ( );\n", 1, "the list of relays is empty")
    config_error(t, 'smtp = (\n  { url = "smtp://127.0.0.1:2525"; },\n'
                    '  { url = "smtp://127.0.0.1:2526";\n    weight = 0; }\n);\n',
                 4, "smtp[2].weight: out of range (from 1 to 1000)")
    config_error(t, 'smtp = (\n  { url = "smtp://127.0.0.1:2525"; },\n'
                    '  { url = "smtp://127.0.0.1:2525"; }\n);\n',
                 3, 'another relay is called "127.0.0.1:2525"', "give one of them a name")
    config_error(t, 'smtp = (\n  { url = "smtp://127.0.0.1:2525"; },\n  { name = "x"; }\n);\n',
                 3, "smtp[2]: a relay in a list needs its url")
    config_error(t, 'smtp = (\n  { url = "smtp://127.0.0.1:2525"; wieght = 2; }\n);\n',
                 2, 'unknown setting "smtp.wieght"')
    config_error(t, 'smtp = ( "smtp://127.0.0.1:2525" );\n', 1,
                 "smtp[1]: each relay in the list is a group")
    config_error(t, 'smtp = (\n  { url = "smtp://127.0.0.1:2525"; name = "a b"; }\n);\n',
                 2, 'smtp[1].name: "a b"')


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
