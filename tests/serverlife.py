"""What tests/smtpd.py and tests/faultsmtp.py share: writing files the way
a maildir does, and the life of a test server (announce the port, run until
SIGTERM, SIGINT or --max-seconds). Stdlib only."""

import asyncio
import os
import signal
import sys


def write_atomically(path, data, tmp_path=None):
    tmp_path = tmp_path or path + ".tmp"
    with open(tmp_path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp_path, path)


async def serve_until_stopped(name, server, host, port_file, max_seconds):
    """Writes the listening port to port_file (atomically, so a test never
    reads half a number) and returns when the server should stop."""
    loop = asyncio.get_running_loop()
    port = server.sockets[0].getsockname()[1]
    if port_file:
        write_atomically(port_file, f"{port}\n".encode())
    print(f"{name}: listening on {host}:{port} (pid {os.getpid()})",
          file=sys.stderr, flush=True)
    done = loop.create_future()

    def stop(why):
        if not done.done():
            print(f"{name}: stopping ({why})", file=sys.stderr, flush=True)
            done.set_result(None)
    loop.add_signal_handler(signal.SIGTERM, stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, stop, "SIGINT")
    loop.call_later(max_seconds, stop, f"--max-seconds {max_seconds:g}")
    await done
    server.close()
