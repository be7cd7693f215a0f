"""The sd_notify client: real datagram sockets, abstract ones, none at all."""

import os
import socket
import uuid
from pathlib import Path

from jamey.daemon.systemd import Notifier
from jamey.daemon.systemd import watchdog_interval


def test_sends_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / 'notify'
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    notifier = Notifier({'NOTIFY_SOCKET': str(path)})
    notifier.notify('READY=1', 'STATUS=fine')
    assert server.recv(100) == b'READY=1\nSTATUS=fine'
    notifier.reloading()
    fields = dict(x.split('=') for x in server.recv(100).decode().splitlines())
    assert fields['RELOADING'] == '1'
    assert int(fields['MONOTONIC_USEC']) > 0
    notifier.close()
    server.close()


def test_sends_to_an_abstract_socket() -> None:
    name = f'jamey-test-{uuid.uuid4().hex}'
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind('\0' + name)
    Notifier({'NOTIFY_SOCKET': '@' + name}).notify('WATCHDOG=1')
    assert server.recv(100) == b'WATCHDOG=1'
    server.close()


def test_no_socket_is_a_no_op_and_a_dead_one_never_raises(tmp_path: Path) -> None:
    Notifier({}).notify('READY=1')
    Notifier({'NOTIFY_SOCKET': str(tmp_path / 'nobody')}).notify('READY=1')


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({'WATCHDOG_USEC': '30000000'}) == 30.0
    assert watchdog_interval({'WATCHDOG_USEC': '0'}) is None
    assert watchdog_interval({'WATCHDOG_USEC': 'soon'}) is None
    mine = {'WATCHDOG_USEC': '1000000', 'WATCHDOG_PID': str(os.getpid())}
    assert watchdog_interval(mine) == 1.0
    assert watchdog_interval({**mine, 'WATCHDOG_PID': '1'}) is None
