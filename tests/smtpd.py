#!/usr/bin/python3
"""A real SMTP server (aiosmtpd) that captures mail into a maildir, for
herald's integration tests and `make demo`.

    smtpd.py --maildir DIR [--host 127.0.0.1] [--port 0] [--port-file F]
             [--reject ADDR]... [--defer ADDR]... [--fault ADDR=SPEC]...
             [--delay-ms N]
             [--tls-cert C --tls-key K] [--require-starttls] [--implicit-tls]
             [--auth USER:PASS] [--max-seconds 300]
    smtpd.py --gen-cert DIR      # writes DIR/cert.pem and DIR/key.pem, exits

Scripted faults, per recipient address (case-insensitive); SPEC is one of
  421[xN]        answer RCPT with "421 4.3.2 Service shutting down" and
                 close the connection
  451[xN]        answer RCPT with "451 4.2.0 ..."
  550[xN]        answer RCPT with "550 5.1.1 ..."
  drop-data[xN]  take the DATA content, then close the connection without
                 replying and without storing the message
With xN the fault hits the first N attempts for that address (counted
across connections) and later ones are accepted; without it, every one.
--delay-ms N waits N ms between storing a message and answering its
end-of-DATA (a client killed in that window leaves a stored message it
never saw accepted).  --reject ADDR is --fault ADDR=550, --defer ADDR is
--fault ADDR=451.

What it stores, for tests to read:
  DIR/new/<seq>.eml        the DATA bytes exactly as received (CRLF kept,
                           after dot-unstuffing), written via DIR/tmp + rename
  DIR/envelope/<seq>.json  {"seq", "mail_from", "rcpt_tos", "peer_port",
                           "conn", "conn_time", "time", "in_flight", "tls",
                           "auth"}; kept outside new/ so that mutt and
                           other maildir readers see only messages
  DIR/log.jsonl            one JSON line per SMTP transaction (MAIL .. DATA,
                           RSET, QUIT or disconnect): conn, conn_time,
                           peer_port, mail_from, rcpts [{"addr", "code",
                           "time" (when the RCPT came)}],
                           result, seq, end, time, tls, auth; end is "data",
                           "reset", "rset", "quit", "disconnect", "421" or
                           "drop-data"; every RCPT appears in exactly one
                           line, so attempts per address can be counted
`time` is time.time() when the line or file was written, `conn_time` when
the connection was accepted, `conn` counts connections from 1; `in_flight`
is how many other stored messages were still waiting out --delay-ms for
their reply when this one was stored (clients sending in parallel).
<seq> counts from 1 and continues after the highest .eml already in DIR/new.
Nothing is printed on stdout; diagnostics go to stderr.  The server exits
on SIGTERM/SIGINT and by itself after --max-seconds.
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import re
import ssl
import subprocess
import sys

from serverlife import serve_until_stopped, write_atomically
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult

CONN_IDS = itertools.count(1)


def gen_cert(directory):
    """Self-signed certificate for CN=localhost, SAN IP:127.0.0.1 and
    DNS:localhost, valid two days. Returns (cert_path, key_path)."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", key, "-out", cert],
        check=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return cert, key



def next_seq(maildir):
    """1 + the highest <seq>.eml already in maildir/new."""
    seqs = [int(n[:-4]) for n in os.listdir(os.path.join(maildir, "new"))
            if n.endswith(".eml") and n[:-4].isdigit()]
    return max(seqs, default=0) + 1


class Fault:
    """One scripted fault: kind ("421", "451", "550", "drop-data") and how
    many attempts it still hits (None: all)."""

    SPEC = re.compile(r"(421|451|550|drop-data)(?:x([0-9]+))?")

    def __init__(self, kind, times):
        self.kind, self.left = kind, times

    @classmethod
    def parse(cls, arg):
        """ADDR=SPEC -> (addr, Fault); ValueError when malformed."""
        addr, sep, spec = arg.partition("=")
        m = cls.SPEC.fullmatch(spec.strip())
        if not sep or "@" not in addr or not m:
            raise ValueError(f"--fault {arg!r}: expected ADDR=SPEC, SPEC one "
                             "of 421, 451, 550, drop-data, each optionally "
                             "followed by xN")
        return addr.strip(), cls(m.group(1),
                                 int(m.group(2)) if m.group(2) else None)

    def hit(self):
        if self.left is None:
            return True
        if self.left > 0:
            self.left -= 1
            return True
        return False


class CaptureSMTP(SMTP):
    """aiosmtpd's SMTP with a connection id and the open transaction, so a
    transaction cut short by QUIT or a dropped connection is logged too."""

    def __init__(self, handler, **kwargs):
        super().__init__(handler, **kwargs)
        self.conn_id = next(CONN_IDS)
        self.txn = None
        self.peer_port = None
        self.conn_time = time.time()

    def connection_made(self, transport):
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if peer and self.peer_port is None:
            self.peer_port = peer[1]

    def connection_lost(self, error):
        self.event_handler.finish(self, "disconnect")
        super().connection_lost(error)


class Capture:
    """aiosmtpd handler: policy for RCPT, storage for DATA, transaction log."""

    def __init__(self, maildir, reject=(), defer=(), faults=(), delay_ms=0):
        self.maildir = maildir
        self.faults = {}           # address -> Fault
        for a in reject:
            self.faults[a.lower()] = Fault("550", None)
        for a in defer:
            self.faults[a.lower()] = Fault("451", None)
        for a, f in faults:
            self.faults[a.lower()] = f
        self.delay = delay_ms / 1000.0
        self.in_flight = 0         # stored messages whose reply is delayed
        for sub in ("tmp", "new", "cur", "envelope"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        self.seq = next_seq(maildir)
        self.log = open(os.path.join(maildir, "log.jsonl"), "a",
                        encoding="utf-8")

    # -- connection facts ---------------------------------------------------
    @staticmethod
    def tls(server):
        t = server.transport
        return bool(t is not None and t.get_extra_info("ssl_object"))

    @staticmethod
    def auth(server):
        data = server.session.auth_data if server.session else None
        login = getattr(data, "login", None)
        return login.decode("utf-8", "replace") if login else None

    # -- transaction log ----------------------------------------------------
    def finish(self, server, end):
        """Write the open transaction of this connection, if any."""
        txn, server.txn = server.txn, None
        if txn is None:
            return
        if txn["result"] is None and txn["rcpts"]:
            txn["result"] = txn["rcpts"][-1]["code"]
        txn["end"] = end
        txn["time"] = time.time()
        self.log.write(json.dumps(txn) + "\n")
        self.log.flush()

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.finish(server, "reset")
        server.txn = {"conn": server.conn_id, "conn_time": server.conn_time,
                      "peer_port": server.peer_port,
                      "mail_from": address, "rcpts": [], "result": None,
                      "seq": None, "tls": self.tls(server),
                      "auth": self.auth(server)}
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    def fault(self, address, kinds):
        """The fault to play for this attempt at address, if any (and
        counts the attempt)."""
        f = self.faults.get(address.lower())
        if f is None or f.kind not in kinds:
            return None
        return f.kind if f.hit() else None

    async def handle_RCPT(self, server, session, envelope, address, options):
        kind = self.fault(address, ("421", "451", "550"))
        if kind == "550":
            code, reply = 550, (f"550 5.1.1 <{address}>: Recipient address "
                                "rejected: User unknown")
        elif kind == "451":
            code, reply = 451, (f"451 4.2.0 <{address}>: Recipient address "
                                "temporarily rejected: try again later")
        elif kind == "421":
            code, reply = 421, "421 4.3.2 Service shutting down"
        else:
            code, reply = 250, "250 2.1.5 Ok"
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        if server.txn is not None:
            server.txn["rcpts"].append({"addr": address, "code": code,
                                        "time": time.time()})
        if kind == "421":
            # The reply is written before this task next waits, and
            # close() flushes it: the client reads 421, then EOF.
            self.finish(server, "421")
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_DATA(self, server, session, envelope):
        if any(self.fault(a, ("drop-data",)) for a in envelope.rcpt_tos):
            # No reply, nothing stored: the client sees the connection
            # die after sending its message.
            if server.txn is not None:
                server.txn["result"] = 0
            self.finish(server, "drop-data")
            server.transport.abort()
            await asyncio.sleep(3600)  # cancelled by connection_lost
        seq, self.seq = self.seq, self.seq + 1
        raw = envelope.original_content  # bytes after dot-unstuffing, CRLF
        meta = {"seq": seq, "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "peer_port": server.peer_port, "conn": server.conn_id,
                "conn_time": server.conn_time, "time": time.time(),
                "in_flight": self.in_flight,
                "tls": self.tls(server), "auth": self.auth(server)}
        write_atomically(
            os.path.join(self.maildir, "envelope", f"{seq}.json"),
            json.dumps(meta, indent=1).encode() + b"\n")
        write_atomically(os.path.join(self.maildir, "new", f"{seq}.eml"), raw,
                         os.path.join(self.maildir, "tmp", f"{seq}.eml"))
        if server.txn is not None:
            server.txn["result"] = 250
            server.txn["seq"] = seq
        self.finish(server, "data")
        if self.delay:
            self.in_flight += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_flight -= 1
        return f"250 2.0.0 Ok: queued as {seq}"

    async def handle_RSET(self, server, session, envelope):
        self.finish(server, "rset")
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server, session, envelope):
        self.finish(server, "quit")
        return "221 2.0.0 Bye"


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (getattr(auth_data, "login", None) == user.encode()
              and getattr(auth_data, "password", None) == password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)
    return authenticator


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gen-cert", metavar="DIR",
                   help="write DIR/cert.pem and DIR/key.pem and exit")
    p.add_argument("--maildir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--reject", action="append", default=[], metavar="ADDR")
    p.add_argument("--defer", action="append", default=[], metavar="ADDR")
    p.add_argument("--fault", action="append", default=[], metavar="ADDR=SPEC")
    p.add_argument("--delay-ms", type=float, default=0, metavar="N")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--size", type=int, default=33554432, metavar="BYTES",
                   help="the EHLO SIZE limit (aiosmtpd's data_size_limit)")
    a = p.parse_args(argv)
    if a.gen_cert:
        return a
    if not a.maildir:
        p.error("--maildir is required")
    try:
        a.faults = [Fault.parse(f) for f in a.fault]
    except ValueError as e:
        p.error(str(e))
    if a.delay_ms < 0:
        p.error("--delay-ms must not be negative")
    if a.host not in ("127.0.0.1", "::1"):
        p.error("only loopback addresses are allowed")
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if (a.require_starttls or a.implicit_tls) and not a.tls_cert:
        p.error("--require-starttls and --implicit-tls need --tls-cert/--tls-key")
    if a.require_starttls and a.implicit_tls:
        p.error("--require-starttls and --implicit-tls exclude each other")
    if a.auth and (":" not in a.auth or not a.tls_cert):
        p.error("--auth takes USER:PASS and needs TLS (--tls-cert/--tls-key)")
    return a


async def serve(a):
    loop = asyncio.get_running_loop()
    handler = Capture(a.maildir, a.reject, a.defer, a.faults, a.delay_ms)
    tls = None
    if a.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(a.tls_cert, a.tls_key)
    smtp_kwargs = {"hostname": "localhost", "decode_data": False,
                   "timeout": 60, "data_size_limit": a.size}
    if tls and not a.implicit_tls:
        smtp_kwargs.update(tls_context=tls,
                           require_starttls=a.require_starttls)
    if a.auth:
        user, password = a.auth.split(":", 1)
        smtp_kwargs.update(authenticator=make_authenticator(user, password),
                           auth_required=True,
                           # implicit TLS: the whole session is encrypted,
                           # aiosmtpd only knows about STARTTLS
                           auth_require_tls=not a.implicit_tls)

    server = await loop.create_server(
        lambda: CaptureSMTP(handler, **smtp_kwargs), host=a.host, port=a.port,
        ssl=tls if a.implicit_tls else None)
    await serve_until_stopped("smtpd", server, a.host, a.port_file, a.max_seconds)
    handler.log.close()


def main(argv):
    a = parse_args(argv)
    if a.gen_cert:
        cert, key = gen_cert(a.gen_cert)
        print(f"smtpd: wrote {cert} and {key}", file=sys.stderr)
        return 0
    # aiosmtpd warns about deprecated login_data and about AUTH without
    # STARTTLS (which is what implicit TLS looks like to it): not useful here.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="smtpd: %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="aiosmtpd")
    asyncio.run(serve(a))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
