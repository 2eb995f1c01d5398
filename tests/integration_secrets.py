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
import resource
import signal
import subprocess
import sys
import time

from harness import (
    EX_CONFIG, EX_OK, SECRET, Skip, Suite, csv, equal, expect)

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


# ---- out of core files and out of Chromium's environment (issue 21 item 7)

def core_files(d):
    return [os.path.join(r, n) for r, _, ns in os.walk(d) for n in ns
            if n == "core" or n.startswith("core.")]


class CoreDumps:
    """`ulimit -c unlimited` for what the test starts, the way a crash
    would find it; core_pattern must name a file in the crashing
    process's directory (the kernel's default, "core"), and a control
    process killed with SIGSEGV must leave one, else the test is skipped."""

    def __init__(self, t):
        with open("/proc/sys/kernel/core_pattern") as f:
            pattern = f.read().strip()
        if "/" in pattern or pattern.startswith("|"):
            raise Skip(f"core_pattern is {pattern!r}: this test needs a file in the cwd")
        self.saved = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        control = t.path("control")
        os.makedirs(control)
        # Popen returns once sleep is exec'd: it is the process that dumps.
        p = subprocess.Popen(["/bin/sleep", "60"], cwd=control)
        p.send_signal(signal.SIGSEGV)
        p.wait(10)
        cores = core_files(control)
        if not cores:
            self.close()
            raise Skip("a process killed with SIGSEGV leaves no core file here")
        for c in cores:
            os.unlink(c)

    def close(self):
        resource.setrlimit(resource.RLIMIT_CORE, self.saved)


def crash_and_look(t, p, what, secrets):
    """kill -SEGV p; the core files it left anywhere in t's directory, each
    with the secrets it holds (removed, so the next crash is told apart)."""
    p.send_signal(signal.SIGSEGV)
    equal(p.wait(30), -signal.SIGSEGV, f"{what}: killed by SIGSEGV")
    found = []
    for c in core_files(t.dir):
        with open(c, "rb") as f:
            data = f.read()
        found.append(f"{what}: {os.path.relpath(c, t.dir)} ({len(data)} bytes) holding "
                     f"{[name for name, v in secrets.items() if v.encode() in data]}")
        os.unlink(c)
    return found


def dkim_key(t):
    key = t.path("dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    os.chmod(key, 0o600)
    with open(key) as f:
        body = [l for l in f.read().splitlines() if not l.startswith("-----")]
    return key, body[len(body) // 2]


@test("no core file from serve, nor from send without smtp.username held by a stalling "
      "server: ulimit -c unlimited, kill -SEGV, no core anywhere (with the token secret, "
      "the SMTP password in the environment, the DKIM key)")
def test_no_core_dumps(t):
    dumps = CoreDumps(t)
    try:
        key, key_line = dkim_key(t)
        secrets = {"HERALD_SECRET": SECRET, "HERALD_SMTP_PASSWORD": PASSWORD, "DKIM key": key_line}
        # The sanitizer build: the signal's default action, not ASan's report.
        env = {**PW_ENV, "ASAN_OPTIONS": "handle_segv=0:detect_leaks=0"}
        s = server(t, "--rule", json.dumps({"at": "mail", "times": 1, "do": "stall"}))
        t.subscribers(csv(*(f"{a},R" for a in READERS)))
        t.post()
        t.config(s, {"smtp": {"timeout": 60}, "retry": {"attempts": 1},
                     "dkim": {"domain": "example.org", "selector": "s1", "key_file": key},
                     "web": {"listen": "127.0.0.1:0", "base_url": "http://127.0.0.1"}})
        port_file = t.path("port")
        serve = t.popen("serve", "--port-file", port_file, env=env)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file) and serve.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        expect(os.path.exists(port_file), "serve did not start")
        cores = crash_and_look(t, serve, "serve", secrets)
        send = t.popen("send", t.path("issue-1.md"), env=env)
        deadline = time.monotonic() + 20
        while (not any(e.get("fault") == "stall" for e in s.events()) and send.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.02)
        expect(send.poll() is None, "send did not wait on the stalled server")
        cores += crash_and_look(t, send, "send held by the server", secrets)
        equal(cores, [], "core files")
        equal(s.received(), [], "nothing sent")
    finally:
        dumps.close()


CHROMIUM = """#!/bin/sh
# A stand-in for Chromium: writes down what it was given, then answers as
# headless Chromium does (--dump-dom on stdout, --screenshot=FILE).
env > "{dir}/env.$$"
cat > "{dir}/stdin.$$"
for a in "$@"; do
  case "$a" in
  --dump-dom) echo '<html data-herald-height="640"><body></body></html>' ;;
  --screenshot=*) printf 'PNG' > "${{a#--screenshot=}}" ;;
  esac
done
"""


@test("preview: Chromium runs with no HERALD* variable, no variable the config names for a "
      "secret, nothing of their values, stdin /dev/null; the rest of the environment kept")
def test_preview_browser_environment(t):
    seen = t.path("seen")
    os.makedirs(seen)
    browser = t.write("chromium", CHROMIUM.format(dir=seen))
    os.chmod(browser, 0o755)
    t.subscribers(csv(*(f"{a},R" for a in READERS)))
    t.post()
    t.config(None, {"unsubscribe": {"url": "https://example.org/u?e={{email}}&t={{token}}",
                                    "mailto": "unsubscribe@example.org", "secret_env": "NEWS_KEY"},
                    "smtp": {"password_env": "RELAY_PW"},
                    "bounce": {"mailbox": {"url": "imaps://b@127.0.0.1/INBOX",
                                           "password_env": "BOUNCE_PW"}}})
    r = t.herald("preview", t.path("issue-1.md"), "-o", t.path("out"),
                 env={"HERALD_CHROMIUM": browser, "NEWS_KEY": SECRET, "RELAY_PW": PASSWORD,
                      "BOUNCE_PW": PASSWORD + "b", "HERALD_SMTP_PASSWORD": PASSWORD + "h",
                      "KEEP_ME": "1"})
    equal(r.code, EX_OK, "exit code")
    envs = sorted(n for n in os.listdir(seen) if n.startswith("env."))
    equal(len(envs), 4, "browser runs (desktop and phone: measure, shoot)")
    for n in envs:
        with open(os.path.join(seen, n), errors="replace") as f:
            text = f.read()
        names = {l.split("=", 1)[0] for l in text.splitlines() if "=" in l}
        equal(sorted(v for v in names if v.startswith("HERALD") or
                     v in ("NEWS_KEY", "RELAY_PW", "BOUNCE_PW")), [], f"{n}: secret variables")
        for secret in (SECRET, PASSWORD):
            expect(secret not in text, f"{n}: a secret's value is in the browser's environment")
        expect("KEEP_ME" in names and "PATH" in names, f"{n}: the rest of the environment lost")
        equal(os.path.getsize(os.path.join(seen, n.replace("env.", "stdin."))), 0,
              f"{n}: stdin is /dev/null")


if __name__ == "__main__":
    sys.exit(SUITE.main(sys.argv[1:]))
