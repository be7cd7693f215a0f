"""``scripts/bench startup``: start-up, idle cost and /health throughput.

Every figure is printed beside the peer measured in the same run:
- start to READY=1, against bench/skeleton.py (imports the runtime
  dependencies, opens a database and a Unix socket);
- RSS and wake-ups (context switches of all threads) while idle, with the
  unit's watchdog interval;
- GET /health over the Unix socket with 1, 4 and 16 keep-alive clients,
  against a bare Falcon app under waitress (bench/bare_health.py);
- the start-up check of the database: ready with it against without it at
  100 MB, and the check alone at 100 MB and 1 GB; the full check
  (``jamey.integrity``: integrity_check and every row's checksum) there too.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import load

from jamey import storage
from jamey.ids import new_ids
from jamey.integrity import IntegrityCheck

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@contextmanager
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix='jamey-bench-'))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def jameyd_env(root: Path, **extra: str) -> dict[str, str]:
    return {
        'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
        'JAMEY_STORAGE_STATE_DIR': str(root / 'state'),
        'JAMEY_API_SOCKET': str(root / 'jamey.sock'),
        'JAMEY_LOG_FORMAT': 'json',
        **extra,
    }


def start_until_ready(
    cmd: list[str], env: dict[str, str], root: Path
) -> tuple[float, subprocess.Popen[bytes]]:
    """Seconds from exec to READY=1, and the running process."""
    notify_path = root / 'notify'
    notify_path.unlink(missing_ok=True)  # an earlier start's
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env={**env, 'NOTIFY_SOCKET': str(notify_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while b'READY=1' not in notify.recv(4096).split(b'\n'):
        pass
    elapsed = time.perf_counter() - started
    notify.close()
    return elapsed, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_startup(runs: int) -> None:
    jameyd: list[float] = []
    skeleton: list[float] = []
    for _ in range(runs):  # interleaved, so drift hits both alike
        with scratch() as root:
            elapsed, proc = start_until_ready(
                [str(BIN / 'jameyd')], jameyd_env(root), root
            )
            jameyd.append(elapsed)
            stop(proc)
        with scratch() as root:
            cmd = [
                sys.executable,
                str(BENCH / 'skeleton.py'),
                str(root),
                str(root / 'skeleton.sock'),
            ]
            elapsed, proc = start_until_ready(cmd, {'PATH': os.environ['PATH']}, root)
            skeleton.append(elapsed)
            stop(proc)
    ours, peer = statistics.median(jameyd), statistics.median(skeleton)
    print(f'start to READY=1 (median of {runs}, empty state directory)')
    print(f'  jameyd    {ours * 1000:7.1f} ms')
    print(f'  skeleton  {peer * 1000:7.1f} ms')
    print(f'  ratio     {ours / peer:7.2f}x   (target <= 1.2x)\n')


def filled_state(root: Path, megabytes: int) -> Path:
    """A state directory whose database holds about ``megabytes`` of
    memories (written directly, journal-free: the first start indexes them)."""
    state = root / 'state'
    state.mkdir(mode=0o700)
    db = storage.Database(state / storage.DATABASE_NAME, 'off')
    db.migrate()
    text = 'the quick brown fox jumps over the lazy dog ' * 45  # ~2 KB
    rows = megabytes * 1024 // 2
    with db.transaction() as conn:
        for n, memory_id in enumerate(new_ids(rows, 1_700_000_000_000)):
            conn.execute(
                'INSERT INTO memories (id, layer, content, entity, created_ms,'
                " created_at, metadata) VALUES (?, 'semantic', ?, NULL, ?, ?, NULL)",
                (memory_id, f'{n} {text}', 1_700_000_000_000 + n, '2023-11-14'),
            )
    db.close()
    return state


def bench_check(sizes_mb: list[int], runs: int) -> None:
    """The start-up check's cost: start to READY=1 with it against without
    it on the same database, and the check alone at each size."""
    print('the start-up check (storage.start_check)')
    for size in sizes_mb:
        with scratch() as root:
            state = filled_state(root, size)
            db = storage.Database(state / storage.DATABASE_NAME)
            for full in (False, True):
                _, seconds = storage.StartCheck(db.path, full, 3600).wait()
                name = 'integrity_check' if full else 'quick_check'
                print(f'  {size:5} MB  {name:15} alone {seconds * 1000:8.1f} ms')
            finding = IntegrityCheck(db, 0).run()
            assert finding.sound, finding
            print(
                f'  {size:5} MB  full check      (integrity_check and every'
                f" row's checksum, jamey.integrity) {finding.seconds * 1000:8.1f} ms"
            )
            db.close()
            if size > 200:
                continue  # a first start there indexes for minutes
            env = jameyd_env(root, JAMEY_CONSCIENCE_MEANING='off')
            _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
            stop(proc)  # the first start indexed everything
            ready: dict[str, list[float]] = {'off': [], 'quick': []}
            for _ in range(runs):
                for check, times in ready.items():
                    env['JAMEY_STORAGE_START_CHECK'] = check
                    elapsed, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
                    times.append(elapsed)
                    stop(proc)
            off, quick = (statistics.median(ready[c]) for c in ('off', 'quick'))
            print(
                f'  {size:5} MB  ready: quick {quick * 1000:7.1f} ms, off'
                f' {off * 1000:7.1f} ms, ratio {quick / off:.2f}x (target <= 1.5x)'
            )


def context_switches(pid: int) -> int:
    total = 0
    for task in Path(f'/proc/{pid}/task').iterdir():
        for line in (task / 'status').read_text().splitlines():
            if line.startswith(
                ('voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches')
            ):
                total += int(line.split()[1])
    return total


def rss_mb(pid: int) -> float:
    return _status_mb(pid, 'VmRSS')


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of resident memory since
    ``reset_peak_rss``."""
    return _status_mb(pid, 'VmHWM')


def reset_peak_rss(pid: int) -> None:
    Path(f'/proc/{pid}/clear_refs').write_text('5')


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(f'{field}:'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no {field}')


def bench_idle(seconds: float) -> None:
    with scratch() as root:
        # The unit's WatchdogSec=30s: pings every 15 s.
        env = jameyd_env(root, WATCHDOG_USEC='30000000')
        _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
        before = context_switches(proc.pid)
        time.sleep(seconds)
        after = context_switches(proc.pid)
        rss = rss_mb(proc.pid)
        threads = len(list(Path(f'/proc/{proc.pid}/task').iterdir()))
        stop(proc)
    print(f'idle for {seconds:.0f} s after READY=1 (watchdog 30 s, empty state)')
    print(f'  RSS         {rss:6.1f} MB   (target <= 48 MB)')
    print(
        f'  wake-ups    {(after - before) / seconds:6.2f} /s   (target <= 1/s;'
        f' {after - before} context switches over {threads} threads)'
    )


def bench_health(clients: list[int], threads: list[int], seconds: float) -> None:
    print(f'GET /health over the Unix socket, keep-alive, {seconds:.0f} s each')
    print(
        '  threads clients   jameyd req/s   p50 ms   p99 ms |'
        '   bare req/s   p50 ms   p99 ms | ratio'
    )
    for count in threads:
        with scratch() as root:
            env = jameyd_env(root, JAMEY_API_THREADS=str(count))
            _, ours = start_until_ready([str(BIN / 'jameyd')], env, root)
            bare_sock = root / 'bare.sock'
            peer = subprocess.Popen(
                [
                    sys.executable,
                    str(BENCH / 'bare_health.py'),
                    str(bare_sock),
                    str(count),
                ]
            )
            while not bare_sock.exists():
                time.sleep(0.05)
            try:
                for n in clients:
                    a = load.run(str(root / 'jamey.sock'), '/health', n, seconds)
                    b = load.run(str(bare_sock), '/health', n, seconds)
                    print(
                        f'  {count:7d} {n:7d}   {a.columns()} | {b.columns()}'
                        f' | {a.rate / b.rate:5.2f}x'
                    )
            finally:
                stop(ours)
                stop(peer)
    print('  (targets: ratio >= 0.8x; p99 < 1 ms at 4 clients)\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--runs', type=int, default=15)
    parser.add_argument('--idle-seconds', type=float, default=60.0)
    parser.add_argument('--load-seconds', type=float, default=5.0)
    parser.add_argument(
        '--threads',
        default='1,2,4',
        help='comma-separated waitress thread counts to compare',
    )
    parser.add_argument(
        '--parts',
        default='ready,health,idle,check',
        help='comma-separated parts to run: ready, health, idle, check',
    )
    parser.add_argument(
        '--check-sizes', default='100,1000', help='database sizes in MB'
    )
    args = parser.parse_args()
    parts = args.parts.split(',')
    if 'ready' in parts:
        bench_startup(args.runs)
    if 'health' in parts:
        threads = [int(t) for t in args.threads.split(',')]
        bench_health([1, 4, 16], threads, args.load_seconds)
    if 'idle' in parts:
        bench_idle(args.idle_seconds)
    if 'check' in parts:
        sizes = [int(size) for size in args.check_sizes.split(',')]
        bench_check(sizes, max(3, args.runs // 3))


if __name__ == '__main__':
    main()
