#!/usr/bin/python3
"""herald against a real Postfix relay (issue 9): a private instance per
test (tests/postfix.py) with real relay, client and login restrictions,
relaying what it accepts to a tests/smtpd.py capture server.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_relay.py [PATTERN...]

Each test asserts herald's exit code and one-line error, bounces.log, the
suppression list, the journal, and what reached the capture server behind
Postfix; where herald stops, a rerun through a relay that lets it through
must deliver each reader exactly once.
"""

import json
import os
import sys
import time

from harness import EX_OK, EX_UNAVAILABLE, Skip, Suite, csv, equal, expect
import postfix

SUITE = Suite()
test = SUITE.test

READERS = ["ann@example.net", "bob@example.net", "cyd@example.net"]
ANN, BOB, CYD = READERS
USER, PASSWORD = "joy", "relay-Pässword"
UNTRUSTED = "192.0.2.1/32"     # mynetworks that does not hold 127.0.0.1


def need_postfix(sasl=False):
    why = postfix.available() or (sasl and postfix.sasl_available())
    if why:
        raise Skip(why)


def world(t, relay, smtp=None, readers=READERS):
    t.subscribers(csv(*(f"{a},Reader {i}" for i, a in enumerate(readers, 1))))
    t.post()
    cfg = {"smtp": {"url": relay.url(), "starttls": "never", "timeout": 10, **(smtp or {})},
           "retry": {"attempts": 2, "initial_delay": 0.2, "max_delay": 0.4}}
    t.write("herald.conf", open(t.config(None, cfg)).read())
    return cfg


def capture(t):
    return t.server()


def wait_received(s, n, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(s.received()) < n:
        time.sleep(0.1)
    return s.received()


def one_line(r, *needles):
    hits = [l for l in r.err.splitlines() if l.startswith("herald: ")
            and all(n.lower() in l.lower() for n in needles)]
    expect(hits, f"no one-line error naming {needles} in: {r.err!r}")


def nobody_blamed(t, cap, readers=READERS):
    equal(t.bounces(), [], "bounces.log")
    equal([x[1] for x in t.journal()], [], "journal")
    r = t.herald("bounces", "list")
    for a in readers:
        expect(a not in r.out, f"{a} suppressed: {r.out!r}")
    time.sleep(0.5)
    equal(cap.received(), [], "messages behind the relay")


def rerun_open_relay(t, cap, cfg, readers=READERS, smtp=None):
    """The same state dir, a relay that trusts 127.0.0.1: each reader once."""
    with postfix.Postfix(t.path("pf-open"), relayhost=cap.port) as ok:
        world(t, ok, {**cfg["smtp"], "url": ok.url(), **(smtp or {})}, readers)
        r = t.send()
        equal(r.code, EX_OK, "exit code of the rerun through an open relay")
        got = wait_received(cap, len(readers))
        equal(sorted(got), sorted(readers), "each reader received once over both runs")
        equal(sorted(x[1] for x in t.journal()), sorted(readers), "journal after the rerun")


@test("Postfix with reject_unauth_destination and 127.0.0.1 not in mynetworks "
      "(554 5.7.1 Relay access denied): exit 69, nobody bounced or suppressed, "
      "journal untouched; a rerun through a relay that lets herald in sends each once")
def test_relay_access_denied(t):
    need_postfix()
    cap = capture(t)
    with postfix.Postfix(t.path("pf"), relayhost=cap.port, mynetworks=UNTRUSTED,
                         relay_restrictions="reject_unauth_destination") as pf:
        cfg = world(t, pf)
        r = t.send()
        equal(r.code, EX_UNAVAILABLE, "exit code")
        one_line(r, pf.url(), "Relay access denied", "smtp.username", "mynetworks")
        nobody_blamed(t, cap)
    rerun_open_relay(t, cap, cfg)


@test("Postfix with smtpd_client_restrictions = reject (554 5.7.1 Client host "
      "rejected): exit 69 naming the client restrictions, nobody bounced")
def test_client_host_rejected(t):
    need_postfix()
    cap = capture(t)
    with postfix.Postfix(t.path("pf"), relayhost=cap.port,
                         client_restrictions="reject") as pf:
        cfg = world(t, pf)
        r = t.send()
        equal(r.code, EX_UNAVAILABLE, "exit code")
        one_line(r, pf.url(), "Client host rejected", "client restrictions")
        nobody_blamed(t, cap)
    rerun_open_relay(t, cap, cfg)


@test("Postfix that needs a login (SASL, 530 5.7.0 ... Authentication "
      "required) and none configured: exit 69 naming smtp.username; with the "
      "login, each reader once")
def test_auth_required(t):
    need_postfix(sasl=True)
    cap = capture(t)
    with postfix.Postfix(t.path("pf"), relayhost=cap.port, mynetworks=UNTRUSTED,
                         relay_restrictions=postfix.AUTH_REQUIRED, sasl=True,
                         users={USER: PASSWORD}) as pf:
        world(t, pf)
        r = t.send()
        equal(r.code, EX_UNAVAILABLE, "exit code")
        one_line(r, pf.url(), "Authentication required", "smtp.username")
        nobody_blamed(t, cap)
        world(t, pf, {"username": USER, "password_env": "PW"})
        r = t.send(env={"PW": PASSWORD})
        equal(r.code, EX_OK, "exit code with the login")
        equal(sorted(wait_received(cap, 3)), READERS, "received behind the relay")


@test("Postfix with the wrong password (535 5.7.8): exit 69, the error names "
      "the login, nobody bounced")
def test_wrong_password(t):
    need_postfix(sasl=True)
    cap = capture(t)
    with postfix.Postfix(t.path("pf"), relayhost=cap.port, mynetworks=UNTRUSTED,
                         relay_restrictions=postfix.AUTH_REQUIRED, sasl=True,
                         users={USER: PASSWORD}) as pf:
        world(t, pf, {"username": USER, "password_env": "PW"})
        r = t.send(env={"PW": "not-the-password"})
        equal(r.code, EX_UNAVAILABLE, "exit code")
        one_line(r, pf.url(), "smtp.username")
        nobody_blamed(t, cap)


@test("smtp.username set, Postfix offers no AUTH: exit 69, 'offers no AUTH', "
      "nothing relayed")
def test_username_without_auth(t):
    need_postfix()
    cap = capture(t)
    with postfix.Postfix(t.path("pf"), relayhost=cap.port) as pf:
        world(t, pf, {"username": USER, "password_env": "PW"})
        r = t.send(env={"PW": PASSWORD})
        equal(r.code, EX_UNAVAILABLE, "exit code")
        one_line(r, "smtp.username", "no AUTH")
        nobody_blamed(t, cap)


@test("a genuine 550 5.1.1 from Postfix for one reader (check_recipient_access): "
      "a hard bounce for that reader only, the others relayed once, exit 0")
def test_genuine_unknown_user(t):
    need_postfix()
    cap = capture(t)
    with postfix.Postfix(t.path("pf"), relayhost=cap.port,
                         recipient_restrictions="check_recipient_access "
                         "inline:{ {bob@example.net=550 5.1.1 No such user} }, "
                         "permit_mynetworks, reject") as pf:
        world(t, pf, {"connections": 1})
        r = t.send()
        equal(r.code, EX_OK, "exit code")
        equal([tuple(x[1:5]) for x in t.bounces()], [(BOB, "hard", "5.1.1", "550")],
              "bounces.log")
        equal(sorted(wait_received(cap, 2)), [ANN, CYD], "relayed")
        equal(sorted(x[1] for x in t.journal()), [ANN, CYD], "journal")


@test("Postfix is not running (its port closed): the connection is retried, "
      "not the readers; exit 69, 'not attempted 3', nothing in bounces.log")
def test_relay_down(t):
    need_postfix()
    cap = capture(t)
    pf = postfix.Postfix(t.path("pf"), relayhost=cap.port)
    cfg = world(t, pf)
    pf.stop()
    r = t.send("--json")
    equal(r.code, EX_UNAVAILABLE, "exit code")
    one_line(r, "connection refused", "2 attempts")
    j = json.loads(r.out)
    equal((j["deferred"], j["not_attempted"]), (0, 3), "deferred, not attempted")
    nobody_blamed(t, cap)
    rerun_open_relay(t, cap, cfg)


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
