#!/usr/bin/python3
"""What herald's integration suites (tests/integration*.py) share: the
capture server (tests/smtpd.py) as a Server, a test's world as a Case
(temp dir, config, subscribers, herald runs: plain, in the background,
on a terminal), assertions, and a TAP runner.

    from harness import Suite, Case, equal, expect, ...
    SUITE = Suite()

    @SUITE.test("what it proves")
    def test_something(t):          # t: a Case
        ...

    if __name__ == "__main__":
        sys.exit(SUITE.main(sys.argv[1:]))

Stdlib only; aiosmtpd is needed inside tests/smtpd.py.
"""

import collections
import email
import email.policy
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SMTPD = os.path.join(HERE, "smtpd.py")
FAULTSMTP = os.path.join(HERE, "faultsmtp.py")
FIXTURES = os.path.join(HERE, "fixtures")
TEMPLATES = os.path.join(ROOT, "templates")
PYTHON = "/usr/bin/python3"
HERALD = os.environ.get("HERALD", "")
KEEP = os.environ.get("KEEP") == "1"

SUBJECT = "Café notes — issue 3"      # tests/fixtures/issue-1.md
SLUG = "issue-1"
SECRET = "test-secret"

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT = 0, 64, 65, 66
EX_UNAVAILABLE, EX_TEMPFAIL, EX_CONFIG = 69, 75, 78


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---- assertions ---------------------------------------------------------

class Skip(Exception):
    """Raise to end a test as a TAP skip ("ok N - ... # SKIP reason"),
    only for a tool the machine lacks. Never for a known bug: a test that
    turns the regression it guards into a skip cannot fail."""

def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def equal(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


# ---- servers ------------------------------------------------------------

Mail = collections.namedtuple("Mail", "seq raw msg mail_from rcpt_tos")


class Server:
    """One tests/smtpd.py process capturing into DIR/maildir (or another
    server with the same options and layout: tests/faultsmtp.py)."""

    def __init__(self, directory, *args, script=SMTPD):
        os.makedirs(directory)
        self.dir = directory
        self.maildir = os.path.join(directory, "maildir")
        self.err_path = os.path.join(directory, "smtpd.err")
        port_file = os.path.join(directory, "port")
        cmd = [PYTHON, script, "--maildir", self.maildir,
               "--port-file", port_file, "--max-seconds", "300", *args]
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtpd exited {self.proc.returncode}: "
                                   + self.stderr())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("smtpd did not listen within 10 s: "
                                   + self.stderr())
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.read())
        log(f"# smtpd {' '.join(args)} on port {self.port}")

    def url(self, scheme="smtp"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def messages(self):
        """Every message received so far, in arrival order, parsed with
        policy.strict (so a defect the parser notices raises)."""
        new = os.path.join(self.maildir, "new")
        seqs = sorted(int(n[:-4]) for n in os.listdir(new) if n.endswith(".eml"))
        mails = []
        for seq in seqs:
            with open(os.path.join(new, f"{seq}.eml"), "rb") as f:
                raw = f.read()
            with open(os.path.join(self.maildir, "envelope", f"{seq}.json")) as f:
                env = json.load(f)
            msg = email.message_from_bytes(raw, policy=email.policy.strict)
            mails.append(Mail(seq, raw, msg, env["mail_from"], env["rcpt_tos"]))
        return mails

    def by_rcpt(self):
        """{recipient: Mail}; fails if a recipient got more than one."""
        mails = {}
        for m in self.messages():
            equal(len(m.rcpt_tos), 1, f"recipients of message {m.seq}")
            expect(m.rcpt_tos[0] not in mails,
                   f"{m.rcpt_tos[0]} received more than one message")
            mails[m.rcpt_tos[0]] = m
        return mails

    def transactions(self):
        path = os.path.join(self.maildir, "log.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def envelopes(self):
        """The envelope of every stored message, in arrival (seq) order,
        without reading the messages: {"seq", "mail_from", "rcpt_tos",
        "conn", "conn_time", "time", ...}."""
        d = os.path.join(self.maildir, "envelope")
        if not os.path.isdir(d):
            return []
        seqs = sorted(int(n[:-5]) for n in os.listdir(d) if n.endswith(".json"))
        envs = []
        for seq in seqs:
            with open(os.path.join(d, f"{seq}.json")) as f:
                envs.append(json.load(f))
        return envs

    def received(self):
        """The recipient of every stored message, in arrival order; fails
        if a message had other than one recipient."""
        out = []
        for e in self.envelopes():
            equal(len(e["rcpt_tos"]), 1, f"recipients of message {e['seq']}")
            out.append(e["rcpt_tos"][0])
        return out

    def events(self):
        """tests/faultsmtp.py only: DIR/events.jsonl, one dict per command
        and reply, fault played and AUTH attempt."""
        path = os.path.join(self.maildir, "events.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def rcpt_attempts(self, address):
        """How many times RCPT TO:<address> was given, from log.jsonl."""
        return sum(1 for x in self.transactions() for r in x["rcpts"]
                   if r["addr"].lower() == address.lower())


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- config -------------------------------------------------------------

def libconfig_value(v, indent):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        esc = (v.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\t", "\\t"))
        return f'"{esc}"'
    if isinstance(v, list):
        return "[ " + ", ".join(libconfig_value(x, indent) for x in v) + " ]"
    if isinstance(v, dict):
        inner = indent + "  "
        body = "".join(f"{inner}{k} = {libconfig_value(x, inner)};\n"
                       for k, x in v.items())
        return "{\n" + body + indent + "}"
    raise TypeError(f"no libconfig form for {v!r}")


def libconfig(settings):
    return "".join(f"{k} = {libconfig_value(v, '')};\n"
                   for k, v in settings.items())


def merged(base, changes):
    """base updated by changes, recursively; a None value deletes the key."""
    out = dict(base)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def base_config(smtp_url):
    return {
        "from": "Joy <joy@example.org>",
        "reply_to": "letters@example.org",
        "list_id": "Weekly <weekly.example.org>",
        "postal_address": "1 Garden Lane, Springfield",
        "subscribers": "subs.csv",
        "templates": TEMPLATES,
        "template": "default",
        "state_dir": "state",
        "unsubscribe": {
            "url": "https://example.org/u?e={{email}}&t={{token}}",
            "mailto": "unsubscribe@example.org",
            "secret_env": "HERALD_SECRET",
        },
        "smtp": {"url": smtp_url, "starttls": "never", "timeout": 10},
        "retry": {"attempts": 2, "initial_delay": 0, "max_delay": 0},
        "test": {"to": ["me@example.org"]},
    }


# ---- one test's world ---------------------------------------------------

Run = collections.namedtuple("Run", "args code out err")


class Case:
    """A test's temp dir, its servers and its herald runs."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"herald-{name}-")
        self.cwd = self.path("cwd")   # herald runs here: config paths must
        os.makedirs(self.cwd)         # resolve against the config's dir
        self.servers = []
        self.runs = []
        self.procs = []               # background herald processes

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, name, content):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        return p

    def server(self, *args):
        s = Server(self.path(f"smtpd{len(self.servers) + 1}"), *args)
        self.servers.append(s)
        return s

    def fault_server(self, *rules, args=()):
        """A tests/faultsmtp.py playing rules (dicts, see its --rule)."""
        a = list(args)
        # HERALD_TEST_EXTENSIONS=pipelining[,chunking]: the same faults
        # with the server advertising those (tests/integration_faults_*.py)
        for ext in filter(None, os.environ.get("HERALD_TEST_EXTENSIONS", "").split(",")):
            a.append("--" + ext)
        for r in rules:
            a += ["--rule", json.dumps(r)]
        s = Server(self.path(f"fault{len(self.servers) + 1}"), *a, script=FAULTSMTP)
        self.servers.append(s)
        return s

    def post(self, extra="", name=f"{SLUG}.md"):
        """tests/fixtures/issue-1.md (+ extra Markdown) copied to the temp dir."""
        with open(os.path.join(FIXTURES, "issue-1.md"), encoding="utf-8") as f:
            return self.write(name, f.read() + extra)

    def subscribers(self, csv_text, name="subs.csv"):
        return self.write(name, csv_text)

    def config(self, server=None, changes=None, name="herald.conf"):
        """Write a herald config for server (None: a closed port)."""
        url = server.url() if server else f"smtp://127.0.0.1:{closed_port()}"
        return self.write(name, libconfig(merged(base_config(url), changes or {})))

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HERALD")}
        env["HERALD_SECRET"] = SECRET
        env.update(extra or {})
        return env

    def command(self, args, conf=None):
        return [HERALD, "-c", conf or self.path("herald.conf"), *args]

    def record(self, run):
        self.runs.append(run)
        for line in (run.out + run.err).splitlines():
            log("#   " + line)
        log(f"#   exit {run.code}")
        return run

    def herald(self, *args, conf=None, env=None):
        """Run `$HERALD -c CONF ARGS...` from an unrelated cwd."""
        cmd = self.command(args, conf)
        log("# $ " + " ".join(cmd))
        p = subprocess.run(cmd, cwd=self.cwd, env=self.env(env),
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=120)
        return self.record(Run(cmd, p.returncode,
                               p.stdout.decode(errors="replace"),
                               p.stderr.decode(errors="replace")))

    def popen(self, *args, conf=None, env=None):
        """Start herald in the background (output to files in the temp
        dir); the caller waits for or kills it."""
        cmd = self.command(args, conf)
        n = len(self.runs) + len(self.procs) + 1
        out = open(self.path(f"bg{n}.out"), "wb")
        log("# $ " + " ".join(cmd) + " &")
        p = subprocess.Popen(cmd, cwd=self.cwd, env=self.env(env),
                             stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT)
        out.close()
        self.procs.append(p)
        return p

    def herald_tty(self, *args, conf=None, env=None, timeout=120):
        """Run herald with stdin, stdout and stderr on a pseudo-terminal.
        Returns a Run whose out holds everything the terminal showed and
        err is empty."""
        cmd = self.command(args, conf)
        log("# $ " + " ".join(cmd) + "   (on a pty)")
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen(cmd, cwd=self.cwd, env=self.env(env),
                                 stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True)
        finally:
            os.close(slave)
        self.procs.append(p)
        chunks, deadline = [], time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:      # EIO: every slave end is closed
                        break
                    if not data:
                        break
                    chunks.append(data)
                elif p.poll() is not None:
                    break
        finally:
            os.close(master)
        try:
            code = p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
        return self.record(Run(cmd, code, b"".join(chunks).decode(errors="replace"), ""))

    def send(self, *args, post=None, **kw):
        return self.herald("send", post or self.path(f"{SLUG}.md"), *args, **kw)

    def journal(self, slug=SLUG):
        """state/<slug>.journal as rows of [time, address, message-id, reply]."""
        return read_tsv(self.path("state", f"{slug}.journal"), 4)

    def bounces(self):
        """state/bounces.log as rows of [time, address, kind, enhanced, code,
        source, slug, text] (a dsn line's 9th field, the report key, left
        out)."""
        rows = read_tsv(self.path("state", "bounces.log"), 8)
        return [r[:7] + [r[7].split("\t")[0]] for r in rows]

    def report(self):
        """Diagnostics for a failure: the last herald run, server errors."""
        lines = []
        if self.runs:
            r = self.runs[-1]
            lines.append(f"last run: {' '.join(r.args)} -> exit {r.code}")
            lines += ["  " + l for l in (r.out + r.err).splitlines()[-30:]]
        for s in self.servers:
            err = [l for l in s.stderr().splitlines()
                   if not l.startswith("smtpd: listening")
                   and not l.startswith("smtpd: stopping")]
            if err:
                lines.append(f"smtpd on port {s.port}:")
                lines += ["  " + l for l in err[-20:]]
        return lines

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for s in self.servers:
            s.stop()
        if KEEP:
            log(f"# kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def read_tsv(path, fields):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", fields - 1)
                for line in f if line.strip()]
    for r in rows:
        equal(len(r), fields, f"fields in {os.path.basename(path)} line {r!r}")
    return rows


def csv(*rows, header="email,name"):
    return "\n".join((header,) + rows) + "\n"


# ---- TAP runner ---------------------------------------------------------

class Suite:
    """A list of tests and the runner that prints their TAP."""

    def __init__(self):
        self.tests = []

    def test(self, desc):
        def register(f):
            self.tests.append((f, desc))
            return f
        return register

    def main(self, argv):
        selected = [(f, d) for f, d in self.tests
                    if not argv or any(p in f.__name__ or p in d for p in argv)]
        print(f"1..{len(selected)}", flush=True)
        # A suite started in the background by a shell (make check run
        # with `&`, nohup) inherits SIGINT ignored, and herald rightly
        # keeps an ignored SIGINT ignored: give the herald runs the
        # default a terminal gives, which the signal tests are about.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not (HERALD and os.path.isfile(HERALD) and os.access(HERALD, os.X_OK)):
            print(f"Bail out! HERALD={HERALD!r} is not an executable file", flush=True)
            return 1
        failed = 0
        for n, (f, desc) in enumerate(selected, 1):
            log(f"# ---- {n} {f.__name__}")
            case = Case(f.__name__)
            started = time.monotonic()
            try:
                f(case)
                print(f"ok {n} - {desc}", flush=True)
            except Skip as e:
                print(f"ok {n} - {desc} # SKIP {e}", flush=True)
                log(f"# SKIP {e}")
            except Exception:
                failed += 1
                print(f"not ok {n} - {desc}")
                diag = traceback.format_exc().splitlines() + case.report()
                for line in diag:
                    print("# " + line)
                    log("# " + line)
                sys.stdout.flush()
            finally:
                case.cleanup()
                log(f"# {f.__name__}: {time.monotonic() - started:.1f} s")
        log(f"# {len(selected) - failed}/{len(selected)} passed")
        return 1 if failed else 0
