"""``scripts/bench vault``: backup and verify, against what an operator would script.

For each database size (100 MB and 1 GB of incompressible rows in a migrated
Jamey database), in one run, with the page cache warm and no dirty pages
left over for everyone, each contender run ``--rounds`` times (the disk here
varies by a quarter from run to run) and its median taken:
- backup: ``POST /vault/backups`` on a running jameyd (snapshot, tar,
  encrypt, fsync, read back) against (a) ``sqlite3 DB ".backup FILE"`` alone,
  the floor, and (b) ``.backup`` then ``age`` encrypting the copy to an X25519
  recipient;
- verify: ``POST /vault/backups/{id}/verify`` (decrypt, hashes, integrity
  check) against the same (a) and (b), as the issue names them, and against
  what checking the operator's copy takes: ``PRAGMA integrity_check`` on it,
  and ``age -d`` then the integrity check;
- peak RSS of jameyd during the backup above its baseline just before (the
  kernel's high-water mark, reset through /proc/PID/clear_refs).
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from startup import BIN
from startup import jameyd_env
from startup import peak_rss_mb
from startup import reset_peak_rss
from startup import rss_mb
from startup import scratch
from startup import start_until_ready
from startup import stop

from jamey import storage
from jamey.cli.client import UnixConnection
from jamey.vault import keys

MB = 1_000_000
ROW = 4000


def post(sock: Path, target: str) -> Any:
    conn = UnixConnection(sock, 3600)
    try:
        conn.request('POST', target)
        response = conn.getresponse()
        document = json.loads(response.read())
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f'{target}: {response.status} {document}')
    return document


def make_database(path: Path, size: int) -> None:
    storage.private_directory(path.parent)
    db = storage.Database(path, synchronous='off')
    db.migrate()
    conn = db.connection()
    with conn:
        conn.execute('CREATE TABLE filler (data BLOB)')
        conn.execute(
            'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n'
            ' WHERE i < ?) INSERT INTO filler SELECT randomblob(?) FROM n',
            (size // ROW, ROW),
        )
    conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    db.close()


def timed(cmd: list[str]) -> float:
    os.sync()  # nobody pays for the previous contender's dirty pages
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def warm(path: Path) -> None:
    """Read a file once so every contender starts from the page cache."""
    with path.open('rb') as f:
        while f.read(1 << 20):
            pass


def peers(root: Path, database: Path) -> dict[str, float]:
    copy = root / 'copy.db'
    identity = root / 'age.key'
    if not identity.exists():
        subprocess.run(
            ['age-keygen', '-o', str(identity)], check=True, capture_output=True
        )
    recipient = subprocess.run(
        ['age-keygen', '-y', str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    warm(database)
    floor = timed(['sqlite3', str(database), f'.backup {copy}'])
    sealed = root / 'copy.db.age'
    encrypt = timed(['age', '-r', recipient, '-o', str(sealed), str(copy)])
    check = timed(['sqlite3', str(copy), 'PRAGMA integrity_check'])
    copy.unlink()
    decrypt = timed(['age', '-d', '-i', str(identity), '-o', str(copy), str(sealed)])
    check_again = timed(['sqlite3', str(copy), 'PRAGMA integrity_check'])
    copy.unlink()
    sealed.unlink()
    return {
        'backup_a': floor,
        'backup_b': floor + encrypt,
        'verify_a': check,
        'verify_b': decrypt + check_again,
    }


def ours(root: Path, database: Path, rounds: int) -> dict[str, float]:
    """Median backup and verify times over ``rounds``, one jameyd for all;
    the highest peak RSS of any backup."""
    key = root / 'vault.key'
    keys.generate(key, recipient=False)
    env = jameyd_env(
        root, JAMEY_VAULT_KEY_FILE=str(key), JAMEY_VAULT_INTERVAL_HOURS='0'
    )
    _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
    sock = root / 'jamey.sock'
    backups, verifies, peaks = [], [], []
    try:
        time.sleep(1.0)
        baseline = rss_mb(proc.pid)
        for _ in range(rounds):
            reset_peak_rss(proc.pid)
            warm(database)
            os.sync()
            started = time.perf_counter()
            made = post(sock, '/vault/backups')
            backups.append(time.perf_counter() - started)
            peaks.append(peak_rss_mb(proc.pid))
            os.sync()
            started = time.perf_counter()
            report = post(sock, f'/vault/backups/{made["id"]}/verify')
            verifies.append(time.perf_counter() - started)
            assert report['ok'], report
            for old in (root / 'state' / 'vault').glob('*.jvault'):
                old.unlink()  # the disk holds one backup at a time
    finally:
        stop(proc)
    return {
        'backup': statistics.median(backups),
        'verify': statistics.median(verifies),
        'baseline_mb': baseline,
        'above_mb': max(peaks) - baseline,
        'file_mb': made['size_bytes'] / MB,
    }


def median_peers(root: Path, database: Path, rounds: int) -> dict[str, float]:
    runs = [peers(root, database) for _ in range(rounds)]
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def bench(size_mb: int, rounds: int) -> None:
    with scratch() as root:
        database = root / 'state' / 'jamey.db'
        make_database(database, size_mb * MB)
        actual = database.stat().st_size / MB
        theirs = median_peers(root, database, rounds)
        mine = ours(root, database, rounds)
    print(f'\n{actual:,.0f} MB database (page cache warm; medians of {rounds} runs)')
    print(f'  {"":36} {"seconds":>8} {"MB/s":>7} {"ours vs peer":>13}')
    groups = [
        (
            'backup: jamey, POST /vault/backups',
            mine['backup'],
            [
                ('(a) sqlite3 .backup', theirs['backup_a'], 0.8),
                ('(b) sqlite3 .backup, then age', theirs['backup_b'], 1.5),
            ],
        ),
        (
            'verify: jamey, POST .../verify',
            mine['verify'],
            [
                ('(a) sqlite3 .backup', theirs['backup_a'], 0.8),
                ('(b) sqlite3 .backup, then age', theirs['backup_b'], 1.5),
                ('PRAGMA integrity_check', theirs['verify_a'], None),
                ('age -d, then integrity_check', theirs['verify_b'], None),
            ],
        ),
    ]
    for label, seconds, contenders in groups:
        print(f'  {label:36} {seconds:8.2f} {actual / seconds:7.0f}')
        for name, theirs_s, target in contenders:
            goal = f'  (target >= {target}x)' if target else ''
            print(
                f'    {name:34} {theirs_s:8.2f} {actual / theirs_s:7.0f}'
                f' {theirs_s / seconds:12.2f}x{goal}'
            )
    print(
        f'  jameyd RSS: baseline {mine["baseline_mb"]:.1f} MB, peak during the'
        f' backup {mine["above_mb"]:+.1f} MB above it (target <= 16 MB);'
        f' backup file {mine["file_mb"]:,.0f} MB'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        '--sizes', type=int, nargs='+', default=[100, 1000], metavar='MB'
    )
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    for size in args.sizes:
        bench(size, args.rounds)


if __name__ == '__main__':
    main()
