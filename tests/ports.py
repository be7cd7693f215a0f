"""Loopback ports for test servers that bind after the test picked the port.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range,
which every outgoing connection of the test run also draws from; between
closing the probe and the server binding, one of those may take it. Ports
below that range are handed to nobody but an explicit bind, so a random one
that binds now stays free for the server."""

import random
import socket

HOST = '127.0.0.1'
LOW, HIGH = 20000, 32000


def ephemeral_floor() -> int:
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return HIGH


def free_port() -> int:
    """A loopback TCP port outside the ephemeral range that binds now."""
    high = min(HIGH, ephemeral_floor())
    for _ in range(200):
        port = random.randrange(LOW, high)
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise AssertionError(f'no free loopback port in {LOW}-{high}')
