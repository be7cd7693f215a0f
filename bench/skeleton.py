"""The start-up peer: what any daemon like jameyd must do before READY=1.

It imports jameyd's runtime dependencies, opens a SQLite database and a Unix
socket, then tells NOTIFY_SOCKET it is ready. jameyd's start-up is measured
as a ratio to this.
"""

import os
import socket
import sys
import tomllib  # noqa: F401 - imported because jameyd imports it

import apsw
import falcon  # noqa: F401
import waitress  # noqa: F401


def main() -> None:
    state, sock_path = sys.argv[1], sys.argv[2]
    db = apsw.Connection(os.path.join(state, 'skeleton.db'))
    db.execute('PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (x)')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])
    listener.accept()  # until the benchmark is done with it


if __name__ == '__main__':
    main()
