"""Free loopback ports for the processes a benchmark starts.

Why this module exists: a port probed with ``bind(0)`` and closed at once can be handed
out again by the next probe, so two ports picked one after the other may be the same
one (seen in CI: Envoy's listener and admin port collided). Picking several at once,
with every probe socket still open, gives distinct ports.
"""

from __future__ import annotations

import contextlib
import socket

__all__ = ["free_ports"]

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on loopback that are free right now."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
