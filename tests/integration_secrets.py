#!/usr/bin/python3
"""herald and the SMTP password (issue 6): never in argv, output, logs,
-v transcripts or error messages; a config file that holds one is refused
unless only its owner can read it; never sent before TLS unless the
server is on loopback.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_secrets.py [PATTERN...]

The server is tests/faultsmtp.py: it offers AUTH with or without
STARTTLS and records, per AUTH attempt, the user, the verdict and
whether TLS was up (never the password).
"""

import base64
import json
import os
import re
import subprocess
import sys
import time

from harness import (
    EX_CONFIG, EX_OK, Skip, Suite, csv, equal, expect)

SUITE = Suite()
test = SUITE.test

USER, PASSWORD = "joy", "Tr0ub4dor&3-s3cret"
READERS = ["ann@example.net", "bob@example.net"]
PW_ENV = {"HERALD_SMTP_PASSWORD": PASSWORD}
SECRETS = (PASSWORD,
           base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
           base64.b64encode(PASSWORD.encode()).decode())


def server(t, *args):
    return t.fault_server(args=args)


def auth_events(s):
    return [e for e in s.events() if "auth" in e]


def world(t, s, smtp, mode=0o600, extra=None):
    t.subscribers(csv(*(f"{a},R" for a in READERS)))
    t.post()
    cfg = {"smtp": {"timeout": 5, "username": USER, **smtp},
           "retry": {"attempts": 1}}
    cfg.update(extra or {})
    path = t.config(s, cfg)
    os.chmod(path, mode)
    return path


def leaks(t, r):
    """Every place a secret could end up: herald's output and state."""
    texts = [("stdout", r.out), ("stderr", r.err)]
    state = t.path("state")
    if os.path.isdir(state):
        for n in os.listdir(state):
            with open(os.path.join(state, n), "rb") as f:
                texts.append((f"state/{n}", f.read().decode("utf-8", "replace")))
    for where, text in texts:
        for secret in SECRETS:
            expect(secret not in text, f"the password (or its base64) is in {where}")


def make_cert(t):
    d = t.path("certs")
    os.makedirs(d)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    return cert, key


# ---- the config file ----------------------------------------------------

@test("smtp.password in a config readable by group or others: refused "
      "(exit 78) with a message naming chmod 600, without the password")
def test_password_file_mode(t):
    s = server(t, "--auth", f"{USER}:{PASSWORD}")
    for mode in (0o640, 0o604, 0o644):
        path = world(t, s, {"password": PASSWORD, "starttls": "try"}, mode=mode)
        r = t.send()
        equal(r.code, EX_CONFIG, f"exit code for mode {mode:o}")
        expect(f"chmod 600 {path}" in r.err, f"no 'chmod 600 FILE' in {r.err!r}")
        expect(re.search(rf"^herald: {re.escape(path)}:\d+: smtp\.password", r.err, re.M),
               f"error does not name file:line and the key: {r.err!r}")
        leaks(t, r)
    equal(s.received(), [], "messages sent with a refused config")
    # the same file, mode 0600: accepted, the password from the file works
    world(t, s, {"password": PASSWORD, "starttls": "try"}, mode=0o600)
    r = t.send()
    equal(r.code, EX_OK, "exit code for mode 600")
    equal(sorted(s.received()), READERS, "sent")
    leaks(t, r)


@test("bounce.mailbox.password in a group-readable config: refused with chmod 600")
def test_mailbox_password_file_mode(t):
    path = world(t, None, {"password_env": "HERALD_SMTP_PASSWORD"}, mode=0o640,
                 extra={"bounce": {"mailbox": {"url": "imaps://b@127.0.0.1/INBOX",
                                               "password": PASSWORD}}})
    r = t.herald("bounces", "list")
    equal(r.code, EX_CONFIG, "exit code")
    expect(f"chmod 600 {path}" in r.err and "bounce.mailbox.password" in r.err,
           f"stderr: {r.err!r}")
    leaks(t, r)


@test("password_command: its output is the password; it never shows in "
      "herald's argv, its children's argv, output or state")
def test_password_command_argv(t):
    s = server(t, "--auth", f"{USER}:{PASSWORD}",
               "--rule", json.dumps({"at": "mail", "times": 1, "do": "stall"}))
    t.write("pw.txt", PASSWORD + "\n")
    os.chmod(t.path("pw.txt"), 0o600)
    world(t, s, {"password_command": f"cat {t.path('pw.txt')}", "starttls": "try",
                 "password_env": None},
          extra={"retry": {"attempts": 2, "initial_delay": 0, "max_delay": 0}})
    out_file = t.path(f"bg{len(t.runs) + len(t.procs) + 1}.out")
    p = t.popen("send", t.path("issue-1.md"))
    seen = set()
    core = None
    deadline = time.monotonic() + 20
    while p.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{p.pid}/limits") as f:
                core = [l for l in f if l.startswith("Max core file size")] or core
        except OSError:
            pass
        for pid in [d for d in os.listdir("/proc") if d.isdigit()]:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read()
            except OSError:
                continue
            if b"faultsmtp.py" in argv:
                continue    # the test's server is given the password to check
            if b"herald" in argv or b"pw.txt" in argv:
                seen.add(argv)
                expect(PASSWORD.encode() not in argv, f"password in argv of pid {pid}")
        time.sleep(0.05)
    equal(p.wait(30), EX_OK, "exit code")
    expect(any(b"herald" in a for a in seen), "never saw herald running")
    # once it holds the password, herald writes no core file
    expect(core and core[0].split()[4:6] == ["0", "0"], f"core limit: {core}")
    with open(out_file, errors="replace") as f:
        out = f.read()
    for secret in SECRETS:
        expect(secret not in out, "the password is in herald's output")
    equal(sorted(s.received()), READERS, "sent")


@test("a failing password_command: exit 78, its exit status named, no output "
      "of it echoed")
def test_password_command_fails(t):
    world(t, None, {"password_command": f"echo {PASSWORD}; exit 3", "starttls": "try",
                    "password_env": None})
    r = t.send()
    equal(r.code, EX_CONFIG, "exit code")
    expect("password_command" in r.err and "3" in r.err, f"stderr: {r.err!r}")
    for secret in SECRETS:
        expect(secret not in r.err.replace(f"echo {PASSWORD}", ""),
               "the command's output is echoed")


# ---- on the wire --------------------------------------------------------

@test("username set, a remote server and starttls = try or never: refused "
      "before any connection (exit 78), AUTH is never sent in clear")
def test_remote_clear_auth_refused(t):
    for mode in ("try", "never"):
        world(t, None, {"url": "smtp://mail.example.invalid:587", "starttls": mode})
        r = t.send(env=PW_ENV)
        equal(r.code, EX_CONFIG, f"exit code with starttls = {mode}")
        expect(re.search(r"starttls = \"required\".*never sent in clear", r.err),
               f"stderr: {r.err!r}")
        errors = [l for l in r.err.splitlines() if l.startswith("herald: ")]
        equal(len(errors), 1, f"error lines in {r.err!r}")
        leaks(t, r)


@test("starttls = try + username to a loopback server without STARTTLS: "
      "AUTH in clear is allowed there, and works")
def test_loopback_clear_auth(t):
    s = server(t, "--auth", f"{USER}:{PASSWORD}")
    world(t, s, {"starttls": "try"})
    r = t.send(env=PW_ENV)
    equal(r.code, EX_OK, "exit code")
    equal(sorted(s.received()), READERS, "sent")
    ev = auth_events(s)
    expect(ev and all(e["ok"] and not e["tls"] and e["auth"] == USER for e in ev),
           f"AUTH events: {ev}")
    leaks(t, r)


@test("starttls = try + username, loopback server offering STARTTLS: the "
      "password goes only after the handshake")
def test_loopback_starttls_first(t):
    cert, key = make_cert(t)
    s = server(t, "--auth", f"{USER}:{PASSWORD}", "--tls-cert", cert, "--tls-key", key)
    world(t, s, {"starttls": "try", "ca_file": cert})
    r = t.send(env=PW_ENV)
    equal(r.code, EX_OK, "exit code")
    ev = auth_events(s)
    expect(ev and all(e["tls"] and e["ok"] for e in ev), f"AUTH events: {ev}")
    leaks(t, r)


@test("wrong password: a one-line error without the password, nothing sent")
def test_wrong_password_message(t):
    s = server(t, "--auth", f"{USER}:not-{PASSWORD}")
    world(t, s, {"starttls": "try"})
    r = t.send(env=PW_ENV)
    expect(r.code not in (EX_OK, 75), f"exit code {r.code}")
    expect(re.search(r"^herald: smtp://127\.0\.0\.1:\d+: .*(535|denied|auth)", r.err,
                     re.M | re.I), f"stderr: {r.err!r}")
    equal(s.received(), [], "sent")
    leaks(t, r)


@test("-v: the SMTP transcript, if shown, has AUTH redacted; the password "
      "is nowhere in it")
def test_verbose_transcript(t):
    s = server(t, "--auth", f"{USER}:{PASSWORD}")
    world(t, s, {"starttls": "try"})
    cmd = t.command(["send", t.path("issue-1.md")])
    p = subprocess.run([cmd[0], "-v", *cmd[1:]], cwd=t.cwd, env=t.env(PW_ENV),
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    equal(p.returncode, EX_OK, "exit code")
    for secret in SECRETS:
        expect(secret not in out, f"the password (or its base64) is in -v output: {out!r}")
    transcript = [l for l in out.splitlines()
                  if re.search(r"\b(EHLO|MAIL FROM|RCPT TO)\b", l)]
    expect(transcript, "-v shows no SMTP transcript (EHLO, MAIL FROM, RCPT TO)")
    auth = [l for l in out.splitlines() if re.search(r"\bAUTH\b", l)
            and not re.search(r"250[- ]AUTH", l)]
    expect(auth, "the transcript shows no AUTH line at all")
    for l in auth:
        expect(re.search(r"AUTH \w+ (\[redacted\]|<redacted>|\*+)", l) or
               re.search(r"^\W*(<|>)?\s*\d{3}", l), f"AUTH line not redacted: {l!r}")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
