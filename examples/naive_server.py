"""A deliberately broken framed echo server: what NOT to do (for the probe's tests).

It has the classic vsock service bugs from the seed and the checklist:

* serial accept: one connection is handled to completion before the next
  ``accept`` (VS-1: one idle client blocks everyone);
* no timeouts at all (VS-2: an idle or trickling client holds it forever; a
  peer that never reads blocks ``sendall`` forever);
* an unbounded length prefix (MEM-1: a 4 GiB prefix is trusted and waited for);
* the aws-nitro-enclaves-cli PR 609 ``recv_loop``: a 0-byte ``recv`` is added
  as "0 bytes received", so a peer that closes mid-frame makes it spin at 100%
  CPU forever (VS-3).

Safety valve: the process kills itself with SIGALRM after ``--max-seconds``
(default 60), so a test that forgets it never leaves a spinning process behind.

Usage::

    python examples/naive_server.py tcp://127.0.0.1:0
    python examples/naive_server.py unix:///tmp/naive.sock
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import struct
import sys
import time


def recv_loop(sock: socket.socket, n: int) -> bytes:
    """The buggy loop: EINTR retried (fine), but EOF is never detected (the bug)."""
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 65536))
        except InterruptedError:
            continue
        buf += chunk  # BUG: chunk == b"" after the peer closes -> spins forever
    return buf


def handle(conn: socket.socket) -> None:
    """Serve one connection to completion (no timeouts, no size limit)."""
    while True:
        first = conn.recv(4)
        if not first:  # EOF between frames is handled; EOF inside a frame is not
            return
        header = first + recv_loop(conn, 4 - len(first))
        (length,) = struct.unpack(">I", header)  # BUG: no maximum frame size
        payload = recv_loop(conn, length)
        if payload.startswith(b"sleep:"):
            with contextlib.suppress(ValueError):
                time.sleep(min(float(payload[6:].split(b":")[0]), 30.0))
        conn.sendall(header + payload)  # BUG: blocks forever on a peer that never reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="tcp://HOST:PORT or unix:///path")
    parser.add_argument("--max-seconds", type=int, default=60)
    args = parser.parse_args()
    signal.alarm(args.max_seconds)  # default SIGALRM action terminates the process
    if args.address.startswith("unix://"):
        path = args.address[len("unix://") :]
        if os.path.exists(path):
            os.unlink(path)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        shown = args.address
    else:
        host, _, port = args.address[len("tcp://") :].rpartition(":")
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((host, int(port)))
        shown = f"tcp://{host}:{lsock.getsockname()[1]}"
    lsock.listen(128)
    sys.stdout.write(f"listening on {shown}\n")
    sys.stdout.flush()
    while True:
        conn, _ = lsock.accept()  # BUG: serial; the next client waits for this one
        try:
            handle(conn)
        except OSError:
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
