"""Ports picked for a benchmark's processes are distinct and free."""

from __future__ import annotations

import socket

from services.runtime.ports import free_ports


def test_ports_picked_together_are_distinct_and_bindable() -> None:
    for _ in range(20):  # one-at-a-time probes repeat a port now and then; these never
        ports = free_ports(8)
        assert len(set(ports)) == 8
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # still free once the probes are closed
