#!/usr/bin/python3
"""Inputs that must not hang, leak or go silent (issues 9 and 10): a
password_command that never finishes or would see herald's secrets,
@include'd config files, two posts with one slug, header-bound fields of
absurd size, a Latin-1 list.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_inputs.py [PATTERN...]

Against the capture server (tests/smtpd.py); each test asserts the exit
code, the message, and what the server stored per reader.
"""

import os
import re
import signal
import sys
import time

from harness import (EX_CONFIG, EX_DATAERR, EX_OK, EX_TEMPFAIL, SECRET, Suite, csv, equal,
                     expect)

SUITE = Suite()
test = SUITE.test
USER, PASSWORD = "joy", "Tr0ub4dor&3-s3cret"
READERS = ["ann@example.net", "bob@example.net"]


def world(t, s, smtp=None, extra=None, readers=READERS):
    t.subscribers(csv(*(f"{a},R" for a in readers)))
    t.post()
    cfg = {"smtp": {"timeout": 2, **(smtp or {})}, "retry": {"attempts": 1}}
    cfg.update(extra or {})
    return t.config(s, cfg)


def wait_until(cond, secs):
    deadline = time.monotonic() + secs
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@test("a password_command that never finishes: killed with everything it started after "
      "smtp.timeout, exit 75 with the fix, nothing sent; a second run meanwhile exits 75 at once")
def test_password_command_hangs(t):
    s = t.fault_server(args=("--auth", f"{USER}:{PASSWORD}"))
    pidfile = t.path("child.pid")
    # The shell starts a background sleeper in its group and then waits.
    world(t, s, {"username": USER, "password_env": None, "starttls": "try",
                 "password_command": f"sleep 1000 & echo $! > {pidfile}; wait"})
    out_file = t.path(f"bg{len(t.runs) + len(t.procs) + 1}.out")  # as popen names it
    p = t.popen("send", t.path("issue-1.md"))
    expect(wait_until(lambda: os.path.exists(pidfile), 5), "the command started")
    start = time.monotonic()
    second = t.send()
    equal(second.code, EX_TEMPFAIL, "second run's exit code")
    expect(time.monotonic() - start < 1.5, "the second run did not wait")
    expect("another herald is sending" in second.err, second.err)
    code = p.wait(timeout=30)
    equal(code, EX_TEMPFAIL, "exit code")
    with open(out_file) as f:
        out = f.read()
    expect(re.search(r"smtp\.password_command did not finish within 2 s and was killed", out), out)
    with open(pidfile) as f:
        child = int(f.read())
    expect(wait_until(lambda: not alive(child), 2),
           f"the command's background child {child} is still running")
    equal(s.received(), [], "nothing sent")


@test("a password_command sees no HERALD* variable nor a configured secret variable, "
      "and stdin is not the terminal's")
def test_password_command_environment(t):
    s = t.fault_server(args=("--auth", f"{USER}:{PASSWORD}"))
    envfile = t.path("env.txt")
    world(t, s, {"username": USER, "password_env": None, "starttls": "try",
                 "password_command": f"env > {envfile}; cat > {t.path('stdin.txt')}; echo '{PASSWORD}'"},
          extra={"unsubscribe": {"url": "https://example.org/u?e={{email}}&t={{token}}",
                                 "mailto": "unsubscribe@example.org", "secret_env": "NEWS_KEY"}})
    r = t.send(env={"NEWS_KEY": SECRET, "HERALD_SMTP_PASSWORD": "x" * 12, "KEEP_ME": "1"})
    equal(r.code, EX_OK, "exit code")
    with open(envfile) as f:
        names = {l.split("=", 1)[0] for l in f if "=" in l}
    expect(not {n for n in names if n.startswith("HERALD")}, f"HERALD* seen: {names}")
    expect("NEWS_KEY" not in names, "the unsubscribe secret's variable was passed on")
    expect("KEEP_ME" in names and "PATH" in names, "the rest of the environment is kept")
    equal(os.path.getsize(t.path("stdin.txt")), 0, "stdin is /dev/null")
    equal(sorted(s.by_rcpt()), READERS, "sent once each")


@test("a password in an @include'd file readable by others: refused naming that file and "
      "chmod 600; the file is found beside the config whatever the working directory")
def test_include_mode(t):
    s = t.fault_server(args=("--auth", f"{USER}:{PASSWORD}"))
    world(t, s, {"username": USER, "password_env": None, "starttls": "try"})
    conf = t.path("herald.conf")
    # smtp.password must sit inside the smtp group: include it there.
    with open(conf) as f:
        text = f.read()
    text = text.replace("smtp = {", 'smtp = {\n  @include "secrets.inc"\n', 1)
    with open(conf, "w") as f:
        f.write(text)
    os.chmod(conf, 0o600)
    inc = t.write("secrets.inc", f'password = "{PASSWORD}";\n')
    os.chmod(inc, 0o644)
    r = t.send()
    equal(r.code, EX_CONFIG, "exit code")
    expect(re.search(rf"{re.escape(inc)}:1: smtp\.password is set but {re.escape(inc)} is readable "
                     rf"by others; run: chmod 600 {re.escape(inc)}", r.err), r.err)
    expect(PASSWORD not in r.err + r.out, "the password is shown")
    equal(s.received(), [], "nothing sent")
    os.chmod(inc, 0o600)
    r = t.send()
    equal(r.code, EX_OK, "exit code once private")
    equal(sorted(s.by_rcpt()), READERS, "sent once each with the included password")


@test("two posts with one slug: check, send and send --due refuse naming both files; "
      "the other posts in the directory are still sent")
def test_slug_collision(t):
    s = t.server()
    world(t, s)
    posts = t.path("posts")
    os.makedirs(posts)
    with open(t.path("issue-1.md")) as f:
        src = f.read()
    for name, slug in (("2026-01-01-a.md", "weekly"), ("2026-01-08-b.md", "weekly"),
                       ("2026-01-15-c.md", None)):
        body = src if slug is None else src.replace("---\n", f"---\nslug: {slug}\n", 1)
        t.write(os.path.join("posts", name), body)
    a, b = os.path.join(posts, "2026-01-01-a.md"), os.path.join(posts, "2026-01-08-b.md")
    for args in (("check", b), ("send", b)):
        r = t.herald(*args)
        equal(r.code, EX_DATAERR, f"{args[0]} exit code")
        expect(f"{b} and {a} have the same slug \"weekly\"" in r.err, r.err)
        expect("slug:" in r.err, "the fix is named")
    equal(s.received(), [], "nothing sent by the refused send")
    r = t.herald("send", "--due", posts)
    equal(r.code, EX_DATAERR, "send --due exit code")
    expect(f"{a} and {b} have the same slug \"weekly\"" in r.err, r.err)
    mails = s.messages()
    equal(sorted(m.rcpt_tos[0] for m in mails), READERS, "the third post went to each once")
    equal(sorted(r[1] for r in t.journal("2026-01-15-c")), READERS, "its journal")
    expect(not os.path.exists(t.path("state", "weekly.journal")), "a journal for the shared slug")


@test("a 100 KB name, a field over 1 MiB and a Latin-1 row: skipped with FILE:LINE by send and by "
      "subscribers check alike; the other readers get exactly one message each")
def test_field_caps_and_latin1(t):
    s = t.server()
    world(t, s)
    rows = (b"email,name,city\n"
            b"ann@example.net,Ann,Oslo\n"
            b"big@example.net," + b"N" * 100000 + b",Rome\n"
            b"wide@example.net,Wide," + b"c" * (1024 * 1024 + 1) + b"\n"
            b"fran@example.net,Fran\xe7oise,Paris\n"
            b"bob@example.net,Bob,Lima\n")
    t.write("subs.csv", rows)
    chk = t.herald("subscribers", "check")
    snd = t.send()
    equal(snd.code, EX_OK, "send exit code")
    path = t.path("subs.csv")
    want = [f"{path}:3: the name field is 100000 bytes; at most 256 (it goes into the To header)",
            f"{path}:4: the city field is 1048577 bytes; at most 1048576",
            f"{path}:5: the name field is not UTF-8"]
    for line in want:
        expect(line in chk.err + chk.out, f"subscribers check: {line!r} missing in {chk.err!r}")
        expect(line in snd.err, f"send: {line!r} missing in {snd.err!r}")
    expect(re.search(r"\b3 bad\b", chk.out + chk.err), f"check counts 3 bad rows: {chk.out!r}")
    got = s.by_rcpt()
    equal(sorted(got), READERS, "stored once each")
    for m in got.values():
        expect(len(m.raw) < 100000, f"message of {len(m.raw)} bytes")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
