#!/usr/bin/python3
"""herald benchmarks (make bench). Everything runs on loopback against
Postfix's smtp-sink, started and stopped here, and every herald figure is
printed next to a reference measured in the same run:

  1. herald unthrottled, 10,000 personalised messages of examples/ (a ~5 KB
     post, ~22 KB on the wire) with 1, 4 and 16 connections, against
       - smtp-source sending the same number of messages of the same bytes
         with the same concurrency (it opens a connection per message), and
       - bench/ceiling: a bare libcurl loop sending one pre-rendered message
         over the same number of reused connections;
  2. render only: --dry-run to a tmpfs directory, messages per second;
  3. peak RSS of a real send at 10,000 and 100,000 subscribers;
  4. rate-limiter accuracy: rate 50/s for 20 s against tests/smtpd.py,
     measured rate and the largest burst the server saw.

Usage: bench/run.py [--quick] [--rate-only]   (--quick: 2,000 messages, 5 s rate
test; --rate-only: just part 4)
"""
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERALD = os.environ.get("HERALD", os.path.join(ROOT, "build", "herald"))
CEILING = os.path.join(ROOT, "build", "bench-ceiling")
POST = os.path.join(ROOT, "examples", "2026-11-30-weekly.md")
QUICK = "--quick" in sys.argv
N = 2000 if QUICK else 10000
BIG = 20000 if QUICK else 100000
RATE_SECONDS = 5 if QUICK else 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class Sink:
    """Postfix smtp-sink: accepts everything, stores nothing."""

    def __init__(self):
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.p = subprocess.Popen(["/usr/sbin/smtp-sink", *user,
                                   f"127.0.0.1:{self.port}", "1024"],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(10)


REPS = 5


def interleaved(runs):
    """Each run(port) REPS times, taking turns (this machine's speed drifts
    over minutes, so the tools share its good and bad spells), each against
    a fresh smtp-sink. Returns {name: (median, min, max)}."""
    figures = {name: [] for name in runs}
    for _ in range(REPS):
        for name, run in runs.items():
            sink = Sink()
            try:
                figures[name].append(run(sink.port))
            finally:
                sink.stop()
    return {k: (sorted(v)[len(v) // 2], min(v), max(v)) for k, v in figures.items()}


def write_list(path, n):
    with open(path, "w") as f:
        f.write("email,name,city\n")
        for i in range(n):
            f.write(f"reader{i}@example.net,Reader Number {i},Town {i % 97}\n")


def write_config(d, port, subs, connections, rate=""):
    path = os.path.join(d, f"herald-{connections}.conf")
    with open(path, "w") as f:
        f.write(f'''from = "Joy <joy@example.org>";
list_id = "Weekly <weekly.example.org>";
subscribers = "{subs}";
templates = "{ROOT}/templates";
state_dir = "{d}/state-{connections}-{time.time_ns()}";
unsubscribe = {{ url = "https://example.org/u?e={{{{email}}}}&t={{{{token}}}}";
                mailto = "unsubscribe@example.org"; }};
smtp = {{ url = "smtp://127.0.0.1:{port}"; starttls = "never"; connections = {connections}; }};
{rate}
''')
    return path


def timed(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS in MiB of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    el = time.monotonic() - t
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all of them: only trust it
    # when it grew, which the RSS runs below arrange by running last.
    return el, max(rss, before) / 1024.0, r


def herald_send(conf):
    env = dict(os.environ, HERALD_SECRET="bench-secret-123")
    el, rss, _ = timed([HERALD, "-q", "-c", conf, "send", POST], env)
    return el, rss


def rate_accuracy(d, env):
    """Rate accuracy against a server that timestamps what it receives."""
    md = os.path.join(d, "maildir")
    portfile = os.path.join(d, "smtpd.port")
    srv = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "tests", "smtpd.py"),
                            "--maildir", md, "--port-file", portfile,
                            "--max-seconds", str(RATE_SECONDS * 3 + 60)],
                           stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(portfile):
            time.sleep(0.05)
        port = int(open(portfile).read())
        n = 50 * RATE_SECONDS
        path = os.path.join(d, "subs-rate.csv")
        write_list(path, n)
        conf = write_config(d, port, path, 1, "rate = { per_second = 50.0; burst = 1; };")
        timed([HERALD, "-q", "-c", conf, "send", POST], env)
        times = sorted(os.stat(os.path.join(md, "new", f)).st_mtime_ns / 1e9
                       for f in os.listdir(os.path.join(md, "new")))
        span = times[-1] - times[0]
        measured = (len(times) - 1) / span
        burst = max(sum(1 for t in times if s <= t < s + 0.1) for s in times)
        print(f"\nrate limit 50/s for {RATE_SECONDS} s: {len(times)} messages, measured "
              f"{measured:.2f}/s ({(measured / 50 - 1) * 100:+.2f} %), largest burst "
              f"{burst} messages in 100 ms (5 expected)")
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(10)


def main():
    if "--rate-only" in sys.argv:
        d = tempfile.mkdtemp(prefix="herald-bench-", dir="/tmp")
        rate_accuracy(d, dict(os.environ, HERALD_SECRET="bench-secret-123"))
        shutil.rmtree(d, ignore_errors=True)
        return
    for tool in (HERALD, "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source", CEILING):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench: {tool} missing (make bench builds and installs what it needs)")
    d = tempfile.mkdtemp(prefix="herald-bench-", dir="/tmp")
    shm = tempfile.mkdtemp(prefix="herald-bench-", dir="/dev/shm")
    subs = os.path.join(d, "subs.csv")
    write_list(subs, N)
    print(f"herald benchmarks: {N} messages of {os.path.basename(POST)}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    sink = Sink()
    try:
        # One message exactly as herald puts it on the wire, for the
        # references to send.
        env = dict(os.environ, HERALD_SECRET="bench-secret-123")
        conf = write_config(d, sink.port, subs, 1)
        subprocess.run([HERALD, "-q", "-c", conf, "send", POST, "--dry-run",
                        os.path.join(shm, "one"), "--limit", "1"], env=env)
        one = os.path.join(shm, "one", sorted(os.listdir(os.path.join(shm, "one")))[0])
        size = os.path.getsize(one)
        print(f"message size on the wire: {size} bytes\n")
        print(f"{'connections':>11} {'herald':>10} {'smtp-source':>12} {'ratio':>6}"
              f" {'ceiling':>10} {'ratio':>6}   (medians of {REPS} interleaved runs, each on a fresh sink)")
        for c in (1, 4, 16):
            runs = {
                "herald": lambda port: N / herald_send(write_config(d, port, subs, c))[0],
                "smtp-source": lambda port: N / timed(
                    ["/usr/sbin/smtp-source", "-s", str(c), "-m", str(N), "-F", one,
                     "-f", "joy@example.org", "-t", "reader@example.net",
                     f"127.0.0.1:{port}"])[0],
                "ceiling": lambda port: float(subprocess.run(
                    [CEILING, f"smtp://127.0.0.1:{port}", one, str(N), str(c)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    check=True).stdout),
            }
            m = interleaved(runs)
            hr, sr, cr = m["herald"][0], m["smtp-source"][0], m["ceiling"][0]
            print(f"{c:>11} {hr:>8.0f}/s {sr:>10.0f}/s {hr / sr:>6.2f}"
                  f" {cr:>8.0f}/s {hr / cr:>6.2f}   ranges: "
                  + ", ".join(f"{k} {lo:.0f}-{hi:.0f}" for k, (_, lo, hi) in m.items()),
                  flush=True)

        conf = write_config(d, sink.port, subs, 1)
        out = os.path.join(shm, "dry")
        el, _, _ = timed([HERALD, "-q", "-c", conf, "send", POST, "--dry-run", out], env)
        print(f"\nrender only (--dry-run to tmpfs): {N / el:.0f} messages/s")
        shutil.rmtree(out, ignore_errors=True)

        # Peak RSS: each in a fresh child so ru_maxrss is its own.
        for n in (N, BIG):
            path = os.path.join(d, f"subs-{n}.csv")
            write_list(path, n)
            conf = write_config(d, sink.port, path, 4)
            code = ("import resource,subprocess,sys,os;"
                    "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
                    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
            r = subprocess.run([sys.executable, "-c", code, HERALD, "-q", "-c", conf,
                                "send", POST], env=env, stdout=subprocess.PIPE, check=True)
            print(f"peak RSS, real send to {n:>6} subscribers: {int(r.stdout) / 1024:.1f} MiB")
    finally:
        sink.stop()

    rate_accuracy(d, env)
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    main()
