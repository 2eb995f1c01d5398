#!/usr/bin/python3
"""A small MTA for herald's bounce tests: accepts every message (250), and
for the recipients named with --bounce writes the delivery status
notification a real MTA writes when the next hop refuses after it has
accepted (RFC 3464: text/plain, message/delivery-status, the returned
headers as text/rfc822-headers), and delivers it through LMTP to the
envelope sender (herald's VERP address), like an MTA's bounce daemon.

    dsnmta.py --port-file F --lmtp PORT [--bounce ADDR=550:5.1.1:TEXT]...
              [--max-seconds 300]

Messages accepted for other recipients are only counted (DIR-less).
"""

import argparse
import asyncio
import email.utils
import signal
import smtplib
import socket
import sys
import time

from aiosmtpd.controller import Controller
from serverlife import write_atomically


def dsn(mail_from, rcpt, data, code, status, text, when):
    headers = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n").decode("utf-8", "replace")
    boundary = f"dsn.{int(when * 1000)}.{abs(hash(rcpt))}"
    action = "failed"
    date = email.utils.formatdate(when)
    return (f"""Return-Path: <>
Date: {date}
From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
To: {mail_from}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.org.

<{rcpt}>: host mx.example.net[192.0.2.1] said: {code} {status} {text}
    (in reply to RCPT TO command)

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org
Arrival-Date: {date}

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {code} {status} {text}

--{boundary}
Content-Type: text/rfc822-headers

{headers}
--{boundary}--
""").replace("\n", "\r\n").encode()


class Handler:
    def __init__(self, lmtp_port, bounces):
        self.lmtp_port = lmtp_port
        self.bounces = bounces

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            b = self.bounces.get(rcpt.lower())
            if not b or not envelope.mail_from:
                continue
            code, status, text = b
            msg = dsn(envelope.mail_from, rcpt, envelope.original_content or envelope.content,
                      code, status, text, time.time())
            # The bounce goes out as a real one would: MAIL FROM:<>.
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as l:
                l.sendmail("", [envelope.mail_from], msg)
        return "250 2.0.0 Ok: queued"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--lmtp", type=int, required=True)
    ap.add_argument("--bounce", action="append", default=[])
    ap.add_argument("--max-seconds", type=float, default=300)
    a = ap.parse_args()
    bounces = {}
    for spec in a.bounce:
        addr, rest = spec.split("=", 1)
        code, status, text = rest.split(":", 2)
        bounces[addr.lower()] = (code, status, text)
    # aiosmtpd's controller cannot take port 0: pick a free one.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = Controller(Handler(a.lmtp, bounces), hostname="127.0.0.1", port=port)
    c.start()
    write_atomically(a.port_file, str(port).encode())
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    deadline = time.monotonic() + a.max_seconds
    while not stop and time.monotonic() < deadline:
        time.sleep(0.05)
    c.stop()


if __name__ == "__main__":
    sys.exit(main())
