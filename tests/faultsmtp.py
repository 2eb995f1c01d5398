#!/usr/bin/python3
"""A fault-injection SMTP server for herald's tests: plain asyncio, so every
byte on the wire is under the test's control (aiosmtpd would answer some
commands itself).  Loopback only, bounded in time.

    faultsmtp.py --maildir DIR [--port-file F] [--host 127.0.0.1]
                 [--rule JSON]... [--split] [--tls-cert C --tls-key K]
                 [--auth USER:PASS] [--max-seconds 120]

A rule is a JSON object; the first rule that matches an event is played
(and counted):
  {"at": "greeting" | "ehlo" | "starttls" | "auth" | "mail" | "rcpt" |
         "data" | "content" | "dot",
   "rcpt": "ADDR",      only in a transaction for this recipient (rcpt,
                        data, content, dot; case-insensitive)
   "conn": N,           only on the Nth connection (counted from 1)
   "times": N,          only the first N times it matches (default: always)
   "do": "reply"        answer with "reply" instead of the normal reply: a
                        string, or a list of lines sent as one multi-line
                        reply ("550-...", "550-...", "550 ...")
       | "close"        close the connection without a word (at "content":
                        after "after_bytes" bytes of the message, default 1)
       | "stall"        say nothing and read nothing until the client goes
       | "bad-tls"      (at "starttls") answer 220, then send bytes that
                        are not TLS, so the handshake fails
       | "store-stall"  (at "dot") store the message, then say nothing:
                        a relay whose content filter outlasts the
                        client's timeout
       | "hold"         (at "dot") the message's reply is "reply" (a 2xx
                        stores it), held back and sent out of order:
                        after the reply to the next DATA (the next
                        envelope's 250, 250, 354 go first), RSET or
                        QUIT, or once the client has sent nothing for
                        0.3 s (it waits for that reply)
       | "extra"        the normal reply, then "reply" as one more
                        reply nobody asked for (a count that does not
                        add up), in the same write
       | "prefix"       "reply" first (a 1xx, say), then the normal reply,
                        in the same write (at "dot": the message stored)
   "raw": true,         send "reply" as written, each line plus CRLF
                        (default: code, "-" or " ", text), for lines
                        that are no SMTP reply ("250Xfoo")
   "reply": ...}
After a "reply" at "greeting" (a 421) or any 421, the connection is closed
as RFC 5321 says.  Rejected or stalled messages are not stored.

--pipelining advertises PIPELINING, --chunking advertises CHUNKING and
takes BDAT (the "data" rules answer BDAT in the DATA command's place;
"content" and "dot" apply to it as to DATA).

--split sends every reply in 2-byte pieces, 5 ms apart (TCP_NODELAY), so
the client sees replies split across packets.  --tls-cert/--tls-key
advertise STARTTLS and upgrade with that certificate.  --auth advertises
AUTH PLAIN LOGIN (also without TLS, as a careless server would) and
records whether credentials arrived before TLS.

Stored, in the layout of tests/smtpd.py (so harness.Server reads it):
  DIR/new/<seq>.eml, DIR/envelope/<seq>.json {"seq", "mail_from",
  "rcpt_tos", "conn", "tls", "auth"}, DIR/log.jsonl (one line per
  transaction: conn, mail_from, rcpts [{"addr", "code"}], result, seq, end,
  tls, auth), and DIR/events.jsonl: one line per command and reply
  {"conn", "tls", "cmd", "code", "fault", "behind"} (behind: bytes the
  client had sent after that line before its reply; the end-of-data dot
  is an event {"conn", "cmd": ".", "behind"}), with AUTH arguments replaced by
  "<redacted>", and {"conn", "auth": USER, "ok", "tls"} per AUTH attempt.
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import socket
import ssl
import sys

from serverlife import serve_until_stopped, write_atomically
import time

CONN_IDS = itertools.count(1)



class Rule:
    AT = {"greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data",
          "content", "dot"}
    DO = {"reply", "close", "stall", "bad-tls", "store-stall", "hold", "extra",
          "prefix"}

    def __init__(self, spec):
        d = json.loads(spec) if isinstance(spec, str) else dict(spec)
        self.at = d.pop("at")
        self.do = d.pop("do", "reply")
        self.reply = d.pop("reply", None)
        self.rcpt = d.pop("rcpt", None)
        self.conn = d.pop("conn", None)
        self.left = d.pop("times", None)
        self.after_bytes = int(d.pop("after_bytes", 1))
        self.raw = bool(d.pop("raw", False))
        if d or self.at not in self.AT or self.do not in self.DO:
            raise ValueError(f"bad rule {spec!r}")
        if self.do in ("reply", "hold", "extra", "prefix") and not self.reply:
            raise ValueError(f"rule {spec!r}: \"reply\" needs a reply")
        if self.do == "bad-tls" and self.at != "starttls":
            raise ValueError(f"rule {spec!r}: bad-tls is for at=starttls")
        if self.do == "hold" and self.at != "dot":
            raise ValueError(f"rule {spec!r}: hold is for at=dot")

    def matches(self, at, conn, rcpt):
        if self.at != at or (self.conn is not None and self.conn != conn):
            return False
        if self.rcpt is not None and (rcpt or "").lower() != self.rcpt.lower():
            return False
        return self.left is None or self.left > 0

    def take(self):
        if self.left is not None:
            self.left -= 1


class Closed(Exception):
    """The session ends here (client gone, or a fault closed it)."""


class Server:
    def __init__(self, a):
        self.a = a
        self.dir = a.maildir
        for sub in ("tmp", "new", "cur", "envelope"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.rules = [Rule(r) for r in a.rule]
        self.seq = 0
        self.log = open(os.path.join(self.dir, "log.jsonl"), "a")
        self.events = open(os.path.join(self.dir, "events.jsonl"), "a")
        self.tls = None
        if a.tls_cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(a.tls_cert, a.tls_key)
        self.auth = tuple(a.auth.split(":", 1)) if a.auth else None
        self.sessions = set()

    def rule(self, at, conn, rcpt=None):
        for r in self.rules:
            if r.matches(at, conn, rcpt):
                r.take()
                return r
        return None

    def event(self, **kw):
        kw["time"] = time.time()
        self.events.write(json.dumps(kw) + "\n")
        self.events.flush()

    async def handle(self, reader, writer):
        task = asyncio.current_task()
        self.sessions.add(task)
        s = Session(self, reader, writer)
        try:
            await s.run()
        except (Closed, ConnectionError, asyncio.IncompleteReadError,
                ssl.SSLError, asyncio.TimeoutError):
            pass
        finally:
            s.finish("disconnect")
            try:
                writer.transport.abort()
            except Exception:
                pass
            self.sessions.discard(task)


class Session:
    def __init__(self, server, reader, writer):
        self.srv = server
        self.r, self.w = reader, writer
        self.conn = next(CONN_IDS)
        self.is_tls = False
        self.auth_user = None
        self.txn = None
        self.held = []     # dot replies held back ("hold"), in order
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- wire ------------------------------------------------------------
    @staticmethod
    def encode(reply, raw=False):
        lines = reply if isinstance(reply, list) else [reply]
        out = []
        for i, line in enumerate(lines):
            if raw:
                out.append(line + "\r\n")
                continue
            code, text = line[:3], line[4:]
            sep = "-" if i < len(lines) - 1 else " "
            out.append(f"{code}{sep}{text}\r\n")
        code = lines[-1][:3]
        return "".join(out).encode(), int(code) if code.isdigit() else 0

    async def send(self, reply, raw=False, also=None, also_raw=False, also_first=False):
        """One reply; with `also`, a second reply in the same write (after
        it, or before it with also_first), so the client reads both at once."""
        data, code = self.encode(reply, raw)
        if also is not None:
            more, _ = self.encode(also, also_raw)
            data = more + data if also_first else data + more
        if self.srv.a.split:
            for i in range(0, len(data), 2):
                self.w.write(data[i:i + 2])
                await self.w.drain()
                await asyncio.sleep(0.005)
        else:
            self.w.write(data)
            await self.w.drain()
        return code

    async def flush_held(self):
        """The dot replies held back ("hold"), now, out of their turn."""
        held, self.held = self.held, []
        for reply in held:
            self.srv.event(conn=self.conn, at="dot", fault="held-sent", reply=reply)
            await self.send(reply)

    async def readline(self):
        if self.held:
            # The client may be waiting for the held reply (nothing of
            # the next message behind the dot): then it goes now.
            try:
                line = await asyncio.wait_for(self.r.readline(), 0.3)
            except asyncio.TimeoutError:
                await self.flush_held()
            else:
                if not line:
                    raise Closed()
                return line
        line = await asyncio.wait_for(self.r.readline(), 120)
        if not line:
            raise Closed()
        return line

    def behind(self):
        """Bytes the client sent after the line just read, already here:
        more than 0 means it did not wait for this line's reply
        (pipelining, RFC 2920)."""
        return len(getattr(self.r, "_buffer", b""))

    async def stall(self):
        """Reply nothing, read nothing, until the client gives up."""
        self.srv.event(conn=self.conn, tls=self.is_tls, fault="stall")
        try:
            while await asyncio.wait_for(self.r.read(4096), 300):
                pass
        finally:
            raise Closed()

    async def fault(self, at, normal, rcpt=None):
        """Plays the rule for this event, or sends the normal reply.
        Returns the code sent."""
        r = self.srv.rule(at, self.conn, rcpt)
        if r is None:
            return await self.send(normal)
        self.srv.event(conn=self.conn, tls=self.is_tls, at=at, fault=r.do,
                       reply=r.reply)
        if r.do == "close":
            raise Closed()
        if r.do == "stall":
            await self.stall()
        if r.do in ("extra", "prefix"):
            return await self.send(normal, also=r.reply, also_raw=r.raw,
                                   also_first=r.do == "prefix")
        code = await self.send(r.reply, r.raw)
        if code == 421:
            self.finish("421")
            raise Closed()
        return code

    # -- transaction log -------------------------------------------------
    def finish(self, end):
        txn, self.txn = self.txn, None
        if txn is None:
            return
        txn["end"] = end
        txn["time"] = time.time()
        if txn["result"] is None and txn["rcpts"]:
            txn["result"] = txn["rcpts"][-1]["code"]
        self.srv.log.write(json.dumps(txn) + "\n")
        self.srv.log.flush()

    def rcpt(self):
        if self.txn and self.txn["rcpts"]:
            return self.txn["rcpts"][-1]["addr"]
        return None

    # -- the session -----------------------------------------------------
    async def run(self):
        await self.fault("greeting", "220 faultsmtp ESMTP ready")
        while True:
            line = await self.readline()
            behind = self.behind()
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = text.split(" ", 1)[0].upper()
            arg = text[len(verb):].strip()
            shown = f"{verb} <redacted>" if verb == "AUTH" else text
            handler = getattr(self, "cmd_" + verb, None)
            if handler is None:
                code = await self.send("502 5.5.2 Command not recognized")
            else:
                code = await handler(arg)
            self.srv.event(conn=self.conn, tls=self.is_tls, cmd=shown,
                           code=code, behind=behind)

    async def cmd_EHLO(self, arg):
        lines = ["250 faultsmtp", "250 8BITMIME", "250 SIZE 52428800"]
        if self.srv.a.pipelining:
            lines.append("250 PIPELINING")
        if self.srv.a.chunking:
            lines.append("250 CHUNKING")
        if self.srv.tls and not self.is_tls:
            lines.append("250 STARTTLS")
        if self.srv.auth:
            lines.append("250 AUTH PLAIN LOGIN")
        lines.append("250 ENHANCEDSTATUSCODES")
        return await self.fault("ehlo", lines)

    async def fault_action(self, r):
        if r.do == "close":
            raise Closed()
        await self.stall()

    async def cmd_HELO(self, arg):
        return await self.send("250 faultsmtp")

    async def cmd_STARTTLS(self, arg):
        if not self.srv.tls or self.is_tls:
            return await self.send("502 5.5.1 STARTTLS not available")
        r = self.srv.rule("starttls", self.conn)
        if r and r.do == "bad-tls":
            await self.send("220 2.0.0 Ready to start TLS")
            self.srv.event(conn=self.conn, at="starttls", fault="bad-tls")
            self.w.write(b"this is not a TLS server hello\r\n" * 4)
            await self.w.drain()
            raise Closed()
        if r:
            if r.do == "reply":
                return await self.send(r.reply)
            await self.fault_action(r)
        await self.send("220 2.0.0 Ready to start TLS")
        await self.w.start_tls(self.srv.tls)
        self.is_tls = True
        return 220

    async def cmd_AUTH(self, arg):
        if not self.srv.auth:
            return await self.send("502 5.5.1 AUTH not available")
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if mech == "PLAIN":
            resp = parts[1] if len(parts) > 1 else None
            if resp is None:
                await self.send("334 ")
                resp = (await self.readline()).decode().strip()
            try:
                _, user, password = base64.b64decode(resp).split(b"\0", 2)
            except Exception:
                return await self.send("501 5.5.2 Cannot decode")
        elif mech == "LOGIN":
            if len(parts) > 1:
                user = base64.b64decode(parts[1])
            else:
                await self.send("334 VXNlcm5hbWU6")
                user = base64.b64decode((await self.readline()).strip())
            await self.send("334 UGFzc3dvcmQ6")
            password = base64.b64decode((await self.readline()).strip())
        else:
            return await self.send("504 5.5.4 Unrecognized mechanism")
        want_user, want_pass = self.srv.auth
        ok = user.decode() == want_user and password.decode() == want_pass
        self.srv.event(conn=self.conn, auth=user.decode("utf-8", "replace"),
                       ok=ok, tls=self.is_tls)
        r = self.srv.rule("auth", self.conn)
        if r:
            if r.do == "reply":
                return await self.send(r.reply)
            await self.fault_action(r)
        if not ok:
            return await self.send("535 5.7.8 Authentication credentials invalid")
        self.auth_user = user.decode()
        return await self.send("235 2.7.0 Authentication successful")

    async def cmd_MAIL(self, arg):
        self.finish("reset")
        addr = arg.split(":", 1)[1].strip() if ":" in arg else ""
        addr = addr.split(" ")[0].strip("<>")
        self.txn = {"conn": self.conn, "mail_from": addr, "rcpts": [],
                    "result": None, "seq": None, "tls": self.is_tls,
                    "auth": self.auth_user}
        code = await self.fault("mail", "250 2.1.0 Ok")
        if code >= 400:
            self.txn["result"] = code
            self.finish("mail")
        return code

    async def cmd_RCPT(self, arg):
        if self.txn is None:
            return await self.send("503 5.5.1 MAIL first")
        addr = arg.split(":", 1)[1].strip() if ":" in arg else ""
        addr = addr.split(" ")[0].strip("<>")
        entry = {"addr": addr, "code": None}
        self.txn["rcpts"].append(entry)
        code = await self.fault("rcpt", "250 2.1.5 Ok", addr)
        entry["code"] = code
        return code

    async def cmd_DATA(self, arg):
        ok = [r for r in (self.txn or {}).get("rcpts", []) if r["code"] == 250]
        if not ok:
            code = await self.send("554 5.5.1 No valid recipients")
            await self.flush_held()
            return code
        rcpt = ok[-1]["addr"]
        code = await self.fault("data", "354 End data with <CR><LF>.<CR><LF>",
                                rcpt)
        await self.flush_held()
        if code != 354:
            self.txn["result"] = code
            self.finish("data-refused")
            return code
        cut = self.srv.rule("content", self.conn, rcpt)
        data = bytearray()
        while True:
            line = await self.readline()
            if line == b".\r\n":
                self.srv.event(conn=self.conn, cmd=".", behind=self.behind())
                break
            data += line[1:] if line.startswith(b".") else line
            if cut is not None and len(data) >= cut.after_bytes:
                self.srv.event(conn=self.conn, at="content",
                               fault="close-mid-data", bytes=len(data))
                self.txn["result"] = 0
                self.finish("close-mid-data")
                if cut.do == "stall":
                    await self.stall()
                raise Closed()
        return await self.end_of_message(data, ok, rcpt)

    async def end_of_message(self, data, ok, rcpt):
        """The final dot, or BDAT LAST: the "dot" rules, else stored."""
        r = self.srv.rule("dot", self.conn, rcpt)
        if r is not None and r.do == "store-stall":
            self.srv.event(conn=self.conn, at="dot", fault=r.do)
            self.store(data, ok)
            self.finish("dot-store-stall")
            await self.stall()
        if r is not None and r.do == "hold":
            self.srv.event(conn=self.conn, at="dot", fault=r.do, reply=r.reply)
            code = int(r.reply[:3]) if r.reply[:3].isdigit() else 0
            if 200 <= code < 300:
                self.store(data, ok)
            else:
                self.txn["result"] = code
            self.finish("dot-held")
            self.held.append(r.reply)
            return code
        if r is not None and r.do in ("extra", "prefix"):
            self.srv.event(conn=self.conn, at="dot", fault=r.do, reply=r.reply)
            seq = self.store(data, ok)
            self.finish("data")
            code = await self.send("250 2.0.0 Ok: queued as %d" % seq, also=r.reply,
                                   also_raw=r.raw, also_first=r.do == "prefix")
            if r.do == "extra" and str(r.reply).startswith("421"):
                raise Closed()
            return code
        if r is not None:
            self.srv.event(conn=self.conn, at="dot", fault=r.do, reply=r.reply)
            if r.do == "close":
                self.finish("dot-close")
                raise Closed()
            if r.do == "stall":
                self.finish("dot-stall")
                await self.stall()
            code = await self.send(r.reply, r.raw)
            self.txn["result"] = code
            self.finish("dot-refused")
            if code == 421:
                raise Closed()
            return code
        seq = self.store(data, ok)
        self.finish("data")
        return await self.send(["250-2.0.0 Ok: queued as %d" % seq,
                                "250 2.0.0 Thank you"]
                               if self.srv.a.multiline_ok else
                               "250 2.0.0 Ok: queued as %d" % seq)

    async def cmd_BDAT(self, arg):
        """RFC 3030 (advertised with --chunking): the chunk is read whole
        before any reply, as the RFC requires; a "content" rule closes
        after its after_bytes bytes."""
        parts = arg.split()
        try:
            size = int(parts[0])
        except (IndexError, ValueError):
            return await self.send("501 5.5.4 Syntax: BDAT size [LAST]")
        last = len(parts) > 1 and parts[1].upper() == "LAST"
        ok = [r for r in (self.txn or {}).get("rcpts", []) if r["code"] == 250]
        rcpt = ok[-1]["addr"] if ok else None
        cut = self.srv.rule("content", self.conn, rcpt) if ok else None
        if cut is not None:
            await self.r.readexactly(min(size, cut.after_bytes))
            self.srv.event(conn=self.conn, at="content",
                           fault="close-mid-data", bytes=cut.after_bytes)
            self.txn["result"] = 0
            self.finish("close-mid-data")
            if cut.do == "stall":
                await self.stall()
            raise Closed()
        chunk = await self.r.readexactly(size)
        if not ok:
            self.finish("bdat-refused")
            return await self.send("554 5.5.1 No valid recipients")
        # A "data" rule answers the BDAT that takes the DATA command's place.
        r = self.srv.rule("data", self.conn, rcpt)
        if r is not None and r.do == "reply":
            self.srv.event(conn=self.conn, at="data", fault=r.do, reply=r.reply)
            self.bdat = b""
            code = await self.send(r.reply)
            self.txn["result"] = code
            self.finish("data-refused")
            if code == 421:
                raise Closed()
            return code
        self.bdat = getattr(self, "bdat", b"") + chunk
        if not last:
            return await self.send("250 2.0.0 %d octets received" % size)
        data, self.bdat = self.bdat, b""
        return await self.end_of_message(bytearray(data), ok, rcpt)

    def store(self, data, ok):
        self.srv.seq += 1
        seq = self.srv.seq
        meta = {"seq": seq, "mail_from": self.txn["mail_from"],
                "rcpt_tos": [x["addr"] for x in ok], "conn": self.conn,
                "tls": self.is_tls, "auth": self.auth_user,
                "time": time.time()}
        write_atomically(os.path.join(self.srv.dir, "envelope", f"{seq}.json"),
                         json.dumps(meta).encode() + b"\n")
        write_atomically(os.path.join(self.srv.dir, "new", f"{seq}.eml"),
                         bytes(data))
        self.txn["result"] = 250
        self.txn["seq"] = seq
        return seq

    async def cmd_RSET(self, arg):
        self.finish("rset")
        code = await self.send("250 2.0.0 Ok")
        await self.flush_held()
        return code

    async def cmd_NOOP(self, arg):
        return await self.send("250 2.0.0 Ok")

    async def cmd_QUIT(self, arg):
        self.finish("quit")
        await self.flush_held()
        await self.send("221 2.0.0 Bye")
        raise Closed()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--maildir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--rule", action="append", default=[])
    p.add_argument("--split", action="store_true")
    p.add_argument("--multiline-ok", action="store_true",
                   help="answer an accepted message with a two-line 250")
    p.add_argument("--pipelining", action="store_true",
                   help="advertise PIPELINING (RFC 2920): commands are read in order, "
                        "so a pipelining client is served as it should be")
    p.add_argument("--chunking", action="store_true",
                   help="advertise CHUNKING and take BDAT (RFC 3030)")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--max-seconds", type=float, default=120)
    a = p.parse_args(argv)
    if a.host not in ("127.0.0.1", "::1"):
        p.error("only loopback addresses are allowed")
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    try:
        [Rule(r) for r in a.rule]
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        p.error(str(e))
    return a


async def serve(a):
    srv = Server(a)
    server = await asyncio.start_server(srv.handle, a.host, a.port)
    await serve_until_stopped("faultsmtp", server, a.host, a.port_file, a.max_seconds)
    for t in list(srv.sessions):
        t.cancel()
    srv.log.close()
    srv.events.close()


def main(argv):
    a = parse_args(argv)
    asyncio.run(serve(a))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
