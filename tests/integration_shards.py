#!/usr/bin/python3
"""Sending from several hosts (issue 15 part 3): send --shard I/N against
one capture server from separate state directories at once, the shard
formula recomputed here from docs/scaling.md's definition, bad --shard values,
and herald state merge: resume and suppression from the merged state,
a directory a running send holds refused, torn and damaged lines
reported as FILE:LINE, and kill -9 at every rename of the merge.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_shards.py [PATTERN...]

Every test counts what the capture server stored per reader.
"""

import collections
import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from harness import (EX_OK, EX_TEMPFAIL, EX_USAGE, HERALD, SLUG, Run, Skip, Suite, csv,
                     equal, expect, log)

SUITE = Suite()
test = SUITE.test
READERS = ([f"reader{i}@example.net" for i in range(1, 281)]
           + [f"Mixed.Case{i}@Example.NET" for i in range(1, 21)])
BASE = {"smtp": {"timeout": 10, "starttls": "never", "connections": 2},
        "retry": {"attempts": 2, "initial_delay": 0, "max_delay": 0}}


def shard_of(addr, n):
    """docs/scaling.md's formula: SHA-256 of the address, ASCII letters lower-cased;
    its first 8 bytes as a big-endian integer, mod N, plus 1."""
    low = addr.encode().translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                                  b"abcdefghijklmnopqrstuvwxyz"))
    return int.from_bytes(hashlib.sha256(low).digest()[:8], "big") % n + 1


def world(t, server, hosts, readers=READERS, extra_rows=()):
    """One list and post, a config per host (hostK.conf, state_dir stateK)."""
    t.subscribers(csv(*(f"{a},Reader" for a in readers), *extra_rows))
    t.post()
    for k in range(1, hosts + 1):
        t.config(server, {**BASE, "state_dir": f"state{k}"}, name=f"host{k}.conf")


def conf(t, k):
    return t.path(f"host{k}.conf")


def post(t):
    return t.path(f"{SLUG}.md")


def send_shards(t, n, *args, parallel=True):
    """send --shard K/N --json from host K for every K; returns {K: json}."""
    out = {}
    if parallel:
        procs = {k: t.popen("send", post(t), "--shard", f"{k}/{n}", "--json", *args,
                            conf=conf(t, k)) for k in range(1, n + 1)}
        for k, p in procs.items():
            equal(p.wait(120), EX_OK, f"exit of shard {k}/{n}")
        for k in procs:
            with open(t.path(f"bg{k}.out")) as f:
                text = f.read()
            log("# shard %d/%d: %s" % (k, n, text.strip()[-400:]))
            out[k] = json.loads([l for l in text.splitlines() if l.startswith("{")][-1])
        return out
    for k in range(1, n + 1):
        r = t.herald("send", post(t), "--shard", f"{k}/{n}", "--json", *args, conf=conf(t, k))
        equal(r.code, EX_OK, f"exit of shard {k}/{n}")
        out[k] = json.loads(r.out)
    return out


def journal_addrs(t, k):
    p = t.path(f"state{k}", f"{SLUG}.journal")
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [l.split("\t")[1] for l in f if l.strip()]


def disjoint_and_covering(t, server, n):
    got = send_shards(t, n)
    counts = collections.Counter(server.received())
    equal({a: counts[a] for a in READERS}, {a: 1 for a in READERS},
          f"messages stored per reader over {n} shards")
    equal(sum(counts.values()), len(READERS), "messages stored")
    for k in range(1, n + 1):
        want = sorted(a for a in READERS if shard_of(a, n) == k)
        equal(sorted(journal_addrs(t, k)), want, f"readers in host {k}'s journal (shard {k}/{n})")
        p = got[k]["posts"][0]
        equal(p["shard"], f"{k}/{n}", "shard in the JSON")
        equal(p["sent"], len(want), f"sent by shard {k}/{n}")
        equal(p["other_shards"], len(READERS) - len(want), f"other_shards of shard {k}/{n}")
        expect(not os.path.exists(t.path(f"state{k}", f"{SLUG}.done")),
               f"a shard's run marks the post done in state{k}")
        with open(t.path(f"state{k}", f"{SLUG}.shards")) as f:
            marks = [l.rstrip("\n").split("\t")[1:] for l in f]
        equal(marks, [[f"{k}/{n}", "begun"], [f"{k}/{n}", "done"]], f"state{k}/{SLUG}.shards")
    expect(all(0 < len(journal_addrs(t, k)) < len(READERS) for k in range(1, n + 1)),
           "every shard holds some readers and not all")


@test("--shard 1/2 and 2/2 sent at once from two state dirs to one server: every reader "
      "exactly once, each journal holds exactly its shard by the documented formula")
def test_two_shards(t):
    s = t.server()
    world(t, s, 2)
    disjoint_and_covering(t, s, 2)


@test("--shard K/3 from three state dirs at once: disjoint, covering, other_shards adds up")
def test_three_shards(t):
    s = t.server()
    world(t, s, 3)
    disjoint_and_covering(t, s, 3)


@test("send --dry-run --shard K/5: the messages written are the formula's shard, bad rows "
      "reported by each, inactive rows and --limit counted within the shard")
def test_dry_run_formula(t):
    inactive = [f"gone{i}@example.net" for i in range(10)]
    t.subscribers(csv(*(f"{a},Reader," for a in READERS), *(f"{a},Gone,unsubscribed" for a in inactive),
                      "not-an-address,Bad,", header="email,name,status"))
    t.post()
    t.config(None, BASE)
    total = 0
    for k in range(1, 6):
        d = t.path(f"dry{k}")
        r = t.herald("send", post(t), "--dry-run", d, "--shard", f"{k}/5", "--json")
        equal(r.code, EX_OK, "exit")
        got = sorted(open(os.path.join(d, f), "rb").read().split(b"\r\nTo: ", 1)[1]
                     .split(b"\r\n", 1)[0].decode().split("<")[-1].rstrip(">")
                     for f in os.listdir(d))
        want = sorted(a for a in READERS if shard_of(a, 5) == k)
        equal(got, want, f"addresses written by shard {k}/5")
        p = json.loads(r.out)["posts"][0]
        gone = sum(1 for a in inactive if shard_of(a, 5) == k)
        equal((p["sent"], p["inactive"], p["skipped"]), (len(want), gone, 1),
              f"written, inactive, skipped of shard {k}/5")
        equal(p["sent"] + p["inactive"] + p["other_shards"], len(READERS) + len(inactive),
              "every good row counted once")
        expect("not-an-address" in r.err, "the bad row is reported")
        total += len(got)
    equal(total, len(READERS), "messages over the five shards")
    d = t.path("limited")
    r = t.herald("send", post(t), "--dry-run", d, "--shard", "2/5", "--limit", "3")
    equal(r.code, EX_TEMPFAIL, "--limit with readers left in the shard")
    equal(len(os.listdir(d)), 3, "messages under --limit 3")


@test("bad --shard values: exit 64 naming --shard and the value, nothing sent")
def test_bad_values(t):
    s = t.server()
    world(t, s, 1)
    for v in ["0/3", "4/3", "3", "/3", "1/", "1/0", "-1/3", "1/1001", " 1/3", "1/3/", "a/b",
              "1/3x", "2/+3", "99999999999999999999/3"]:
        r = t.herald("send", post(t), "--shard", v, conf=conf(t, 1))
        equal(r.code, EX_USAGE, f"exit for --shard {v!r}")
        expect("--shard" in r.err and v in r.err, f"the message names --shard {v!r}")
    r = t.herald("send", post(t), "--shard", "1/2", "--test", conf=conf(t, 1))
    equal(r.code, EX_USAGE, "--shard with --test")
    r = t.herald("send", post(t), "--shard", conf=conf(t, 1))
    equal(r.code, EX_USAGE, "--shard without a value")
    equal(s.received(), [], "messages sent")


def merge(t, *dirs, k=1, extra=()):
    return t.herald("state", "merge", *[t.path(d) for d in dirs], *extra, conf=conf(t, k))


@test("state merge after a 3-host send: a plain send from the merged state sends nothing, "
      "a hard bounce on one host suppresses there, sent beats uncertain, merging again "
      "changes nothing, --due skips the post")
def test_merge_resume_and_suppression(t):
    gone = next(a for a in READERS if shard_of(a, 3) == 2)
    s = t.server("--reject", gone)
    world(t, s, 3)
    got = send_shards(t, 3, parallel=False)
    equal(got[2]["posts"][0]["bounced"], 1, "the refused reader bounced on host 2")
    # A reader of shard 3 host 2 also tried, without a reply to its dot:
    other = next(a for a in READERS if shard_of(a, 3) == 3)
    with open(t.path("state2", f"{SLUG}.journal"), "a") as f:
        f.write(f"2026-01-01T00:00:00Z\t{other}\t<x@example.org>\t\tuncertain\n")
    stored = len(s.received())
    equal(stored, len(READERS) - 1, "messages stored by the shards")
    # Before the merge host 1 knows nothing of the others:
    r = t.herald("send", post(t), "--dry-run", t.path("before"), conf=conf(t, 1))
    expect(len(os.listdir(t.path("before"))) > len(READERS) / 2,
           "unmerged, host 1 would mail the other shards")
    r = merge(t, "state2", "state3")
    equal(r.code, EX_OK, "exit of state merge")
    expect(f"{SLUG}: sent to the whole list" in r.out, "merge says the post is done")
    expect(os.path.exists(t.path("state1", f"{SLUG}.done")), "merged .done")
    equal(sorted(set(journal_addrs(t, 1))), sorted(a for a in READERS if a != gone),
          "readers in the merged journal")
    with open(t.path("state1", "bounces.log")) as f:
        blog = f.read()
    expect(gone in blog, "host 2's bounce in the merged bounces.log")
    snapshot = {n: open(t.path("state1", n), "rb").read()
                for n in os.listdir(t.path("state1")) if not n.startswith(".") and "lock" not in n}
    r = merge(t, "state2", "state3", "state1")
    equal(r.code, EX_OK, "exit of the second merge")
    again = {n: open(t.path("state1", n), "rb").read()
             for n in os.listdir(t.path("state1")) if not n.startswith(".") and "lock" not in n}
    equal(again, snapshot, "state1 after merging the same directories again")
    r = t.herald("send", post(t), "--json", conf=conf(t, 1))
    equal(r.code, EX_OK, "exit of the plain send from the merged state")
    p = json.loads(r.out)["posts"][0]
    equal((p["sent"], p["suppressed"], p["already_sent"]), (0, 1, len(READERS) - 1),
          "sent, suppressed, already sent after the merge")
    r = t.herald("send", post(t), "--retry-uncertain", "--json", conf=conf(t, 1))
    equal(json.loads(r.out)["posts"][0]["sent"], 0, "sent with --retry-uncertain")
    equal(len(s.received()), stored, "messages stored after the merge")
    equal(s.rcpt_attempts(gone), 1, f"RCPT attempts for {gone}")
    r = t.herald("send", "--due", post(t), conf=conf(t, 1))
    equal(r.code, EX_OK, "--due after the merge")
    equal(len(s.received()), stored, "messages stored after --due")


@test("state merge of shards 1/3 and 3/3 only: no .done, names 2/3; --due --shard 1/3 "
      "skips its done shard; --due --shard 2/3 from the merged host sends shard 2 only")
def test_merge_incomplete(t):
    s = t.server()
    world(t, s, 3)
    for k in (1, 3):
        equal(t.herald("send", post(t), "--shard", f"{k}/3", conf=conf(t, k)).code, EX_OK, "exit")
    r = merge(t, "state3")
    equal(r.code, EX_OK, "exit")
    expect("not done yet: 2/3" in r.out, "merge names the missing shard")
    expect(not os.path.exists(t.path("state1", f"{SLUG}.done")), "no .done with a shard missing")
    n = len(s.received())
    r = t.herald("send", "--due", post(t), "--shard", "1/3", conf=conf(t, 1))
    equal((r.code, len(s.received())), (EX_OK, n), "--due --shard 1/3: exit, messages")
    r = t.herald("send", "--due", post(t), "--shard", "2/3", "--json", conf=conf(t, 1))
    equal(r.code, EX_OK, "--due --shard 2/3 from the merged host")
    want = sum(1 for a in READERS if shard_of(a, 3) == 2)
    equal(len(s.received()), n + want, "shard 2/3 sent from host 1")
    counts = collections.Counter(s.received())
    equal(max(counts.values()), 1, "messages per reader")


@test("state merge refuses a directory a running send holds (exit 75, names it), then "
      "merges once the send has ended")
def test_merge_refuses_locked(t):
    s = t.server("--delay-ms", "400")
    world(t, s, 2, readers=READERS[:12])
    equal(t.herald("send", post(t), "--shard", "1/2", conf=conf(t, 1)).code, EX_OK, "host 1")
    n1 = len(s.received())
    p = t.popen("send", post(t), "--shard", "2/2", conf=conf(t, 2))
    deadline = time.monotonic() + 20
    while len(s.received()) == n1 and time.monotonic() < deadline:
        time.sleep(0.05)
    expect(p.poll() is None, "the send of host 2 still runs")
    before = sorted(os.listdir(t.path("state1")))
    r = merge(t, "state2")
    equal(r.code, EX_TEMPFAIL, "exit of a merge beside a running send")
    expect("state2" in r.err and "sending" in r.err, "the message names the directory")
    equal(sorted(os.listdir(t.path("state1"))), before, "state1 untouched (not even a lock made)")
    r = t.herald("state", "merge", t.path("state1"), "--into", t.path("state2"), conf=conf(t, 1))
    equal(r.code, EX_TEMPFAIL, "exit of a merge into the directory being sent from")
    equal(p.wait(60), EX_OK, "host 2's send")
    r = merge(t, "state2")
    equal(r.code, EX_OK, "exit once it has ended")
    equal(sorted(set(journal_addrs(t, 1))), sorted(READERS[:12]), "merged journal")


@test("state merge reads a torn last journal line (kept, FILE:LINE), a damaged line "
      "(left out, FILE:LINE) and a torn bounces.log line (left out, FILE:LINE)")
def test_merge_torn(t):
    s = t.server()
    world(t, s, 2, readers=READERS[:20])
    for k in (1, 2):
        equal(t.herald("send", post(t), "--shard", f"{k}/2", conf=conf(t, k)).code, EX_OK, "exit")
    j2 = t.path("state2", f"{SLUG}.journal")
    with open(j2) as f:
        lines = f.read().splitlines()
    last = lines[-1]
    torn_addr = last.split("\t")[1]
    lines = lines[:-1] + ["garbage without tabs"]
    with open(j2, "w") as f:
        f.write("\n".join(lines) + "\n" + "\t".join(last.split("\t")[:3]) + "\0\0\0")
    with open(t.path("state2", "bounces.log"), "w") as f:
        f.write("2026-01-01T00:00:00Z\tgone@example.net\thard\t5.1.1\t550\tsmtp\tissue-1\tno such user\n"
                "2026-01-02T00:00:00Z\tcut@example.net\thard\t5.1")
    r = merge(t, "state2")
    equal(r.code, EX_OK, "exit")
    expect(f"{j2}:{len(lines) + 1}: the last line was cut short" in r.err,
           "the torn journal line named as FILE:LINE")
    expect(f"{j2}:{len(lines)}: not a journal line" in r.err, "the damaged line as FILE:LINE")
    expect(t.path("state2", "bounces.log") + ":2: the last line was cut short" in r.err,
           "the torn bounces.log line as FILE:LINE")
    with open(t.path("state1", "bounces.log")) as f:
        blog = f.read()
    expect("gone@example.net" in blog and "cut@example.net" not in blog, "merged bounces.log")
    expect(torn_addr in journal_addrs(t, 1), "the torn line's reader is in the merged journal")
    n = len(s.received())
    r = t.herald("send", post(t), "--json", conf=conf(t, 1))
    equal(json.loads(r.out)["posts"][0]["sent"], 0, "sent from the merged state")
    equal(len(s.received()), n, "messages stored")


def state_files(d):
    """A state dir's files as herald reads them (not its locks or a merge's
    temporary files)."""
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))
            if not n.startswith(".") and not n.endswith(".lock")}


@test("kill -9 at each rename of state merge (strace inject): the target is as it was, or "
      "(killed after the commit) a send finishes the merge and sends nothing again")
def test_merge_kill9(t):
    if not shutil.which("strace"):
        raise Skip("strace is not installed")
    s = t.server("--reject", next(a for a in READERS[:30] if shard_of(a, 3) == 3))
    world(t, s, 3, readers=READERS[:30])
    send_shards(t, 3, parallel=False)
    for k in (1, 2, 3):
        shutil.copytree(t.path(f"state{k}"), t.path(f"pristine{k}"))
    r = merge(t, "state2", "state3")
    equal(r.code, EX_OK, "the merge without faults")
    merged = state_files(t.path("state1"))
    orig = state_files(t.path("pristine1"))
    expect(merged != orig, "the merge changes state1")
    stored = len(s.received())
    env = {"ASAN_OPTIONS": "detect_leaks=0:verify_asan_link_order=0"}
    outcomes = collections.Counter()
    for when in range(1, 12):
        for k in (1, 2, 3):
            shutil.rmtree(t.path(f"state{k}"))
            shutil.copytree(t.path(f"pristine{k}"), t.path(f"state{k}"))
        cmd = ["strace", "-f", "-qq", "-o", "/dev/null", "-e",
               f"inject=rename,renameat,renameat2:signal=SIGKILL:when={when}",
               *t.command(["state", "merge", t.path("state2"), t.path("state3")], conf(t, 1))]
        log("# $ " + " ".join(cmd))
        p = subprocess.run(cmd, cwd=t.cwd, env=t.env(env), capture_output=True, timeout=60)
        log(f"#   exit {p.returncode}")
        now = state_files(t.path("state1"))
        if p.returncode == 0:
            equal(now, merged, f"state1 after a merge that was not killed (when={when})")
            outcomes["finished"] += 1
            break
        expect(p.returncode in (-9, 137), f"the merge was killed (when={when}): {p.returncode}")
        if not os.path.exists(t.path("state1", ".merge-plan")):
            equal(now, orig, f"state1 after kill -9 before the commit (when={when})")
            outcomes["before"] += 1
        else:
            r = t.herald("send", post(t), "--json", conf=conf(t, 1))
            equal(r.code, EX_OK, f"send after kill -9 after the commit (when={when})")
            equal(json.loads(r.out)["posts"][0]["sent"], 0, "sent after the interrupted merge")
            equal(state_files(t.path("state1")), merged,
                  f"state1 once a send finished the interrupted merge (when={when})")
            outcomes["after"] += 1
    log(f"# outcomes: {dict(outcomes)}")
    expect(outcomes["before"] >= 1 and outcomes["after"] >= 2 and outcomes["finished"] == 1,
           f"kills before and after the commit, then a whole merge: {dict(outcomes)}")
    equal(len(s.received()), stored, "messages stored")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
