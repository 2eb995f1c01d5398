#!/usr/bin/python3
"""A private Postfix instance for one test: its own config, queue and data
directories under a directory the test gives it, one smtpd listening on
127.0.0.1 on a free port, no system service touched (/etc/postfix and
/var/spool/postfix are only read, never written; port 25 is never bound).

    p = Postfix(directory,
                relayhost=capture.port,          # or "127.0.0.1:PORT"
                mynetworks="127.0.0.0/8",
                relay_restrictions="reject_unauth_destination",
                client_restrictions=None, sender_restrictions=None,
                recipient_restrictions=None,
                sasl=False, users={"joy": "secret"},
                discard=False, main={"smtpd_delay_reject": "no"})
    p.port                 # the smtpd port on 127.0.0.1
    p.url()                # "smtp://127.0.0.1:PORT"
    p.log()                # Postfix's own log (maillog_file via postlogd)
    p.sasl_log()           # the private Dovecot's log (sasl=True)
    p.deliveries()         # [{"id", "to", "relay", "status", "text"}] from the log
    p.wait_deliveries(3)   # ... until 3 are logged (discard mode counts this way)
    p.queued()             # queue files not yet delivered
    p.stop()               # and verifies no process of the instance is left
    with Postfix(d, ...) as p: ...

A restriction may be given as its value ("reject_unauth_destination") or as
the whole main.cf line ("smtpd_relay_restrictions = reject_unauth_destination").
None leaves Postfix's default, which for smtpd_relay_restrictions is
"permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
(compatibility_level 3.6): an untrusted client relaying gets a 454 4.7.1,
not a 554, unless the test says reject_unauth_destination.  Postfix
rejects a relay/recipient restriction pair with no reject-like entry (see
Caveats).  main={name: value} sets any other main.cf parameter (e.g.
smtpd_delay_reject, smtpd_tls_cert_file) and is applied last; settings
holds the resulting main.cf.  AUTH_REQUIRED and dialogue(port, rcpt,
sender, login) help with the replies (see the self-test).

Delivery: with relayhost every accepted message goes to [host]:port by SMTP
(a tests/smtpd.py capture server: harness.Server); with discard=True it is
thrown away by the discard(8) transport and only the log counts it.  Mail
leaves the queue as soon as it is accepted (qmgr is woken by cleanup); the
retry times of deferred mail are cut to a second or two.

sasl=True starts a private Dovecot (auth service only, passwd-file from
users) whose auth socket is the instance's private/auth, and turns on
smtpd_sasl_auth_enable with smtpd_sasl_type = dovecot.  Postfix has no
reply "530 5.7.0 Authentication required" of its own; AUTH_REQUIRED below
is the restriction that produces the nearest one:
    530 5.7.0 <localhost[127.0.0.1]>: Client host rejected: Authentication required

Caveats, learnt the hard way:
  * Must run as root (master(8) starts as root and drops to mail_owner);
    as root `postfix -c DIR` needs no alternate_config_directories entry
    in /etc/postfix/main.cf.  -c must be an absolute path: a relative one
    fails without a word.
  * maillog_file must lie under maillog_file_prefixes (default /var,
    /dev/stdout), so that is set to the instance's directory; otherwise
    every postfix command exits 1 silently.
  * data_directory must be owned by mail_owner (master.lock).
  * myhostname is not "localhost": tests/smtpd.py greets as localhost and
    Postfix's smtp client would bounce the mail as "loops back to myself".
  * A restriction list that Postfix refuses (e.g. smtpd_relay_restrictions
    without reject/reject_unauth_destination/...) passes `postfix start`
    but makes every smtpd exit fatally, and master then throttles the
    service for 60 s: clients see a connection that never greets.  So
    start() waits for smtpd to answer (220, or a CONNECT-time reject) and
    raises StartError with smtpd's fatal line as soon as it is logged.
  * Every Postfix command that reads main.cf rereads it each 0.3 s until
    its mtime is 2 s old ("let it cool down"): main.cf and master.cf are
    dated 10 s back, else each command costs 1.5 s.
  * `postfix start` runs post-install create-missing, postsuper and a
    find(1) over the installation (1-4 s); quick=True (the default) makes
    the queue directories from /etc/postfix/postfix-files itself and
    starts with queue_directory/quick-start, which skips all that.
  * master opens data_directory/master.lock as mail_owner by full path, so
    every directory above the instance gets o+x (traverse, not read).
  * Dovecot's `dovecot stop` waits 2-3 s; its master and log process wait
    for each other about 1 s after a SIGTERM to the master alone.  stop()
    sends SIGTERM to each of the instance's Dovecot processes by pid.
  * A port taken between choosing it and master binding it makes
    `postfix start` fail ("Address already in use", about 2 s); start()
    then tries another free port, up to 5 times.
  * Processes: master's command line is just "master -w" and its children
    name no directory either, so the instance's processes are the Postfix
    or Dovecot executables whose cwd lies in the directory (each Postfix
    daemon chdirs to queue_directory, Dovecot's to its base_dir) or whose
    environment has MAIL_CONFIG=conf_dir; only these are ever signalled.
    processes_naming() is the wider read-only check (cwd, argv or
    environment naming the directory).  Zombies do not count: PID 1 on
    this machine reaps orphans, lazily.

Budget: start 0.3-0.9 s (SASL included), stop 0.1-0.5 s on an idle-ish
2-CPU machine; the self-test prints the range it saw.

Self-test (needs root, postfix, dovecot-core, python3-aiosmtpd):
    /usr/bin/python3 tests/postfix.py        # TAP on stdout
Stdlib only; tests/smtpd.py (aiosmtpd) only for the self-test.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
META_DIR = "/etc/postfix"          # postconf -dh meta_directory
HOSTNAME = "postfix.herald.test"

# The restriction that stands in for "authentication required".
AUTH_REQUIRED = ("permit_sasl_authenticated, check_client_access "
                 "static:{530 5.7.0 Authentication required}, reject")

# Only what smtpd, cleanup, qmgr and the smtp/discard transports need.
# chroot is "n" everywhere: no copy of /etc in the queue directory.
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen}      inet  n       -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
proxymap  unix  -       -       n       -       -       proxymap
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available():
    """None when a private instance can run here, else why not."""
    if os.geteuid() != 0:
        return "not root (master(8) must start as root)"
    for prog in (POSTFIX, POSTCONF):
        if not os.access(prog, os.X_OK):
            return f"{prog} is not installed (Debian package postfix)"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "no postfix user or postdrop group"
    return None


def sasl_available():
    """None when sasl=True can work here, else why not."""
    why = available()
    if why:
        return why
    if not os.access(DOVECOT, os.X_OK):
        return f"{DOVECOT} is not installed (Debian package dovecot-core)"
    if "dovecot" not in subprocess.run([POSTCONF, "-a"], capture_output=True,
                                       text=True).stdout.split():
        return "this Postfix has no Dovecot SASL support (postconf -a)"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    """Nothing listens on 127.0.0.1:port (TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def make_queue_dirs(queue_dir, data_dir):
    """The directories `post-install create-missing` would make, with the
    owners and modes of the installation's postfix-files."""
    owner = pwd.getpwnam("postfix").pw_uid
    group = grp.getgrnam("postdrop").gr_gid
    specs = []
    try:
        with open(os.path.join(META_DIR, "postfix-files")) as f:
            for line in f:
                fields = line.strip().split(":")
                if (len(fields) >= 5 and fields[1] == "d"
                        and fields[0].split("/")[0] in ("$queue_directory",
                                                        "$data_directory")):
                    specs.append(fields[:5])
    except OSError:
        pass
    if not specs:
        raise StartError(f"no queue directories in {META_DIR}/postfix-files")
    for path, _, user, grp_, mode in specs:
        path = (path.replace("$queue_directory", queue_dir)
                .replace("$data_directory", data_dir))
        os.makedirs(path, exist_ok=True)
        uid = owner if user == "$mail_owner" else 0
        gid = group if grp_ == "$setgid_group" else -1
        os.chown(path, uid, gid)
        os.chmod(path, int(mode, 8))


def _age(path):
    """Date path 10 s back.  Every Postfix program that reads main.cf
    (dict_load_file) rereads it every 0.3 s until its mtime is 2 s old,
    "to let it cool down": a fresh main.cf costs each command 1.5 s."""
    t = time.time() - 10
    os.utime(path, (t, t))


def _value(name, v):
    """A restriction given as value or as 'name = value' -> value."""
    m = re.match(r"\s*" + re.escape(name) + r"\s*=(.*)$", v, re.S)
    return (m.group(1) if m else v).strip()


def _nexthop(relayhost):
    if isinstance(relayhost, int):
        return f"[127.0.0.1]:{relayhost}"
    if isinstance(relayhost, tuple):
        return f"[{relayhost[0]}]:{relayhost[1]}"
    if relayhost.startswith("["):
        return relayhost
    host, _, port = relayhost.rpartition(":")
    return f"[{host}]:{port}" if host else f"[{relayhost}]"


def _proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _ancestors():
    """This process and its ancestors: never a suspect."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _proc(pid):
    """(exe, cwd, argv, environ) of a live, non-zombie process, or None."""
    if _proc_state(pid) in (None, "Z", "X"):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return None
    links = []
    for link in ("exe", "cwd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/{link}"))
        except OSError:
            links.append("")
    return links[0], links[1], argv, environ


def _show(argv):
    return b" ".join(argv).decode(errors="replace").strip()


# Where the daemons' executables live (Debian): only these are ever killed.
DAEMON_DIRS = ("/usr/lib/postfix/", "/usr/lib/dovecot/")


def _is_daemon(exe):
    return (exe.startswith(DAEMON_DIRS) or exe == os.path.realpath(DOVECOT)
            or (os.path.dirname(exe) == "/usr/sbin"
                and os.path.basename(exe).startswith("post")))


def instance_processes(directory, conf_dir):
    """{pid: command line} of the live (non-zombie) Postfix and Dovecot
    processes of the instance in directory: a Postfix or Dovecot
    executable whose cwd lies in directory (every Postfix daemon chdirs to
    queue_directory, Dovecot's to base_dir) or whose environment has
    MAIL_CONFIG=conf_dir.  These are the processes stop() may kill."""
    found, skip = {}, _ancestors()
    mail_config = b"MAIL_CONFIG=" + conf_dir.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        info = _proc(int(name))
        if info is None:
            continue
        exe, cwd, argv, environ = info
        if not _is_daemon(exe):
            continue
        if (cwd == directory or cwd.startswith(directory + "/")
                or mail_config in environ):
            found[int(name)] = _show(argv)
    return found


def processes_naming(*dirs):
    """{pid: command line} of any live process (but this one and its
    ancestors) whose cwd lies in, or whose command line or environment
    names, one of dirs.  Wider than instance_processes(): to look for
    leftovers, never to choose what to kill."""
    found, skip = {}, _ancestors()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        info = _proc(int(name))
        if info is None:
            continue
        exe, cwd, argv, environ = info
        for d in dirs:
            db = d.encode()
            named = any(a == db or a.startswith(db + b"/") or
                        (b"=" in a and a.split(b"=", 1)[1].startswith(db))
                        for a in argv + environ)
            if cwd == d or cwd.startswith(d + "/") or named:
                found[int(name)] = _show(argv)
                break
    return found


class StartError(RuntimeError):
    pass


class Postfix:
    def __init__(self, directory, *, relayhost=None, mynetworks="127.0.0.0/8",
                 relay_restrictions=None, client_restrictions=None,
                 sender_restrictions=None, recipient_restrictions=None,
                 sasl=False, users=None, discard=False, main=None,
                 port=None, timeout=10, quick=True):
        why = sasl_available() if sasl else available()
        if why:
            raise StartError(f"cannot run a private Postfix: {why}")
        if relayhost is None and not discard:
            raise ValueError("give relayhost= (a next hop host:port) or discard=True")
        started = time.monotonic()
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.conf_dir = os.path.join(self.dir, "conf")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        for d in (self.conf_dir, self.queue_dir, self.data_dir):
            os.makedirs(d, exist_ok=True)
        # master opens data_directory/master.lock as mail_owner, by its full
        # path: every directory above must be traversable (x, not r) by
        # others.  tempfile.mkdtemp makes 0700 ones: those (below the temp
        # directory) get o+x; any other is left alone and is an error.
        tmp = os.path.realpath(tempfile.gettempdir())
        p = self.dir
        while p != "/":
            mode = os.stat(p).st_mode
            if mode & 0o001 == 0:
                if not os.path.realpath(p).startswith(tmp + "/"):
                    raise StartError(f"{p} is not searchable by the postfix "
                                     f"user; put the instance under {tmp}")
                os.chmod(p, (mode & 0o7777) | 0o011)
            p = os.path.dirname(p)
        # the queue directory must be root's and not group/other writable;
        # data_directory mail_owner's
        os.chmod(self.queue_dir, 0o755)
        os.chown(self.data_dir, pwd.getpwnam("postfix").pw_uid, -1)
        self.quick = quick
        if quick:
            make_queue_dirs(self.queue_dir, self.data_dir)
        self.timeout = timeout
        self.sasl = sasl
        self.dovecot = None
        self.stopped = False
        self.start_seconds = self.stop_seconds = None
        self.master_pid = None
        self.port = None
        self.terminated = self.killed = self.left_after_stop = {}

        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": HOSTNAME,
            "mydomain": "herald.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "mynetworks": mynetworks,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "smtpd_banner": "$myhostname ESMTP Postfix",
            "biff": "no",
            # quick answers and quick retries
            "smtpd_error_sleep_time": "0",
            "in_flow_delay": "0",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
        }
        if discard:
            for t in ("default_transport", "relay_transport",
                      "local_transport", "virtual_transport"):
                settings[t] = "discard"
            settings["relayhost"] = ""
        else:
            settings["relayhost"] = _nexthop(relayhost)
            settings["default_transport"] = "smtp"
            settings["relay_transport"] = "smtp"
            settings["local_transport"] = "error:no local delivery here"
        for name, v in (("smtpd_relay_restrictions", relay_restrictions),
                        ("smtpd_client_restrictions", client_restrictions),
                        ("smtpd_sender_restrictions", sender_restrictions),
                        ("smtpd_recipient_restrictions", recipient_restrictions)):
            if v is not None:
                settings[name] = _value(name, v)
        if sasl:
            settings.update({"smtpd_sasl_auth_enable": "yes",
                             "smtpd_sasl_type": "dovecot",
                             "smtpd_sasl_path": "private/auth"})
        settings.update(main or {})
        self.settings = settings
        main_cf = os.path.join(self.conf_dir, "main.cf")
        with open(main_cf, "w") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        _age(main_cf)

        try:
            self._start(port)
            if sasl:
                self._start_dovecot(users or {"joy": "secret"})
            self._await_greeting(sasl)
        except BaseException:
            self.stop(verify=False)
            raise
        self.start_seconds = time.monotonic() - started

    # ---- start ---------------------------------------------------------------
    def _postfix(self, *args):
        return subprocess.run([POSTFIX, "-c", self.conf_dir, *args],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)

    def _start(self, port):
        """postfix start on port, or on free ports until one binds."""
        for attempt in range(5):
            self.port = port or free_port()
            with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
                f.write(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
            _age(f.name)
            self.port_attempts = attempt + 1
            mark = self._log_size()
            if self.quick:
                # skips check-fatal/check-warn (post-install, postsuper,
                # find over the installation): 1 to 4 s of the start
                open(os.path.join(self.queue_dir, "quick-start"), "w").close()
            r = self._postfix("start")
            if r.returncode == 0:
                self.master_pid = self._read_master_pid()
                return
            new = self.log()[mark:][-4000:]
            if port is None and "Address already in use" in new:
                continue                      # lost a bind race: next port
            raise StartError(f"postfix start failed ({r.returncode}): "
                             f"{r.stdout}{r.stderr}\n{new}")
        raise StartError("postfix start: no free port in 5 attempts\n" + self.log_tail())

    def _read_master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _start_dovecot(self, users):
        d = os.path.join(self.dir, "dovecot")
        os.makedirs(d, exist_ok=True)
        self.dovecot_dir = d
        self.dovecot_log = os.path.join(d, "dovecot.log")
        self.dovecot_conf = os.path.join(d, "dovecot.conf")
        passwd = os.path.join(d, "passwd")
        with open(passwd, "w") as f:
            for u, pw in users.items():
                f.write(f"{u}:{{PLAIN}}{pw}\n")
        sock = os.path.join(self.queue_dir, "private", "auth")
        if len(sock) >= 108 or len(os.path.join(d, "run", "auth-userdb")) >= 108:
            raise StartError(f"{self.dir}: too long for a unix socket path")
        conf = f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.dovecot_log}
info_log_path = {self.dovecot_log}
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {sock} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  chroot =
}}
"""
        with open(self.dovecot_conf, "w") as f:
            f.write(conf)
        with open(os.path.join(d, "start.err"), "w+") as err:
            r = subprocess.run([DOVECOT, "-c", self.dovecot_conf],
                               stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            err.seek(0)
            if r.returncode != 0:
                raise StartError(f"dovecot did not start: {err.read()}{self.sasl_log()[-4000:]}")
        self.dovecot = os.path.join(d, "run", "master.pid")

    def _await_greeting(self, sasl):
        """Wait until smtpd answers a connection: a 220 greeting (then, with
        sasl, EHLO must offer AUTH) or a reject that smtpd_delay_reject = no
        gives at CONNECT.  A connection that is accepted and never greeted
        is an smtpd that died on its configuration."""
        deadline = time.monotonic() + self.timeout
        last = None
        fatal = re.compile(r"postfix/smtpd\[\d+\]: fatal: .*")
        while time.monotonic() < deadline:
            m = fatal.search(self.log())
            if m:
                raise StartError(f"smtpd on port {self.port} refuses its "
                                 f"configuration: {m.group(0)}\n{self.log_tail()}")
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=1) as c:
                    code, text = c.ehlo("probe.herald.test")
                    if code != 250 or not sasl or c.has_extn("auth"):
                        return
                    last = f"EHLO offers no AUTH: {text!r}"
            except smtplib.SMTPConnectError:
                return                  # smtpd runs, and rejects at CONNECT
            except (OSError, smtplib.SMTPException) as e:
                last = repr(e)
            time.sleep(0.1)
        raise StartError(f"postfix on port {self.port} did not greet within "
                         f"{self.timeout} s ({last})\n{self.log_tail()}"
                         f"{self.sasl_log()}")

    # ---- what tests use ------------------------------------------------------
    def url(self, scheme="smtp"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def _log_size(self):
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log(self):
        """Postfix's own log so far (postlogd writes it a moment after the
        event)."""
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=40):
        """The last lines of log(), for failure messages."""
        return "\n".join(self.log().splitlines()[-lines:]) + "\n"

    def sasl_log(self):
        if not self.sasl:
            return ""
        try:
            with open(self.dovecot_log, errors="replace") as f:
                return f.read()
        except (OSError, AttributeError):
            return ""

    DELIVERY = re.compile(r"postfix/(?P<service>[a-z]+)\[\d+\]: (?P<id>[0-9A-F]+): "
                          r"to=<(?P<to>[^>]*)>,(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]+),"
                          r".* status=(?P<status>\w+) \((?P<text>.*)\)$")

    def deliveries(self, status=None):
        """One dict per delivery attempt in the log: service, id, to, relay,
        status (sent, deferred, bounced), text."""
        out = []
        for line in self.log().splitlines():
            m = self.DELIVERY.search(line)
            if m and (status is None or m["status"] == status):
                out.append(m.groupdict())
        return out

    def wait_deliveries(self, n, status="sent", timeout=10):
        """The first n deliveries with that status, waiting for them;
        AssertionError with the log if they do not come."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.deliveries(status)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} deliveries with status={status} "
                                     f"in {timeout} s, want {n}\n{self.log_tail()}")
            time.sleep(0.05)

    def queued(self):
        """Names of the queue files still waiting (incoming, active,
        deferred, hold)."""
        names = []
        for q in ("incoming", "active", "deferred", "hold"):
            for dirpath, _, files in os.walk(os.path.join(self.queue_dir, q)):
                names += files
        return names

    def processes(self):
        """{pid: cmdline} of this instance's live processes (Postfix and,
        with sasl, Dovecot)."""
        return instance_processes(self.dir, self.conf_dir)

    # ---- stop ----------------------------------------------------------------
    def stop(self, verify=True):
        """Stop Postfix (and Dovecot), wait until no process of the instance
        is left, SIGKILL leftovers by pid as a last resort.  With verify, a
        leftover process or a still bound port is an error."""
        if self.stopped:
            return
        self.stopped = True
        started = time.monotonic()
        before = self.processes()
        if self.master_pid or os.path.exists(os.path.join(self.queue_dir, "pid", "master.pid")):
            self._postfix("stop")
        if self.sasl:
            # `dovecot stop` is a SIGTERM to the master and 2-3 s of waiting
            # in steps; and the master waits a second for its log process,
            # which waits for the master.  So: SIGTERM to each of the
            # instance's Dovecot processes, by pid, at once (the log says
            # "Shutting down logging ... with 1 clients").
            for pid, cmd in self.processes().items():
                if "dovecot" in cmd.split()[0]:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        # A straggler gets a SIGTERM of its own after 0.1 s, SIGKILL after 5 s.
        nudge, deadline = time.monotonic() + 0.1, time.monotonic() + 5
        left = self.processes()
        self.terminated = {}
        while left and time.monotonic() < deadline:
            time.sleep(0.02)
            left = self.processes()
            if left and nudge and time.monotonic() > nudge:
                nudge = None
                self.terminated = left
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        killed = {}
        if left:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed = left
            time.sleep(0.2)
            left = self.processes()
        self.stop_seconds = time.monotonic() - started
        self.left_after_stop = left
        self.killed = killed
        self.seen_before_stop = before
        if verify:
            problems = []
            if killed:
                problems.append(f"had to SIGKILL {killed}")
            if left:
                problems.append(f"still running: {left}")
            if self.port and not port_free(self.port):
                problems.append(f"port {self.port} still bound")
            if problems:
                raise AssertionError("postfix stop: " + "; ".join(problems)
                                     + "\n" + self.log_tail())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(verify=exc[0] is None)


# ---- self-test --------------------------------------------------------------

def reply(c, cmd, arg=""):
    """Send one SMTP command; its reply as one string 'CODE TEXT'."""
    c.putcmd(cmd, arg)
    code, text = c.getreply()
    return f"{code} {text.decode(errors='replace')}"


def dialogue(port, rcpt="ana@example.com", sender="joy@example.org",
             login=None):
    """EHLO, [AUTH], MAIL, RCPT, QUIT on 127.0.0.1:port: {"mail": reply,
    "rcpt": reply} (and "auth")."""
    out = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo("client.herald.test")
        if login:
            code, text = c.login(*login)
            out["auth"] = f"{code} {text.decode()}"
        out["mail"] = reply(c, "mail", f"FROM:<{sender}>")
        out["rcpt"] = reply(c, "rcpt", f"TO:<{rcpt}>")
    return out


def _selftest():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import Server

    tests = []

    def test(desc):
        def register(f):
            tests.append((f, desc))
            return f
        return register

    timings = []

    def instance(t, **kw):
        p = Postfix(os.path.join(t, f"postfix{len(timings) + 1}"), **kw)
        timings.append(p)
        print(f"# postfix on port {p.port}: started in {p.start_seconds:.2f} s",
              flush=True)
        return p

    def check(cond, what):
        if not cond:
            raise AssertionError(what)

    def show(label, text):
        print(f"# {label}: {text}", flush=True)

    @test("mynetworks 127.0.0.0/8 + relayhost: 3 messages reach the capture server with their RCPT")
    def relay_three(t):
        cap = Server(os.path.join(t, "capture"))
        try:
            p = instance(t, relayhost=f"127.0.0.1:{cap.port}", mynetworks="127.0.0.0/8",
                         relay_restrictions="smtpd_relay_restrictions = "
                         "permit_mynetworks, reject_unauth_destination")
            with p:
                rcpts = [f"ana{i}@example.com" for i in range(1, 4)]
                sent = time.monotonic()
                with smtplib.SMTP("127.0.0.1", p.port, timeout=10) as c:
                    for r in rcpts:
                        msg = (f"From: joy@example.org\r\nTo: {r}\r\n"
                               f"Subject: to {r}\r\n\r\nHello {r}\r\n").encode()
                        check(c.sendmail("joy@example.org", [r], msg) == {},
                              f"refused {r}")
                deadline = time.monotonic() + 10
                while len(cap.envelopes()) < 3 and time.monotonic() < deadline:
                    time.sleep(0.02)
                show("relayed in", f"{time.monotonic() - sent:.2f} s")
                time.sleep(0.5)      # nothing more should come
                envs = cap.envelopes()
                check(len(envs) == 3, f"capture stored {len(envs)}, want 3\n{p.log()}")
                got = sorted(e["rcpt_tos"][0] for e in envs)
                check(got == rcpts, f"RCPTs {got}, want {rcpts}")
                check(all(e["mail_from"] == "joy@example.org" for e in envs),
                      "MAIL FROM changed")
                check(all(len(e["rcpt_tos"]) == 1 for e in envs), "one RCPT each")
                d = p.wait_deliveries(3)
                check(sorted(x["to"] for x in d) == rcpts, f"log deliveries {d}")
                check(not p.queued(), f"left in the queue: {p.queued()}")
        finally:
            cap.stop()

    @test("loopback not in mynetworks + reject_unauth_destination: 554 5.7.1 Relay access denied, nothing stored")
    def relay_denied(t):
        cap = Server(os.path.join(t, "capture"))
        try:
            p = instance(t, relayhost=f"127.0.0.1:{cap.port}", mynetworks="192.0.2.1/32",
                         relay_restrictions="smtpd_relay_restrictions = reject_unauth_destination",
                         main={"mydestination": ""})
            with p:
                r = dialogue(p.port)
                show("MAIL", r["mail"])
                show("RCPT", r["rcpt"])
                check(r["mail"].startswith("250 "), r["mail"])
                check(r["rcpt"] == "554 5.7.1 <ana@example.com>: Relay access denied",
                      r["rcpt"])
                try:
                    with smtplib.SMTP("127.0.0.1", p.port, timeout=10) as c:
                        c.sendmail("joy@example.org", ["ana@example.com"],
                                   b"Subject: x\r\n\r\nx\r\n")
                    raise AssertionError("sendmail was accepted")
                except smtplib.SMTPRecipientsRefused as e:
                    show("smtplib", repr(e.recipients))
                time.sleep(0.5)
                check(cap.envelopes() == [], "capture stored something")
                check(not p.queued(), f"queued: {p.queued()}")
                check(p.deliveries() == [], "log shows a delivery")
                check("NOQUEUE: reject: RCPT" in p.log(), "no reject in the log")
        finally:
            cap.stop()

    @test("empty mynetworks also leaves loopback untrusted")
    def mynetworks_empty(t):
        p = instance(t, discard=True, mynetworks="",
                     relay_restrictions="permit_mynetworks, reject_unauth_destination")
        with p:
            r = dialogue(p.port)
            show("RCPT", r["rcpt"])
            check(r["rcpt"] == "554 5.7.1 <ana@example.com>: Relay access denied", r["rcpt"])

    @test("smtpd_client_restrictions = reject: RCPT gets 554 5.7.1 Client host rejected")
    def client_reject(t):
        p = instance(t, discard=True, client_restrictions="smtpd_client_restrictions = reject")
        with p:
            r = dialogue(p.port)
            show("MAIL", r["mail"])
            show("RCPT", r["rcpt"])
            check(r["mail"].startswith("250 "), "delayed to RCPT: " + r["mail"])
            check(r["rcpt"] == "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
                  r["rcpt"])
        q = instance(t, discard=True, client_restrictions="reject",
                     main={"smtpd_delay_reject": "no"})
        with q:
            try:
                smtplib.SMTP("127.0.0.1", q.port, timeout=10).close()
                raise AssertionError("greeted with 220")
            except smtplib.SMTPConnectError as e:
                got = f"{e.smtp_code} {e.smtp_error.decode()}"
            show("smtpd_delay_reject = no, greeting", got)
            check(got == "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
                  got)

    @test("recipient_restrictions: reject_unauth_destination and check_recipient_access")
    def recipient_reject(t):
        p = instance(t, discard=True, mynetworks="192.0.2.1/32",
                     relay_restrictions="permit",
                     recipient_restrictions="check_recipient_access "
                     "static:{550 5.1.1 No such user}, reject")
        with p:
            r = dialogue(p.port)
            show("RCPT", r["rcpt"])
            check(r["rcpt"] == "550 5.1.1 <ana@example.com>: Recipient address rejected: No such user",
                  r["rcpt"])

    @test("discard mode: 3 accepted messages are counted from the log")
    def discard_three(t):
        p = instance(t, discard=True)
        with p:
            with smtplib.SMTP("127.0.0.1", p.port, timeout=10) as c:
                for i in range(3):
                    c.sendmail("joy@example.org", [f"bo{i}@example.net"],
                               b"Subject: x\r\n\r\nx\r\n")
            d = p.wait_deliveries(3)
            show("discard", d[0]["text"])
            check(sorted(x["to"] for x in d) == [f"bo{i}@example.net" for i in range(3)],
                  repr(d))
            check(all(x["service"] == "discard" for x in d), repr(d))

    sasl_why = sasl_available()

    @test("SASL (private Dovecot): the replies to RCPT without AUTH, and AUTH then relays")
    def sasl_replies(t):
        if sasl_why:
            return f"SKIP {sasl_why}"
        cap = Server(os.path.join(t, "capture"))
        try:
            cases = [
                ("permit_sasl_authenticated, reject", {}),
                ("permit_sasl_authenticated, reject_unauth_destination", {}),
                (AUTH_REQUIRED, {}),
                (AUTH_REQUIRED, {"smtpd_delay_reject": "no"}),
                ("permit_sasl_authenticated, reject",
                 {"smtpd_sender_login_maps": "static:joy",
                  "smtpd_sender_restrictions": "reject_sender_login_mismatch"}),
            ]
            want = [
                ("250 2.1.0 Ok", "554 5.7.1 <ana@example.com>: Recipient address rejected: Access denied"),
                ("250 2.1.0 Ok", "554 5.7.1 <ana@example.com>: Relay access denied"),
                ("250 2.1.0 Ok", "530 5.7.0 <localhost[127.0.0.1]>: Client host rejected: Authentication required"),
                (None, None),   # MAIL stage, below
                ("250 2.1.0 Ok", "553 5.7.1 <joy@example.org>: Sender address rejected: not logged in"),
            ]
            for (relay, main), (want_mail, want_rcpt) in zip(cases, want):
                if main.get("smtpd_delay_reject") == "no":
                    # check_client_access in smtpd_sender_restrictions
                    # answers MAIL when rejects are not delayed
                    main = dict(main, smtpd_sender_restrictions=AUTH_REQUIRED)
                    relay = "permit_sasl_authenticated, reject"
                    want_mail = ("530 5.7.0 <localhost[127.0.0.1]>: Client host "
                                 "rejected: Authentication required")
                p = instance(t, relayhost=cap.port, mynetworks="192.0.2.1/32",
                             relay_restrictions=relay, sasl=True,
                             users={"joy": "secret"}, main=main)
                with p:
                    label = relay + "".join(f"; {k} = {v}" for k, v in main.items())
                    show("config", label)
                    r = dialogue(p.port)
                    show("  no AUTH, MAIL", r["mail"])
                    show("  no AUTH, RCPT", r["rcpt"])
                    check(r["mail"] == want_mail, f"MAIL: {r['mail']!r}, want {want_mail!r}")
                    if want_rcpt:
                        check(r["rcpt"] == want_rcpt, f"RCPT: {r['rcpt']!r}, want {want_rcpt!r}")
                    a = dialogue(p.port, login=("joy", "secret"))
                    show("  AUTH joy, RCPT", f"{a['auth']} / {a['mail']} / {a['rcpt']}")
                    check(a["auth"] == "235 2.7.0 Authentication successful", a["auth"])
                    check(a["rcpt"] == "250 2.1.5 Ok", a["rcpt"])
            # the last instance's config: authenticated mail is relayed
            n = len(cap.envelopes())
            p = instance(t, relayhost=cap.port, mynetworks="192.0.2.1/32",
                         relay_restrictions=AUTH_REQUIRED, sasl=True)
            with p:
                with smtplib.SMTP("127.0.0.1", p.port, timeout=10) as c:
                    try:
                        c.login("joy", "wrong")
                        raise AssertionError("wrong password accepted")
                    except smtplib.SMTPAuthenticationError as e:
                        show("AUTH joy wrong", f"{e.smtp_code} {e.smtp_error.decode()}")
                    c.login("joy", "secret")
                    c.sendmail("joy@example.org", ["ana@example.com"],
                               b"Subject: authed\r\n\r\nx\r\n")
                p.wait_deliveries(1)
                envs = cap.envelopes()[n:]
                check([e["rcpt_tos"] for e in envs] == [["ana@example.com"]], repr(envs))
        finally:
            cap.stop()

    @test("a bind race (port taken between choosing and listening) is retried on another port")
    def bind_race(t):
        global free_port
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real, calls = free_port, []

        def racy():
            calls.append(1)
            return busy if len(calls) == 1 else real()
        free_port = racy
        try:
            p = instance(t, discard=True)
        finally:
            free_port = real
            taken.close()
        with p:
            show("first port", f"{busy} (taken), then {p.port}")
            check(p.port != busy and len(calls) == 2, f"port {p.port}, {len(calls)} tries")
            check("Address already in use" in p.log(), "no bind failure in the log")

    @test("a restriction list Postfix refuses: StartError with smtpd's fatal line, quickly, nothing left")
    def bad_restrictions(t):
        d = os.path.join(t, "bad")
        started = time.monotonic()
        try:
            Postfix(d, discard=True, relay_restrictions="permit_mynetworks")
            raise AssertionError("started")
        except StartError as e:
            first = str(e).splitlines()[0]
        took = time.monotonic() - started
        show("StartError", first)
        show("failed after", f"{took:.2f} s")
        check("fatal: in parameter smtpd_relay_restrictions" in first, first)
        check(took < 5, f"took {took:.1f} s")
        check(instance_processes(d, os.path.join(d, "conf")) == {}, "processes left")

    @test("stop leaves no process of the instance (cwd, MAIL_CONFIG or cmdline) and frees the port")
    def stop_clean(t):
        p = instance(t, discard=True, sasl=not sasl_why)
        with smtplib.SMTP("127.0.0.1", p.port, timeout=10) as c:
            c.sendmail("joy@example.org", ["x@example.net"], b"Subject: x\r\n\r\nx\r\n")
        p.wait_deliveries(1)
        before = p.processes()
        show("running before stop", f"{len(before)} processes: " + ", ".join(
            sorted({c.split()[0] for c in before.values()})))
        check(p.master_pid in before, f"master {p.master_pid} not found among {before}")
        check(any("dovecot" in c for c in before.values()) == (not sasl_why),
              "dovecot processes")
        p.stop()
        check(p.killed == {}, f"needed SIGKILL: {p.killed}")
        wide = processes_naming(p.dir, p.conf_dir, p.queue_dir)
        check(wide == {}, f"processes naming the instance left: {wide}")
        check(_proc_state(p.master_pid) in (None, "Z"), "master still there")
        check(port_free(p.port), "port still bound")
        try:
            socket.create_connection(("127.0.0.1", p.port), 1).close()
            raise AssertionError("port still accepts connections")
        except ConnectionRefusedError:
            pass
        show("stopped in", f"{p.stop_seconds:.2f} s")

    avail = available()
    print(f"1..{len(tests)}", flush=True)
    if avail:
        for n, (_, desc) in enumerate(tests, 1):
            print(f"ok {n} - {desc} # SKIP {avail}")
        return 0
    failed = 0
    top = tempfile.mkdtemp(prefix="herald-postfix-")
    for n, (f, desc) in enumerate(tests, 1):
        d = os.path.join(top, f.__name__)
        os.makedirs(d)
        try:
            skip = f(d)
            if skip:
                print(f"ok {n} - {desc} # {skip}", flush=True)
            else:
                print(f"ok {n} - {desc}", flush=True)
        except Exception:
            import traceback
            failed += 1
            print(f"not ok {n} - {desc}")
            for line in traceback.format_exc().splitlines():
                print("# " + line)
            sys.stdout.flush()
        finally:
            for p in timings:
                if not p.stopped:
                    p.stop(verify=False)
    starts = [p.start_seconds for p in timings]
    if not starts:
        return 1
    stops = [p.stop_seconds for p in timings if p.stop_seconds is not None]
    print(f"# {len(timings)} instances: start {min(starts):.2f}..{max(starts):.2f} s "
          f"(mean {sum(starts) / len(starts):.2f}), stop {min(stops):.2f}.."
          f"{max(stops):.2f} s (mean {sum(stops) / len(stops):.2f})", flush=True)
    if os.environ.get("KEEP") == "1" or failed:
        print(f"# kept {top}", flush=True)
    else:
        shutil.rmtree(top, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_selftest())
