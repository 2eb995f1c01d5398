#!/usr/bin/python3
"""A throwaway Dovecot (IMAP, IMAPS, POP3, POP3S, LMTP) for herald's bounce
tests: its own config, passwd-file, maildirs and TLS certificate in a temp
directory, free loopback ports, no system service touched.

    d = Dovecot(directory, users={"bounces": "pw"})
    d.port["imap"], d.port["imaps"], d.port["pop3"], d.port["pop3s"], d.port["lmtp"]
    d.deliver("bounces", raw_bytes)       # through LMTP, as an MTA would
    d.maildir("bounces")                  # the user's maildir path
    d.stop()

As root the mail is owned by `nobody` (Dovecot refuses uid 0 for mail) and
the login processes run as the package's dovenull; as any other user
everything runs as that user.
"""

import os
import pwd
import grp
import shutil
import smtplib
import socket
import subprocess
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    return os.access(DOVECOT, os.X_OK)


class Dovecot:
    def __init__(self, directory, users, cert=None, key=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        root = os.geteuid() == 0
        if root:
            # Everything under the temp dir must be reachable by the mail
            # user and by dovenull; tempfile makes 0700 directories.
            p = directory
            while p not in ("/", "/tmp") and p:
                os.chmod(p, os.stat(p).st_mode | 0o711)
                p = os.path.dirname(p)
            mail_uid, mail_gid = 65534, 65534
            internal, login = "dovecot", "dovenull"
        else:
            mail_uid, mail_gid = os.getuid(), os.getgid()
            internal = login = pwd.getpwuid(os.getuid()).pw_name
        self.mail_uid, self.mail_gid = mail_uid, mail_gid
        self.port = {k: free_port() for k in ("imap", "imaps", "pop3", "pop3s", "lmtp")}
        mail = os.path.join(directory, "mail")
        os.makedirs(mail, exist_ok=True)
        with open(os.path.join(directory, "passwd"), "w") as f:
            for u, pw in users.items():
                home = os.path.join(mail, u)
                os.makedirs(home, exist_ok=True)
                f.write(f"{u}:{{PLAIN}}{pw}:{mail_uid}:{mail_gid}::{home}\n")
        if root:
            for dirpath, dirnames, _ in os.walk(mail):
                os.chown(dirpath, mail_uid, mail_gid)
        self.log = os.path.join(directory, "dovecot.log")
        ssl = "no"
        if cert:
            ssl = f"yes\nssl_cert = <{cert}\nssl_key = <{key}"
        d = directory
        conf = f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = {ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {min(mail_uid, 500) if not root else 1}
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port['imap']}
  }}
  inet_listener imaps {{
    port = {self.port['imaps'] if cert else 0}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {self.port['pop3']}
  }}
  inet_listener pop3s {{
    port = {self.port['pop3s'] if cert else 0}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port['lmtp']}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service anvil {{
  chroot =
}}
pop3_uidl_format = %08Xu%08Xv
"""
        self.conf = os.path.join(directory, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        # Not a pipe: the daemon keeps its stdout open, and a pipe would
        # never see EOF.
        with open(os.path.join(directory, "start.err"), "w+") as err:
            r = subprocess.run([DOVECOT, "-c", self.conf], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err)
            err.seek(0)
            if r.returncode != 0:
                raise RuntimeError(f"dovecot did not start: {err.read()}{self.tail()}")
        deadline = time.monotonic() + 10
        for name in ("imap", "pop3", "lmtp"):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port[name]), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"dovecot {name} not listening: {self.tail()}")
                    time.sleep(0.05)

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def maildir(self, user):
        return os.path.join(self.dir, "mail", user, "Maildir")

    def deliver(self, user, raw, rcpt=None, mail_from=""):
        """Deliver raw bytes to user (or to rcpt, e.g. a VERP address)
        through LMTP."""
        with smtplib.LMTP("127.0.0.1", self.port["lmtp"]) as l:
            l.sendmail(mail_from, [rcpt or user], raw)

    def stop(self):
        subprocess.run([DOVECOT, "-c", self.conf, "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pidfile = os.path.join(self.dir, "run", "master.pid")
        deadline = time.monotonic() + 5
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
