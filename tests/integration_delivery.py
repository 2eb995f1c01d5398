#!/usr/bin/python3
"""herald delivery-engine tests (issue 3): parallel connections, rate
windows across runs, retries of scripted faults, kill -9 at random points
and resume, cron mode, --json, the terminal progress bar and summary.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_delivery.py [PATTERN...]
    KILL_SEED=N ...   replay the random kill points of an earlier run

TAP on stdout, a log of every herald run and server on stderr, as in
tests/integration.py (shared helpers in tests/harness.py).  Every test
starts its own tests/smtpd.py (aiosmtpd) on a free loopback port, scripts
its faults (--fault ADDR=SPEC, --delay-ms) and reads what it stored and
logged.  No assertion depends on how fast anything runs: where time
matters the test bounds it structurally (server-side delays that cap the
send rate, retry delays long against a few dozen local messages).
"""

import fcntl
import json
import os
import random
import re
import signal
import sys
import time

from harness import (
    EX_OK, EX_TEMPFAIL, EX_USAGE, SLUG, Suite, csv, equal, expect, log)

SUITE = Suite()
test = SUITE.test

# Retries fast enough for a test, slow enough to be seen as backoff.
RETRY = {"retry": {"attempts": 3, "initial_delay": 0.2, "max_delay": 1}}


def readers(n, prefix="reader"):
    return [f"{prefix}{i:03d}@example.net" for i in range(1, n + 1)]


def reader_csv(addrs):
    return csv(*(f"{a},Reader {i}" for i, a in enumerate(addrs, 1)))


def setup(t, server, addrs, changes=None):
    """subs.csv with addrs, the fixture post, a config for server."""
    t.subscribers(reader_csv(addrs))
    t.post()
    t.config(server, changes)


def journal_addrs(t, slug=SLUG):
    return [r[1] for r in t.journal(slug)]


def journal_snapshot(t, slug=SLUG):
    """Addresses in the journal right now, tolerating a torn last line."""
    path = t.path("state", f"{slug}.journal")
    if not os.path.exists(path):
        return set()
    with open(path, encoding="utf-8", errors="replace") as f:
        return {line.split("\t")[1] for line in f
                if line.endswith("\n") and line.count("\t") >= 3}


def bounce_rows(t, addr=None):
    return [r for r in t.bounces() if addr is None or r[1] == addr]


def conns_used(server):
    return {x["conn"] for x in server.transactions()}


def one_rcpt_per_transaction(server):
    for x in server.transactions():
        equal(len(x["rcpts"]), 1, f"recipients in transaction {x}")


def message_id(server, seq):
    with open(os.path.join(server.maildir, "new", f"{seq}.eml"), "rb") as f:
        head = f.read().split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    m = re.search(r"(?im)^Message-ID:\s*(<[^>\r\n]+>)", head)
    expect(m, f"message {seq} has no Message-ID")
    return m.group(1)


def parse_json(out):
    try:
        return json.loads(out)
    except ValueError as e:
        raise AssertionError(f"stdout is not one JSON value ({e}): {out!r}")


# ---- parallel connections -----------------------------------------------

def check_connections(t, n_conns, n_readers):
    server = t.server()
    addrs = readers(n_readers)
    setup(t, server, addrs, {"smtp": {"connections": n_conns}})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    got = server.received()
    equal(sorted(got), addrs, "every reader received exactly once")
    one_rcpt_per_transaction(server)
    equal(len(server.transactions()), n_readers, "transactions in log.jsonl")
    equal(len(conns_used(server)), n_conns,
          "distinct connections in log.jsonl (connections are reused)")
    equal(sorted(journal_addrs(t)), addrs, "journal lines")


@test("connections = 4, 200 readers: each once, one RCPT per transaction, "
      "4 reused connections, 200 journal lines")
def test_four_connections(t):
    check_connections(t, 4, 200)


@test("connections = 1: one connection for the whole list")
def test_one_connection(t):
    check_connections(t, 1, 30)


@test("connections = 4 work at once: 4 messages wait for their end-of-DATA "
      "reply together")
def test_connections_overlap(t):
    # The server stores each message, then answers its end-of-DATA 300 ms
    # later and records how many stored messages were still waiting for
    # their reply. Four connections that really run at once have all four
    # messages on the wire within a few ms of each other; a client that
    # waits out one reply before going on with the next connection never
    # has two.
    server = t.server("--delay-ms", "300")
    addrs = readers(8)
    setup(t, server, addrs, {"smtp": {"connections": 4}})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    envs = server.envelopes()
    equal(sorted(e["rcpt_tos"][0] for e in envs), addrs, "delivered")
    equal(len(conns_used(server)), 4, "connections used")
    overlap = max(e["in_flight"] for e in envs) + 1
    equal(overlap, 4, "most messages waiting for their end-of-DATA reply at once "
          f"(in_flight per message: {[e['in_flight'] for e in envs]})")


# ---- rate windows -------------------------------------------------------

def check_quota_across_runs(t, rate, quota, window, conns=1):
    server = t.server()
    addrs = readers(12)
    setup(t, server, addrs, {"rate": rate, "smtp": {"connections": conns}})
    r = t.send("--until-quota")
    equal(r.code, EX_TEMPFAIL, "exit code of the first run")
    equal(len(server.received()), quota, "delivered by the first run")
    expect(window in r.err, f"stderr does not name the {window} quota: {r.err!r}")
    equal(sorted(journal_addrs(t)), sorted(server.received()), "journal")
    r = t.send("--until-quota")
    equal(r.code, EX_TEMPFAIL, "exit code of an immediate second run")
    equal(len(server.received()), quota,
          "delivered after the second run (its window is seeded from state_dir)")
    expect(window in r.err, f"second run: stderr does not name the {window} "
           f"quota: {r.err!r}")


@test("rate.per_minute = 5, --until-quota: 5 sent, exit 75 naming per_minute; "
      "a second run sends 0 and exits 75")
def test_per_minute_quota(t):
    check_quota_across_runs(t, {"per_minute": 5}, 5, "per_minute")


@test("rate.per_minute = 5 holds across 4 parallel connections")
def test_per_minute_quota_parallel(t):
    check_quota_across_runs(t, {"per_minute": 5}, 5, "per_minute", conns=4)


@test("rate.per_day = 3, --until-quota: 3 sent, then 0, exit 75 naming per_day")
def test_per_day_quota(t):
    check_quota_across_runs(t, {"per_day": 3}, 3, "per_day")


@test("per_second = 20, burst = 2, without --until-quota: all 10 delivered, exit 0")
def test_per_second_burst(t):
    server = t.server()
    addrs = readers(10)
    setup(t, server, addrs, {"rate": {"per_second": 20.0, "burst": 2}})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    equal(sorted(server.received()), addrs, "delivered")


@test("--rate 100/s,burst=3,1000/h accepted; each window of a --rate list applies")
def test_rate_option(t):
    server = t.server()
    addrs = readers(5)
    setup(t, server, addrs)
    r = t.send("--rate", "100/s,burst=3,1000/h")
    equal(r.code, EX_OK, "exit code with --rate 100/s,burst=3,1000/h")
    equal(sorted(server.received()), addrs, "delivered")

    second = t.server()
    t.config(second, {"state_dir": "state2"}, name="second.conf")
    r = t.send("--rate", "100/s,burst=3,2/min,1000/h", "--until-quota",
               conf=t.path("second.conf"))
    equal(r.code, EX_TEMPFAIL, "exit code with 2/min in the --rate list")
    equal(len(second.received()), 2, "delivered under --rate ...,2/min,...")
    expect("per_minute" in r.err, f"stderr does not name per_minute: {r.err!r}")


@test("--rate 10/fortnight: exit 64, nothing sent")
def test_rate_bad_unit(t):
    server = t.server()
    setup(t, server, readers(3))
    r = t.send("--rate", "10/fortnight")
    equal(r.code, EX_USAGE, "exit code")
    expect("fortnight" in r.err, f"stderr does not quote the bad spec: {r.err!r}")
    equal(server.received(), [], "delivered")


# ---- retries ------------------------------------------------------------

FAULTY = "faulty@example.net"


def fault_world(t, spec, n=5, changes=None, pos=2):
    """n readers with FAULTY at index pos, a server scripted with
    FAULTY=spec, RETRY settings."""
    server = t.server("--fault", f"{FAULTY}={spec}")
    addrs = readers(n - 1)
    addrs.insert(pos, FAULTY)
    setup(t, server, addrs, dict(RETRY, **(changes or {})))
    return server, addrs


def check_retried_once(t, server, addrs, r):
    equal(r.code, EX_OK, "exit code")
    equal(sorted(server.received()), sorted(addrs),
          "every reader received exactly once")
    equal(server.rcpt_attempts(FAULTY), 2, f"RCPT attempts for {FAULTY}")
    for a in addrs:
        if a != FAULTY:
            equal(server.rcpt_attempts(a), 1, f"RCPT attempts for {a}")
    equal(bounce_rows(t), [], "bounces.log")
    equal(sorted(journal_addrs(t)), sorted(addrs), "journal")
    j = parse_json(r.out)
    equal(j["retried"], 1, "retried in --json")
    equal((j["sent"], j["deferred"], j["bounced"]), (len(addrs), 0, 0),
          "sent, deferred, bounced in --json")


@test("451 once: delivered on the second try, exit 0, no bounce line, retried = 1")
def test_retry_451_once(t):
    server, addrs = fault_world(t, "451x1")
    check_retried_once(t, server, addrs, t.send("--json"))


@test("421 once: retried on a new connection and delivered, the others too")
def test_retry_421_once(t):
    server, addrs = fault_world(t, "421x1")
    r = t.send("--json")
    check_retried_once(t, server, addrs, r)
    txns = server.transactions()
    refused = [x for x in txns if x["rcpts"] and x["rcpts"][0]["code"] == 421]
    equal(len(refused), 1, "transactions answered 421")
    dead, when = refused[0]["conn"], refused[0]["time"]
    expect(not [x for x in txns if x["conn"] == dead and x["time"] > when],
           "the connection that said 421 was used again")
    env = [e for e in server.envelopes() if e["rcpt_tos"] == [FAULTY]]
    expect(env[0]["conn"] != dead, f"{FAULTY} delivered on the 421 connection")


@test("connection dropped after DATA once: retried, delivered exactly once")
def test_retry_drop_data_once(t):
    server, addrs = fault_world(t, "drop-datax1")
    r = t.send("--json")
    check_retried_once(t, server, addrs, r)
    dropped = [x for x in server.transactions() if x["end"] == "drop-data"]
    equal([x["rcpts"][0]["addr"] for x in dropped], [FAULTY],
          "transactions dropped after DATA")


@test("550: never retried (one RCPT), hard line in bounces.log, exit 0")
def test_550_not_retried(t):
    server, addrs = fault_world(t, "550")
    r = t.send("--json")
    equal(r.code, EX_OK, "exit code")
    equal(server.rcpt_attempts(FAULTY), 1, f"RCPT attempts for {FAULTY}")
    others = sorted(a for a in addrs if a != FAULTY)
    equal(sorted(server.received()), others, "delivered")
    rows = bounce_rows(t)
    equal([(b[1], b[2], b[3], b[4]) for b in rows],
          [(FAULTY, "hard", "5.1.1", "550")], "bounces.log (address, kind, status, code)")
    j = parse_json(r.out)
    equal((j["sent"], j["bounced"], j["retried"]), (len(others), 1, 0),
          "sent, bounced, retried in --json")


@test("451 always: exactly 3 RCPT attempts, exit 75, one soft line; "
      "a rerun without the fault delivers it and nothing else")
def test_451_always(t):
    server, addrs = fault_world(t, "451")
    r = t.send()
    equal(r.code, EX_TEMPFAIL, "exit code")
    equal(server.rcpt_attempts(FAULTY), 3, f"RCPT attempts for {FAULTY}")
    others = sorted(a for a in addrs if a != FAULTY)
    equal(sorted(server.received()), others, "delivered")
    rows = bounce_rows(t)
    equal([(b[1], b[2], b[3], b[4]) for b in rows],
          [(FAULTY, "soft", "4.2.0", "451")], "bounces.log (address, kind, status, code)")
    expect(FAULTY in r.err, f"stderr does not name the deferred address: {r.err!r}")

    healed = t.server()
    t.config(healed, RETRY)
    r = t.send()
    equal(r.code, EX_OK, "exit code of the rerun")
    equal(healed.received(), [FAULTY], "delivered by the rerun")
    equal(sorted(journal_addrs(t)), sorted(addrs), "journal after the rerun")
    equal(len(bounce_rows(t)), 1, "bounces.log lines after the rerun")


@test("a retry waits without blocking: the deferred first reader arrives after "
      "later ones")
def test_retry_does_not_block(t):
    # The first reader is deferred once for 0.8-1.2 s (initial_delay 1.0
    # with jitter); the other 20 go over two connections meanwhile. A loop
    # that slept through the backoff would deliver it after at most the
    # one or two readers already on the wire.
    server, addrs = fault_world(
        t, "451x1", n=21, pos=0,
        changes={"retry": {"attempts": 3, "initial_delay": 1.0, "max_delay": 2},
                 "smtp": {"connections": 2}})
    r = t.send()
    equal(r.code, EX_OK, "exit code")
    got = server.received()
    equal(sorted(got), sorted(addrs), "every reader received exactly once")
    equal(server.rcpt_attempts(FAULTY), 2, f"RCPT attempts for {FAULTY}")
    before = got.index(FAULTY)
    later_first = [a for a in got[:before] if addrs.index(a) > addrs.index(FAULTY)]
    expect(len(later_first) >= 5,
           f"{FAULTY} (first in the list, deferred once) delivered after only "
           f"{len(later_first)} later readers: {got}")


# ---- kill -9 and resume --------------------------------------------------

def kill_seed():
    seed = os.environ.get("KILL_SEED")
    return int(seed) if seed else random.SystemRandom().randrange(1 << 32)


def check_kill_resume(t, conns, kills, delay_ms, n_readers=300):
    """Kill herald `kills` times at random points, then let it finish;
    check what the servers stored against the journal.

    delay_ms is the server's pause between storing a message and answering
    its end-of-DATA: it is where a kill leaves a stored message that herald
    never saw accepted, and it caps the rate at conns * 1000 / delay_ms
    messages per second, so that the longest possible series of kills
    (kills * 0.6 s) cannot finish the list: every kill lands mid-send.
    The final run goes to a second server without the pause."""
    expect(kills * 0.6 * conns * 1000 / delay_ms < n_readers,
           "test setup: the list could be finished before the last kill")
    seed = kill_seed()
    print(f"# kill test, connections = {conns}: KILL_SEED={seed}", flush=True)
    log(f"# KILL_SEED={seed}")
    rng = random.Random(seed)
    killed = t.server("--delay-ms", str(delay_ms))
    addrs = readers(n_readers)
    setup(t, killed, addrs, {"smtp": {"connections": conns}})

    starts, snapshots = [], []
    for k in range(1, kills + 1):
        starts.append(time.time())
        p = t.popen("send", t.path(f"{SLUG}.md"))
        time.sleep(rng.uniform(0.05, 0.6))
        expect(p.poll() is None,
               f"kill {k}: herald exited {p.returncode} by itself before the kill")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        snapshots.append(journal_snapshot(t))
        log(f"#   kill {k}: {len(snapshots[-1])} in the journal, "
            f"{len(killed.envelopes())} stored")
        # Lets the server take in the dead connections before the next
        # run, so connections are told apart by the time they came.
        time.sleep(0.1)
    final = t.server()
    t.config(final, {"smtp": {"connections": conns}})
    r = t.send()
    equal(r.code, EX_OK, "exit code of the final run")

    journal = t.journal()
    jaddrs = [row[1] for row in journal]
    equal(len(jaddrs), len(set(jaddrs)), "journal lines with a repeated address")
    equal(sorted(jaddrs), addrs, "journal: one line per reader")
    expect(os.path.exists(t.path("state", f"{SLUG}.done")), f"state/{SLUG}.done missing")
    jmsgid = {row[1]: row[2] for row in journal}

    copies = []        # every stored message: (server, envelope)
    for server in (killed, final):
        for e in server.envelopes():
            equal(len(e["rcpt_tos"]), 1, f"recipients of message {e['seq']}")
            copies.append((server, e))
    got = [e["rcpt_tos"][0] for _, e in copies]
    equal(sorted(set(got)), addrs, "readers received at least once")
    dups = len(got) - len(addrs)
    log(f"#   {kills} kills, {len(got)} messages stored, {dups} duplicates")
    expect(dups <= kills * conns,
           f"{dups} duplicates after {kills} kills with {conns} connections")

    # Each reader's journal line names the one copy herald saw accepted;
    # any other copy must have been on the wire when a kill came: the
    # last message of its connection, in a killed run, and its reader not
    # in the journal when that run was killed.
    last_on_conn = {}  # (server dir, conn) -> seq of its last message
    for server, e in copies:
        key = (server.dir, e["conn"])
        last_on_conn[key] = max(last_on_conn.get(key, 0), e["seq"])
    journaled = {a: 0 for a in addrs}
    per_run = [0] * kills
    for server, e in copies:
        a = e["rcpt_tos"][0]
        if message_id(server, e["seq"]) == jmsgid[a]:
            journaled[a] += 1
            continue
        expect(server is killed, f"{a}: the final run sent a copy the journal "
               f"does not name (message {e['seq']})")
        run = max(i for i, s in enumerate(starts) if s <= e["conn_time"])
        expect(e["seq"] == last_on_conn[(server.dir, e["conn"])],
               f"{a}: unjournaled copy (message {e['seq']}) is not the last "
               f"message of its connection: herald went on on that connection "
               f"without journaling it")
        expect(a not in snapshots[run],
               f"{a}: sent again although its journal line was there at kill {run + 1}")
        per_run[run] += 1
    bad = {a: n for a, n in journaled.items() if n != 1}
    equal(bad, {}, "readers whose journaled Message-ID is not that of exactly one stored copy")
    for k, n in enumerate(per_run, 1):
        expect(n <= conns, f"kill {k}: {n} duplicates with {conns} connections")


@test("kill -9 at 12 random points, connections = 1, then resume: each reader "
      "at least once, duplicates only for messages in flight at a kill")
def test_kill_resume_one_connection(t):
    check_kill_resume(t, conns=1, kills=12, delay_ms=25)


@test("kill -9 at 12 random points, connections = 4, then resume: each reader "
      "at least once, at most one duplicate per connection per kill")
def test_kill_resume_four_connections(t):
    check_kill_resume(t, conns=4, kills=12, delay_ms=100)


# ---- cron mode ----------------------------------------------------------

def dated_post(t, name, date):
    return t.write(f"posts/{name}.md",
                   f"---\nsubject: Post {name}\ndate: {date}\n---\n"
                   "Hi {{name|reader}},\n\nThis is post " + name + ".\n")


class hold_lock:
    """Holds an exclusive flock on state/herald.lock, as a running herald
    does."""

    def __init__(self, t):
        self.path = t.path("state", "herald.lock")

    def __enter__(self):
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc):
        self.f.close()


def check_one_lock_line(r):
    equal(r.out, "", "stdout while the lock is held")
    lines = r.err.splitlines()
    equal(len(lines), 1, f"lines on stderr while the lock is held: {lines}")
    expect("lock" in lines[0] or "another herald" in lines[0],
           f"stderr does not say why: {lines[0]!r}")


def subjects(server):
    return sorted(str(m.msg["Subject"]) for m in server.messages())


@test("cron: --due DIR sends only the due, unsent post, silently; then nothing; "
      "a held lock exits 75 with one line; --due on a future post is silent")
def test_cron_due(t):
    server = t.server()
    addrs = readers(3)
    t.subscribers(reader_csv(addrs))
    t.config(server)
    dated_post(t, "a-past", "2020-01-06 08:00")
    future = dated_post(t, "b-future", "2099-01-04 08:00")
    sent = dated_post(t, "c-sent", "2020-01-13 08:00")
    posts = t.path("posts")

    r = t.send(post=sent)
    equal(r.code, EX_OK, "exit code of sending c-sent beforehand")
    equal(subjects(server), ["Post c-sent"] * 3, "sent beforehand")

    r = t.herald("-q", "send", "--due", posts)
    equal((r.code, r.out, r.err), (EX_OK, "", ""), "first cron run: exit, stdout, stderr")
    equal(subjects(server), ["Post a-past"] * 3 + ["Post c-sent"] * 3,
          "delivered after the first cron run")
    equal(sorted(journal_addrs(t, "a-past")), addrs, "journal of a-past")
    expect(os.path.exists(t.path("state", "a-past.done")), "a-past.done missing")
    equal(journal_addrs(t, "b-future"), [], "journal of b-future")

    r = t.herald("-q", "send", "--due", posts)
    equal((r.code, r.out, r.err), (EX_OK, "", ""), "second cron run: exit, stdout, stderr")
    equal(len(server.messages()), 6, "messages after the second cron run")

    # Another herald is sending d-past (due, not sent) when cron fires.
    dated_post(t, "d-past", "2020-01-20 08:00")
    with hold_lock(t):
        r = t.herald("-q", "send", "--due", posts)
    equal(r.code, EX_TEMPFAIL, "exit code while the lock is held")
    check_one_lock_line(r)
    equal(len(server.messages()), 6, "messages sent while the lock was held")

    r = t.herald("send", "--due", future)
    equal((r.code, r.out, r.err), (EX_OK, "", ""), "--due FUTURE.md: exit, stdout, stderr")
    equal(len(server.messages()), 6, "messages after --due FUTURE.md")


@test("cron: `send --due DIR` without -q, lock held: exit 75, one line on stderr")
def test_cron_lock_not_quiet(t):
    server = t.server()
    t.subscribers(reader_csv(readers(2)))
    t.config(server)
    dated_post(t, "a-past", "2020-01-06 08:00")
    os.makedirs(t.path("state"))
    with hold_lock(t):
        r = t.herald("send", "--due", t.path("posts"))
    equal(r.code, EX_TEMPFAIL, "exit code")
    check_one_lock_line(r)
    equal(len(server.messages()), 0, "messages sent")


@test("cron: lock held, two due posts: exit 75, still one line on stderr")
def test_cron_lock_two_due(t):
    server = t.server()
    t.subscribers(reader_csv(readers(2)))
    t.config(server)
    dated_post(t, "a-past", "2020-01-06 08:00")
    dated_post(t, "b-past", "2020-01-13 08:00")
    os.makedirs(t.path("state"))
    with hold_lock(t):
        r = t.herald("-q", "send", "--due", t.path("posts"))
    equal(r.code, EX_TEMPFAIL, "exit code")
    check_one_lock_line(r)
    equal(len(server.messages()), 0, "messages sent")


# ---- --json and the terminal -------------------------------------------

@test("--json: stdout is one JSON object with the counts, exit and posts[0].post")
def test_json(t):
    server = t.server("--fault", "gone@example.net=550",
                      "--fault", "slow@example.net=451")
    t.subscribers(csv("ann@example.net,Ann", "gone@example.net,Gone",
                      "slow@example.net,Slow", "not-an-address,Bad",
                      "bob@example.net,Bob"))
    t.post()
    t.config(server, RETRY)
    r = t.send("--json")
    equal(r.code, EX_TEMPFAIL, "exit code")
    j = parse_json(r.out)
    expect(isinstance(j, dict), f"not an object: {j!r}")
    equal({k: j.get(k) for k in ("exit", "sent", "bounced", "deferred", "skipped")},
          {"exit": EX_TEMPFAIL, "sent": 2, "bounced": 1, "deferred": 1, "skipped": 1},
          "summary")
    equal(len(j.get("posts") or []), 1, "posts")
    equal(j["posts"][0].get("post"), SLUG, "posts[0].post")
    equal(j["posts"][0].get("exit"), EX_TEMPFAIL, "posts[0].exit")


PROGRESS_RE = re.compile(r"\[[= ]+\] \d+/\d+ +[0-9.]+ msg/s")


@test("on a terminal: a progress bar and the summary table")
def test_tty(t):
    server = t.server("--delay-ms", "20")
    addrs = readers(20)
    setup(t, server, addrs)
    r = t.herald_tty("send", t.path(f"{SLUG}.md"))
    equal(r.code, EX_OK, "exit code")
    equal(sorted(server.received()), addrs, "delivered")
    expect(PROGRESS_RE.search(r.out),
           f"no progress bar ([===  ] N/M  R msg/s) on the terminal: {r.out!r}")
    lines = [l.split("\r")[-1] for l in r.out.replace("\r\n", "\n").split("\n")]
    expect(any(re.match(r"  sent +20\b", l) for l in lines),
           f"no '  sent  20' line in the summary: {lines}")
    expect(any(l.startswith("  time") for l in lines),
           f"no '  time' line in the summary: {lines}")


@test("on a terminal, a paced send shows the ETA and the limiting window")
def test_tty_rate(t):
    server = t.server()
    addrs = readers(15)
    setup(t, server, addrs, {"rate": {"per_second": 10.0, "burst": 1}})
    r = t.herald_tty("send", t.path(f"{SLUG}.md"))
    equal(r.code, EX_OK, "exit code")
    equal(sorted(server.received()), addrs, "delivered")
    expect(re.search(r"msg/s +ETA \d+:\d\d", r.out),
           f"no ETA after the rate in the progress bar: {r.out!r}")
    expect("per_second" in r.out,
           f"the progress bar never names the limiting window (per_second): {r.out!r}")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
