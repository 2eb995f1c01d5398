#!/usr/bin/python3
"""herald benchmarks (make bench). Every herald figure is printed next to a
reference measured in the same run, and every table is Markdown that can be
pasted into BENCHMARKS.md.

  loopback  herald unthrottled, N personalised messages of examples/ (a ~5 KB
            post, ~23 KB on the wire) at 1, 4 and 16 connections to
            Postfix's smtp-sink, against
              - smtp-source -d: the same bytes over the same number of
                reused connections (the comparable mode),
              - smtp-source: a connection per message (its default),
              - bench/ceiling: a bare libcurl loop sending one pre-rendered
                message over the same number of reused connections;
            each with the CPU time (user+sys, from wait4) it spent per
            message. Then render only (--dry-run to tmpfs) and peak RSS of
            a real send at N and BIG subscribers.
  rate      rate limit 50/s against tests/smtpd.py: measured rate, largest
            burst the server saw.
  latency   a 20 ms round trip between two network namespaces made here:
            herald in one, smtp-sink (PIPELINING) in the other behind
            bench/delayline (10 ms each way; this kernel has no netem); the
            per-connection rate at 1, 4, 16, 64 connections against the
            bound 1/(k x RTT) for k = 4 round trips per message (one command
            per reply) and k = 1 (RFC 2920 pipelining). Needs root.
  shards    two `send --shard I/2` in parallel: every reader exactly once
            (tests/smtpd.py), combined rate against one unsharded send
            (smtp-sink). Skipped when the herald binary has no --shard.

Usage: bench/run.py [--quick] [--herald BIN] [--baseline OLD_BIN]
                    [--loopback] [--rate-only] [--latency] [--shards]
With no part named, all of them run. --baseline runs a second herald binary
beside the first in the loopback and latency parts, taking turns, and
prints their ratio (e.g. the binary from before a change). --quick: fewer
messages and repetitions, a few minutes in all.
"""
import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CEILING = os.path.join(ROOT, "build", "bench-ceiling")
DELAYLINE = os.path.join(ROOT, "build", "bench-delayline")
SINK, SOURCE = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"
POST = os.path.join(ROOT, "examples", "2026-11-30-weekly.md")
ENV = dict(os.environ, HERALD_SECRET="bench-secret-123")

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--quick", action="store_true")
ap.add_argument("--herald", default=os.environ.get("HERALD", os.path.join(ROOT, "build", "herald")))
ap.add_argument("--baseline", help="a second herald binary to compare with")
ap.add_argument("--loopback", action="store_true")
ap.add_argument("--rate-only", "--rate", dest="rate", action="store_true")
ap.add_argument("--latency", action="store_true")
ap.add_argument("--shards", action="store_true")
ARGS = ap.parse_args()
if not (ARGS.loopback or ARGS.rate or ARGS.latency or ARGS.shards):
    ARGS.loopback = ARGS.rate = ARGS.latency = ARGS.shards = True
HERALD = os.path.abspath(ARGS.herald)
BASELINE = os.path.abspath(ARGS.baseline) if ARGS.baseline else None
QUICK = ARGS.quick
N = 2000 if QUICK else 10000
BIG = 20000 if QUICK else 100000
RATE_SECONDS = 5 if QUICK else 20
REPS = 3 if QUICK else 5


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10, prefix=()):
    """Waits until something listens on 127.0.0.1:port (in the network
    namespace prefix enters, if any)."""
    end = time.time() + timeout
    probe = ("import socket,sys;socket.create_connection(('127.0.0.1',int(sys.argv[1])),0.2)"
             ".close()")
    while time.time() < end:
        if prefix:
            if subprocess.run([*prefix, sys.executable, "-c", probe, str(port)],
                              stderr=subprocess.DEVNULL).returncode == 0:
                return
        else:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class Sink:
    """Postfix smtp-sink: accepts everything, stores nothing; advertises
    PIPELINING. prefix runs it in a network namespace."""

    def __init__(self, prefix=(), port=None, count=False):
        self.port = port or free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.p = subprocess.Popen([*prefix, SINK, *user, *(["-c"] if count else []),
                                   f"127.0.0.1:{self.port}", "1024"],
                                  stdout=subprocess.PIPE if count else subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        # With -c smtp-sink writes "sess=S quit=Q mesg=M\r" (flushed) as each
        # message completes: stamped here, the server's view of the rate.
        self.accepted = []
        if count:
            threading.Thread(target=self._count, daemon=True).start()
        wait_port(self.port, prefix=prefix)

    def _count(self):
        while True:
            b = os.read(self.p.stdout.fileno(), 65536)
            if not b:
                return
            t = time.monotonic()
            self.accepted += [(t, int(m)) for m in re.findall(rb"mesg=(\d+)", b)]

    def stop(self):
        stop(self.p)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Result:
    """One finished child: seconds, CPU seconds (user+sys) and peak RSS
    (MiB) of that process and what it waited for, from wait4."""

    def __init__(self, cmd, env=None, check=True):
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        t = time.monotonic()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:  # Ctrl-C, SIGTERM: it does not outlive us
            stop(p)
            raise
        self.seconds = time.monotonic() - t
        p.returncode = self.code = os.waitstatus_to_exitcode(status)
        self.cpu = ru.ru_utime + ru.ru_stime
        self.rss = ru.ru_maxrss / 1024.0
        out.seek(0)
        err.seek(0)
        self.stdout, self.stderr = out.read().decode(), err.read().decode()
        if check and self.code != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {self.code}: {self.stderr[-800:]}")


def interleaved(runs, reps=REPS):
    """Each run(port) reps times, taking turns (this machine's speed drifts
    over minutes, so the tools share its good and bad spells), each against
    a fresh smtp-sink. A run returns (messages/s, CPU µs per message).
    Returns {name: {"rate": (median, min, max), "cpu": median}}."""
    got = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            sink = Sink()
            try:
                got[name].append(run(sink.port))
            finally:
                sink.stop()
    med = lambda v: sorted(v)[len(v) // 2]
    return {k: {"rate": (med([r for r, _ in v]), min(r for r, _ in v), max(r for r, _ in v)),
                "cpu": med([c for _, c in v])} for k, v in got.items()}


def write_list(path, n):
    with open(path, "w") as f:
        f.write("email,name,city\n")
        for i in range(n):
            f.write(f"reader{i}@example.net,Reader Number {i},Town {i % 97}\n")


def write_config(d, url, subs, connections, rate="", starttls="never"):
    path = os.path.join(d, f"herald-{connections}-{time.time_ns()}.conf")
    with open(path, "w") as f:
        f.write(f'''from = "Joy <joy@example.org>";
list_id = "Weekly <weekly.example.org>";
subscribers = "{subs}";
templates = "{ROOT}/templates";
state_dir = "{d}/state-{connections}-{time.time_ns()}";
unsubscribe = {{ url = "https://example.org/u?e={{{{email}}}}&t={{{{token}}}}";
                mailto = "unsubscribe@example.org"; }};
smtp = {{ url = "{url}"; starttls = "{starttls}"; connections = {connections}; }};
{rate}
''')
    return path


def local(port):
    return f"smtp://127.0.0.1:{port}"


def herald_send(binary, conf, n, prefix=(), extra=()):
    """One real send; returns (messages/s, CPU µs per message)."""
    r = Result([*prefix, binary, "-q", "-c", conf, "send", POST, *extra], ENV)
    return n / r.seconds, r.cpu / n * 1e6


def fmt(rate, cpu=None):
    s = f"{rate:,.0f}/s" if rate >= 100 else f"{rate:,.1f}/s"
    return s if cpu is None else f"{s} ({cpu:,.0f} µs)"


# ---- loopback ---------------------------------------------------------------

def one_message(d, subs):
    """One message exactly as herald puts it on the wire, for the
    references to send."""
    out = os.path.join(d, f"one-{time.time_ns()}")
    conf = write_config(d, local(free_port()), subs, 1)
    Result([HERALD, "-q", "-c", conf, "send", POST, "--dry-run", out, "--limit", "1"],
           ENV, check=False)
    return os.path.join(out, sorted(os.listdir(out))[0])


def source_cmd(one, c, n, target, reuse=True):
    return [SOURCE, *(["-d"] if reuse else []), "-s", str(c), "-m", str(n), "-F", one,
            "-f", "joy@example.org", "-t", "reader@example.net", target]


def loopback(d, shm):
    subs = os.path.join(d, "subs.csv")
    write_list(subs, N)
    one = one_message(shm, subs)
    print(f"\n## Loopback: {N} messages of {os.path.getsize(one)} bytes to smtp-sink\n")
    print(f"msgs/s and (CPU µs per message, user+sys of the sending process); "
          f"medians of {REPS} interleaved runs, each on a fresh sink\n")
    cols = ["herald"] + (["baseline"] if BASELINE else []) + \
        ["smtp-source -d", "smtp-source", "ceiling"]
    head = ["connections", "herald"]
    if BASELINE:
        head += ["baseline herald", "herald / baseline"]
    head += ["smtp-source -d (reuse)", "herald / it", "smtp-source (conn per msg)",
             "herald / it", "libcurl ceiling", "herald / ceiling"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    ranges = []
    for c in (1, 4, 16):
        def source(reuse):
            def run(port):
                r = Result(source_cmd(one, c, N, f"127.0.0.1:{port}", reuse))
                return N / r.seconds, r.cpu / N * 1e6
            return run

        def ceiling(port):
            r = Result([CEILING, local(port), one, str(N), str(c)])
            return float(r.stdout), r.cpu / N * 1e6

        runs = {"herald": lambda port: herald_send(HERALD, write_config(d, local(port), subs, c), N)}
        if BASELINE:
            runs["baseline"] = lambda port: herald_send(
                BASELINE, write_config(d, local(port), subs, c), N)
        runs.update({"smtp-source -d": source(True), "smtp-source": source(False),
                     "ceiling": ceiling})
        m = interleaved(runs)
        hr = m["herald"]["rate"][0]
        row = [str(c)]
        for k in cols:
            row.append(fmt(m[k]["rate"][0], m[k]["cpu"]))
            if k != "herald":
                row.append(f"**{hr / m[k]['rate'][0]:.2f}**")
        print("| " + " | ".join(row) + " |", flush=True)
        ranges.append(f"{c}: " + ", ".join(f"{k} {lo:,.0f}-{hi:,.0f}"
                                            for k in cols for _, lo, hi in [m[k]["rate"]]))
    print("\nranges (msgs/s) over the runs: " + "; ".join(ranges))

    sink = Sink()
    try:
        conf = write_config(d, local(sink.port), subs, 1)
        out = os.path.join(shm, "dry")
        r = Result([HERALD, "-q", "-c", conf, "send", POST, "--dry-run", out], ENV)
        print(f"\n| measure | figure |\n|---|---|\n| render only (`--dry-run` to tmpfs, "
              f"{N:,} messages) | **{fmt(N / r.seconds, r.cpu / N * 1e6)}** |")
        shutil.rmtree(out, ignore_errors=True)
        for n in (N, BIG):
            path = os.path.join(d, f"subs-{n}.csv")
            write_list(path, n)
            r = Result([HERALD, "-q", "-c", write_config(d, local(sink.port), path, 4),
                        "send", POST], ENV)
            print(f"| peak RSS, real send to {n:,} readers | **{r.rss:.1f} MiB** |", flush=True)
    finally:
        sink.stop()


# ---- rate accuracy ------------------------------------------------------------

class Smtpd:
    """tests/smtpd.py: stores every message and its envelope in a maildir."""

    def __init__(self, d, name, seconds):
        self.md = os.path.join(d, name)
        portfile = os.path.join(d, name + ".port")
        self.p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "smtpd.py"),
                                   "--maildir", self.md, "--port-file", portfile,
                                   "--max-seconds", str(seconds)], stderr=subprocess.DEVNULL)
        end = time.time() + 20
        while not os.path.exists(portfile) or not open(portfile).read().strip():
            if time.time() > end or self.p.poll() is not None:
                raise RuntimeError("tests/smtpd.py did not start")
            time.sleep(0.05)
        self.port = int(open(portfile).read())

    def stop(self):
        stop(self.p)

    def recipients(self):
        env = os.path.join(self.md, "envelope")
        out = []
        for f in os.listdir(env) if os.path.isdir(env) else ():
            with open(os.path.join(env, f)) as fh:
                out += [a.lower() for a in json.load(fh)["rcpt_tos"]]
        return out


def rate_accuracy(d):
    srv = Smtpd(d, "maildir-rate", RATE_SECONDS * 3 + 60)
    try:
        n = 50 * RATE_SECONDS
        path = os.path.join(d, "subs-rate.csv")
        write_list(path, n)
        conf = write_config(d, local(srv.port), path, 1, "rate = { per_second = 50.0; burst = 1; };")
        Result([HERALD, "-q", "-c", conf, "send", POST], ENV)
        new = os.path.join(srv.md, "new")
        times = sorted(os.stat(os.path.join(new, f)).st_mtime_ns / 1e9 for f in os.listdir(new))
        measured = (len(times) - 1) / (times[-1] - times[0])
        burst = max(sum(1 for t in times if s <= t < s + 0.1) for s in times)
        print(f"\n## Rate limit\n\n| measure | figure |\n|---|---|\n"
              f"| rate limit 50/s for {RATE_SECONDS} s ({len(times):,} messages) | "
              f"**{measured:.2f}/s ({(measured / 50 - 1) * 100:+.2f} %)** |\n"
              f"| largest burst the server saw | {burst} messages in 100 ms (5 expected) |",
              flush=True)
    finally:
        srv.stop()


# ---- latency ------------------------------------------------------------------

DELAY_MS = 10.0  # each way: a 20 ms round trip


class Namespaces:
    """Two network namespaces joined by a veth pair: herald's side (cli,
    10.231.0.1) and the server's (srv, 10.231.0.2), where smtp-sink listens
    on loopback behind the delay line. Named after this process, so runs
    side by side do not meet; removed with everything started in them."""

    def __init__(self):
        tag = os.getpid()
        self.cli, self.srv = f"hbench-c{tag}", f"hbench-s{tag}"
        self.procs = []
        self.made = []
        atexit.register(self.close)
        for ns in (self.cli, self.srv):
            self.ip("netns", "add", ns)
            self.made.append(ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        vc, vs = f"hbc{tag}"[:15], f"hbs{tag}"[:15]
        self.ip("link", "add", vc, "netns", self.cli, "type", "veth", "peer", "name", vs,
                "netns", self.srv)
        self.ip("-n", self.cli, "addr", "add", "10.231.0.1/30", "dev", vc)
        self.ip("-n", self.srv, "addr", "add", "10.231.0.2/30", "dev", vs)
        self.ip("-n", self.cli, "link", "set", vc, "up")
        self.ip("-n", self.srv, "link", "set", vs, "up")

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True, stderr=subprocess.PIPE)

    def run_in(self, ns):
        # `ip netns exec` execs the command in place: wait4 sees its own usage.
        return ["ip", "netns", "exec", ns]

    def spawn(self, ns, cmd, **kw):
        p = subprocess.Popen([*self.run_in(ns), *cmd], **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            stop(p)
        self.procs = []
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.made = []


PING = r'''
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO bench.example\r\n")
ehlo = []
while True:
    line = f.readline().decode().strip()
    ehlo.append(line[4:])
    if line[3:4] != "-":
        break
rtts = []
for _ in range(int(sys.argv[3])):
    t = time.monotonic()
    s.sendall(b"NOOP\r\n")
    f.readline()
    rtts.append((time.monotonic() - t) * 1000)
s.sendall(b"QUIT\r\n")
print(" ".join(ehlo[1:]))
print(" ".join(f"{x:.3f}" for x in rtts))
'''


def latency(d):
    if os.geteuid() != 0:
        print("\n## Latency\n\nskipped: the latency part makes network namespaces and "
              "needs root (run bench/run.py --latency as root)")
        return
    for tool in ("/usr/sbin/ip", DELAYLINE):
        if not os.access(tool, os.X_OK):
            print(f"\n## Latency\n\nskipped: {tool} missing (make bench builds and installs it)")
            return
    netem = subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                           capture_output=True, text=True) if shutil.which("tc") else None
    if netem is not None and netem.returncode == 0:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"])
    ns = Namespaces()
    try:
        latency_in(d, ns, netem)
    finally:
        ns.close()


def steady(sink, after):
    """Messages per second the server accepted in the middle 80 % of the
    messages numbered above after (startup and the last stragglers left
    out)."""
    ts = [t for t, m in list(sink.accepted) if m > after]
    i, j = len(ts) // 10, len(ts) - 1 - len(ts) // 10
    return (j - i) / (ts[j] - ts[i]) if j > i and ts[j] > ts[i] else float("nan")


def latency_in(d, ns, netem):
    sink_port, relay_port = 2525, 2526
    sink = Sink(prefix=ns.run_in(ns.srv), port=sink_port, count=True)
    ns.procs.append(sink.p)
    relay = ns.spawn(ns.srv, [DELAYLINE, "10.231.0.2", str(relay_port), "127.0.0.1",
                              str(sink_port), str(DELAY_MS)], stdout=subprocess.PIPE)
    if relay.stdout.readline().strip() != b"ready":
        raise RuntimeError("bench-delayline did not start")
    ping = Result([*ns.run_in(ns.cli), sys.executable, "-c", PING, "10.231.0.2",
                   str(relay_port), "50"])
    ehlo, rtts = ping.stdout.splitlines()
    rtts = sorted(float(x) for x in rtts.split())
    rtt = rtts[len(rtts) // 2] / 1000
    exts = ehlo.split()
    have_netem = netem is not None and netem.returncode == 0
    print(f"\n## Latency: {2 * DELAY_MS:.0f} ms round trip between two network namespaces\n")
    print(f"netem: {'available (the delay line is used all the same)' if have_netem else 'not in this kernel (' + (netem.stderr.strip() if netem else 'no tc') + ')'}; "
          f"bench/delayline holds each chunk {DELAY_MS:.0f} ms each way.  ")
    print(f"measured RTT (50 NOOPs to smtp-sink through the path): median {rtt * 1000:.2f} ms, "
          f"min {rtts[0]:.2f}, max {rtts[-1]:.2f}  ")
    print(f"smtp-sink EHLO: {ehlo}: PIPELINING "
          f"{'advertised' if 'PIPELINING' in exts else 'NOT advertised'}, CHUNKING "
          f"{'advertised' if 'CHUNKING' in exts else 'not advertised'}\n")
    url = f"smtp://10.231.0.2:{relay_port}"
    bins = {"herald": HERALD, **({"baseline": BASELINE} if BASELINE else {})}
    b4, b1 = 1 / (4 * rtt), 1 / rtt
    head = ["connections", "messages", "herald per connection", "whole send (CPU µs/msg)"]
    if BASELINE:
        head += ["baseline per connection", "whole send (CPU µs/msg)", "herald / baseline"]
    head += ["/ bound k=4", "/ bound k=1", "smtp-source -d per connection", "herald / it"]
    print(f"per-connection msgs/s: steady (the server's count over the middle 80 % of the "
          f"messages) and over the whole send (herald's wall clock, startup included); "
          f"bounds from the measured RTT: k=4 round trips per message {b4:.2f}/s, "
          f"k=1 (pipelined) {b1:.2f}/s per connection; smtp-source -d (one command per "
          f"reply, the same message) over the same path as a reference\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    reps = 1 if QUICK else 3
    for c in (1, 4, 16, 64):
        n = max(60, 15 * c) if QUICK else max(240, 40 * c)
        subs = os.path.join(d, f"subs-lat-{n}.csv")
        write_list(subs, n)
        one = one_message(d, subs)
        got = {k: [] for k in bins}
        got["smtp-source -d"] = []
        for _ in range(reps):
            time.sleep(0.2)
            after = sink.accepted[-1][1] if sink.accepted else 0
            r = Result([*ns.run_in(ns.cli), *source_cmd(one, c, n, f"10.231.0.2:{relay_port}")])
            time.sleep(0.1)
            got["smtp-source -d"].append((steady(sink, after) / c, n / r.seconds / c,
                                          r.cpu / n * 1e6))
            for k, b in bins.items():
                time.sleep(0.2)  # the last counts of the run before are in
                after = sink.accepted[-1][1] if sink.accepted else 0
                whole, cpu = herald_send(b, write_config(d, url, subs, c), n,
                                         prefix=ns.run_in(ns.cli))
                time.sleep(0.1)
                got[k].append((steady(sink, after) / c, whole / c, cpu))
        med = {k: sorted(v)[len(v) // 2] for k, v in got.items()}
        h = med["herald"]
        row = [str(c), str(n), f"**{fmt(h[0])}**", fmt(h[1], h[2])]
        if BASELINE:
            b = med["baseline"]
            row += [fmt(b[0]), fmt(b[1], b[2]), f"**{h[0] / b[0]:.2f}**"]
        src = med["smtp-source -d"]
        row += [f"{h[0] / b4:.2f}", f"{h[0] / b1:.2f}", fmt(src[0]), f"{h[0] / src[0]:.2f}"]
        print("| " + " | ".join(row) + " |", flush=True)
    if reps > 1:
        print(f"\n(medians of {reps} runs{', the binaries taking turns' if BASELINE else ''})")


# ---- shards -------------------------------------------------------------------

def has_shard(binary):
    r = subprocess.run([binary, "--help"], capture_output=True, text=True)
    return "--shard" in r.stdout + r.stderr


def shard_args(binary, d, subs):
    """--shard I/N counted from 1 or from 0: whichever the binary takes."""
    conf = write_config(d, local(free_port()), subs, 1)
    r = subprocess.run([binary, "-q", "-c", conf, "send", POST, "--dry-run",
                        os.path.join(d, "shard-probe"), "--limit", "1", "--shard", "2/2"],
                       env=ENV, capture_output=True)
    return (["1/2", "2/2"]) if r.returncode != 64 else (["0/2", "1/2"])


def parallel(cmds):
    """Starts every command at once; returns (wall seconds, [Result-like codes])."""
    t = time.monotonic()
    ps = []
    try:
        for c in cmds:
            ps.append(subprocess.Popen(c, env=ENV, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE))
        errs = [p.communicate()[1].decode() for p in ps]
    except BaseException:
        for p in ps:
            stop(p)
        raise
    el = time.monotonic() - t
    for c, p, e in zip(cmds, ps, errs):
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(c)} exited {p.returncode}: {e[-800:]}")
    return el


def shards(d):
    print("\n## Shards: two `herald send --shard I/2` in parallel\n")
    if not has_shard(HERALD):
        print("skipped: this herald has no --shard")
        return
    n = 2000 if QUICK else 10000
    subs = os.path.join(d, "subs-shard.csv")
    write_list(subs, n)
    which = shard_args(HERALD, d, subs)
    want = {f"reader{i}@example.net" for i in range(n)}

    # Coverage: both shards into one server that stores every envelope.
    srv = Smtpd(d, "maildir-shards", 600)
    try:
        parallel([[HERALD, "-q", "-c", write_config(d, local(srv.port), subs, 2), "send", POST,
                   "--shard", s] for s in which])
        got = srv.recipients()
    finally:
        srv.stop()
    seen = {}
    for a in got:
        seen[a] = seen.get(a, 0) + 1
    twice = sum(1 for v in seen.values() if v > 1)
    missing = len(want - set(seen))
    extra = len(set(seen) - want)
    ok = not twice and not missing and not extra
    print(f"coverage ({n:,} readers, tests/smtpd.py): {len(got):,} messages, "
          f"{missing} readers missing, {twice} twice, {extra} unknown: "
          f"**{'every reader exactly once' if ok else 'FAILED'}** (shards {', '.join(which)})\n")

    # Rate: the same total connections, one process or two, to smtp-sink.
    rows = {"unsharded": [], "2 shards": []}
    for _ in range(REPS):
        sink = Sink()
        try:
            rows["unsharded"].append(n / parallel(
                [[HERALD, "-q", "-c", write_config(d, local(sink.port), subs, 4), "send", POST]]))
        finally:
            sink.stop()
        sink = Sink()
        try:
            rows["2 shards"].append(n / parallel(
                [[HERALD, "-q", "-c", write_config(d, local(sink.port), subs, 2), "send", POST,
                  "--shard", s] for s in which]))
        finally:
            sink.stop()
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    print("| send to smtp-sink | msgs/s | ratio |\n|---|---:|---:|")
    print(f"| unsharded, 4 connections | {fmt(med['unsharded'])} | 1.00 |")
    print(f"| 2 shards in parallel, 2 connections each | {fmt(med['2 shards'])} | "
          f"**{med['2 shards'] / med['unsharded']:.2f}** |")
    print(f"\n(medians of {REPS} runs; both on this one machine's cores)")
    if not ok:
        raise SystemExit("bench: the shards did not cover the list exactly once")


def versions():
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"
    curl = first(["curl-config", "--version"])
    postfix = first(["postconf", "-h", "mail_version"])
    kernel = os.uname().release
    h = first([HERALD, "--version"])
    return f"{h}; libcurl {curl.split()[-1] if curl != '?' else '?'}; Postfix {postfix}; " \
           f"Linux {kernel}; Python {sys.version.split()[0]}"


def main():
    # SIGTERM and SIGHUP unwind like Ctrl-C: the finally blocks and atexit
    # remove the namespaces and stop what runs in them. SIGINT is set too:
    # started in the background by a shell, Python would inherit it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda num, _: sys.exit(128 + num))
    need = [HERALD] + ([BASELINE] if BASELINE else [])
    if ARGS.loopback:
        need += [SINK, SOURCE, CEILING]
    for tool in need:
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench: {tool} missing (make bench builds and installs what it needs)")
    d = tempfile.mkdtemp(prefix="herald-bench-", dir="/tmp")
    shm = tempfile.mkdtemp(prefix="herald-bench-", dir="/dev/shm")
    atexit.register(shutil.rmtree, d, True)
    atexit.register(shutil.rmtree, shm, True)
    print(f"# herald benchmarks, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(f"herald: {HERALD}" + (f"; baseline: {BASELINE}" if BASELINE else ""))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load} at the start; {versions()}"
          f"{'; --quick' if QUICK else ''}", flush=True)
    if ARGS.loopback:
        loopback(d, shm)
    if ARGS.rate:
        rate_accuracy(d)
    if ARGS.latency:
        latency(d)
    if ARGS.shards:
        shards(d)


if __name__ == "__main__":
    main()
