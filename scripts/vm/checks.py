"""Boot the test system under qemu and check jamey under the real systemd.

scripts/test-systemd builds the disk (a Debian 12 system with two builds of
jamey's package beside it, not installed) and runs this. The system is
booted three times: the first boot installs the package with apt, as
docs/deploy.md says, and checks readiness, the sandbox, the socket, the
watchdog, Restart=, reload, a clean stop, the vault credential and the
journal; the second follows ``systemctl reboot``; the third follows qemu
killed right after acknowledged writes, and upgrades, removes and purges
the package. Commands run in the guest through the control service on a
virtio-serial port (scripts/vm/guest.py).

One line per check, PASS or FAIL with the reason, then the timings; the exit
status is 1 if any check failed.
"""

import argparse
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PORT_NAME = 'org.jamey.control'
# writethrough: qemu completes a guest write only once the host file has it
# (O_DSYNC). Killing qemu then loses the guest's page cache and nothing the
# virtual disk completed, like a power cut of a disk without a volatile cache.
CACHE_MODE = 'writethrough'
# On the PATH, as the package installs it.
JAMEYCTL = 'jameyctl'
SOCKET = '/run/jamey/jamey.sock'
CONFIG = '/etc/jamey/jamey.toml'
BOOT_TIMEOUT_S = 300.0
RESTART_TIMEOUT_S = 150.0
ACKNOWLEDGED_WRITES = 50
# The guest's own Python, on jamey's socket: one request per line of JSON on
# stdin ([method, path, body]), one answer per line ([status, body]).
API_CLIENT = """
import http.client, json, socket, sys

class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])

connection = Connection('jamey')
for line in sys.stdin:
    method, path, body = json.loads(line)
    connection.request(method, path, None if body is None else json.dumps(body),
                       {'Content-Type': 'application/json'})
    reply = connection.getresponse()
    print(json.dumps([reply.status, json.loads(reply.read() or 'null')]), flush=True)
"""
# Syslog priority of each level of jameyd's JSON lines (sd-daemon(3)).
PRIORITIES = {'critical': 2, 'error': 3, 'warning': 4, 'info': 6, 'debug': 7}
# Directories jameyd may write in: state, runtime, its private /tmp and
# /var/tmp.
WRITABLE = ('/var/lib/jamey', '/run/jamey', '/tmp', '/var/tmp')


def _event(line: str) -> str | None:
    """The event of one of jameyd's JSON lines."""
    try:
        event = json.loads(line).get('event')
    except (ValueError, AttributeError):
        return None
    return event if isinstance(event, str) else None


class CheckError(Exception):
    """A check found something other than what it expects."""


class NoAnswerError(Exception):
    """The guest did not answer in time."""


def expect(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckError(reason)


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str

    def text(self) -> str:
        return ' '.join((self.out + ' ' + self.err).split())[:300]


@dataclass(frozen=True)
class Machine:
    """How to boot the test system."""

    qemu: Path
    kernel: Path
    initrd: Path
    disk: Path
    workdir: Path
    accel: str

    def command(self, control: Path, console: Path) -> list[str]:
        cpu = ['-cpu', 'max'] if self.accel == 'tcg' else []
        return [
            str(self.qemu / 'usr/bin/qemu-system-x86_64'),
            *('-L', str(self.qemu / 'usr/share/qemu')),
            *('-machine', f'pc,accel={self.accel}', *cpu, '-smp', '2', '-m', '1024'),
            *('-nodefaults', '-display', 'none', '-no-reboot', '-nic', 'none'),
            *('-kernel', str(self.kernel), '-initrd', str(self.initrd)),
            '-append',
            'root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=0',
            '-drive',
            f'file={self.disk},format=raw,if=virtio,cache={CACHE_MODE}',
            '-chardev',
            f'socket,id=control,path={control},server=on,wait=off',
            *('-device', 'virtio-serial-pci'),
            *('-device', f'virtserialport,chardev=control,name={PORT_NAME}'),
            *('-serial', f'file:{console}'),
        ]


class Guest:
    """One boot of the test system: a qemu process and its control port.

    Answers are matched to requests by id, and ids are never reused, so an
    answer that arrives late is never taken for another request's.
    """

    _ids = iter(range(1, sys.maxsize))

    def __init__(self, machine: Machine, boot: int) -> None:
        control = machine.workdir / f'control-{boot}.sock'
        console = machine.workdir / f'console-{boot}.log'
        self.started = time.monotonic()
        self.process = subprocess.Popen(machine.command(control, console))
        deadline = time.monotonic() + 30
        while not control.exists():
            expect(self.process.poll() is None, 'qemu exited at start')
            expect(time.monotonic() < deadline, 'qemu made no control socket')
            time.sleep(0.05)
        self.channel = socket.socket(socket.AF_UNIX)
        self.channel.connect(str(control))
        self._send_lock = threading.Lock()
        self._answers: dict[int, Result] = {}
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        pending = b''
        while chunk := self.channel.recv(65536):
            pending += chunk
            *lines, pending = pending.split(b'\n')
            with self._arrived:
                for line in lines:
                    answer = json.loads(line)
                    self._answers[answer['id']] = Result(
                        answer['rc'], answer['out'], answer['err']
                    )
                self._arrived.notify_all()

    def run(
        self, argv: list[str], *, stdin: str | None = None, timeout: float = 60.0
    ) -> Result:
        """Run a command in the guest and wait for its answer."""
        request_id = next(self._ids)
        request = {'id': request_id, 'argv': argv, 'input': stdin, 'timeout': timeout}
        with self._send_lock:
            self.channel.sendall((json.dumps(request) + '\n').encode())
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: request_id in self._answers, timeout + 5
            ):
                raise NoAnswerError(f'no answer to {" ".join(argv)[:80]}')
            return self._answers.pop(request_id)

    def sh(self, script: str, timeout: float = 60.0) -> Result:
        return self.run(['sh', '-c', script], timeout=timeout)

    def wait_up(self) -> str:
        """Wait until the control service answers; its boot id."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            expect(self.process.poll() is None, 'qemu exited during boot')
            try:
                return self.run(
                    ['cat', '/proc/sys/kernel/random/boot_id'], timeout=2
                ).out.strip()
            except NoAnswerError:
                continue
        raise CheckError(f'no answer from the guest within {BOOT_TIMEOUT_S:.0f} s')

    def wait_exit(self, timeout: float) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise CheckError(f'qemu still running {timeout:.0f} s later') from exc

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.channel.close()


class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, name: str, run: Callable[[], str]) -> bool:
        """Run one check and print its line; whether it passed."""
        try:
            detail = run()
        except (CheckError, NoAnswerError, KeyError, ValueError) as exc:
            print(f'FAIL {name}: {exc}', flush=True)
            self.failed.append(name)
            return False
        print(f'PASS {name}: {detail}', flush=True)
        return True


class Checks:
    """The checks, in the order they run; each returns what it saw."""

    def __init__(
        self, machine: Machine, report: Report, packages: tuple[str, str]
    ) -> None:
        self.machine = machine
        self.report = report
        self.packages = packages
        self.boots = 0
        self.guest = self.boot()
        self.memories: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    def boot(self) -> Guest:
        self.boots += 1
        return Guest(self.machine, self.boots)

    # Helpers.

    def show(self, prop: str) -> str:
        return self.guest.run(
            ['systemctl', 'show', '-p', prop, '--value', 'jamey']
        ).out.strip()

    def ctl(self, *args: str, user: str | None = None) -> Result:
        prefix = ['runuser', '-u', user, '--'] if user else []
        return self.guest.run([*prefix, JAMEYCTL, *args])

    def api(self, *requests: tuple[str, str, Any]) -> list[tuple[int, Any]]:
        stdin = ''.join(json.dumps(r) + '\n' for r in requests)
        result = self.guest.run(
            ['python3', '-c', API_CLIENT, SOCKET], stdin=stdin, timeout=120
        )
        expect(result.rc == 0, f'the API client failed: {result.text()}')
        return [tuple(json.loads(line)) for line in result.out.splitlines()]

    def remember(self, label: str) -> str:
        [(status, body)] = self.api(
            ('POST', '/memories', {'content': label, 'layer': 'long_term'})
        )
        expect(status == 201, f'storing a memory answered {status}: {body}')
        self.memories[body['id']] = label
        return str(body['id'])

    def recall(self) -> str:
        """Every memory written so far is there, with its text."""
        answers = self.api(*(('GET', f'/memories/{i}', None) for i in self.memories))
        missing = [
            label
            for (status, body), label in zip(
                answers, self.memories.values(), strict=True
            )
            if status != 200 or body['content'] != label
        ]
        expect(not missing, f'memories lost: {missing}')
        count = len(self.memories)
        if count == 1:
            return 'the memory written before is there'
        return f'all {count} memories written before are there'

    def wait_active(self, old_pid: str | None = None) -> float:
        """Wait until jamey is active (under a new main pid); how long it took."""
        start = time.monotonic()
        while time.monotonic() - start < RESTART_TIMEOUT_S:
            state = self.guest.run(
                ['systemctl', 'show', '-p', 'ActiveState,MainPID', 'jamey']
            ).out
            if 'ActiveState=active' in state and f'MainPID={old_pid}\n' not in state:
                return time.monotonic() - start
            time.sleep(0.5)
        raise CheckError(f'jamey not active again within {RESTART_TIMEOUT_S:.0f} s')

    def journal(self, *args: str) -> list[str]:
        return self.guest.run(['journalctl', '--no-pager', *args]).out.splitlines()

    # First boot.

    def readiness(self) -> str:
        """apt installs the package, whose postinst enables and starts jamey."""
        self.guest.wait_up()
        states: list[str] = []
        done: list[Result] = []
        command = f'apt install -y {self.packages[0]} 2>&1'
        starting = threading.Thread(
            target=lambda: done.append(self.guest.sh(command, timeout=600))
        )
        start = time.monotonic()
        starting.start()
        activating_since = None
        while starting.is_alive():
            state = self.show('ActiveState')
            if state == 'activating' and activating_since is None:
                activating_since = time.monotonic()
            if not states or states[-1] != state:
                states.append(state)
            time.sleep(0.2)
        starting.join()
        self.timings['apt install, to ready'] = time.monotonic() - start
        self.timings['boot to ready'] = time.monotonic() - self.guest.started
        expect(bool(done) and done[0].rc == 0, f'{command}: {done and done[0].text()}')
        final = self.show('ActiveState')
        if states[-1] != final:
            states.append(final)
        expect(activating_since is not None, f'never activating: {states}')
        expect(states[-1] == 'active', f'not active after READY=1: {states}')
        assert activating_since is not None
        return (
            f'{" -> ".join(states)}; activating for'
            f' {time.monotonic() - activating_since:.1f} s, then active'
        )

    def package(self) -> str:
        """What the package installed beside the running service."""
        result = self.guest.sh(
            "set -e; dpkg-query -W -f '${Version} ${db:Status-Abbrev}\\n' jamey;"
            ' command -v jameyd; command -v jameyctl; systemctl is-enabled jamey;'
            f' stat -c "%a %U:%G" {CONFIG}; id -u jamey; getent group jamey;'
            ' usermod -aG jamey member'
        )
        expect(result.rc == 0, f'{result.rc}: {result.text()}')
        lines = result.out.splitlines()
        expect(len(lines) == 7, f'answered {lines}')
        status, jameyd, jameyctl, enabled, mode, uid, group = lines
        version, state = status.split()
        expect(state == 'ii', f'dpkg status {state} (ii is installed)')
        expect(
            (jameyd, jameyctl) == ('/usr/bin/jameyd', '/usr/bin/jameyctl'),
            f'on the PATH: {jameyd}, {jameyctl}',
        )
        expect(enabled == 'enabled', f'systemctl is-enabled: {enabled}')
        expect(mode == '640 root:jamey', f'{CONFIG} {mode}')
        expect(0 < int(uid) < 1000, f'jamey is uid {uid}, not a system user')
        return (
            f'jamey {version} installed; jameyd and jameyctl in /usr/bin; enabled;'
            f' {CONFIG} {mode}; system user jamey (uid {uid}), group'
            f' {group.split(":")[0]}'
        )

    def status_text(self) -> str:
        out = self.guest.run(['systemctl', 'status', '--no-pager', 'jamey']).out
        found = re.search(r'Status: "([^"]*)"', out)
        expect(found is not None, 'no Status: line in systemctl status')
        assert found is not None
        expect(
            found[1].startswith(f'serving on {SOCKET}; health ok'),
            f'Status: "{found[1]}"',
        )
        return f'systemctl status shows Status: "{found[1]}"'

    def sandbox(self) -> str:
        pid = self.show('MainPID')
        uid = self.guest.run(['id', '-u', 'jamey']).out.strip()
        status = dict(
            line.split(':\t', 1)
            for line in self.guest.run(['cat', f'/proc/{pid}/status']).out.splitlines()
            if ':\t' in line
        )
        expect(uid != '0', 'jamey is uid 0')
        expect(
            status['Uid'].split() == [uid] * 4, f'Uid: {status["Uid"]} (jamey is {uid})'
        )
        caps = {
            k: status[k] for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')
        }
        expect(all(int(v, 16) == 0 for v in caps.values()), f'capabilities: {caps}')
        expect(status['NoNewPrivs'] == '1', f'NoNewPrivs: {status["NoNewPrivs"]}')
        expect(
            status['Seccomp'] == '2', f'Seccomp: {status["Seccomp"]} (2 is a filter)'
        )
        return (
            f'uid {uid} (jamey), every capability set 0, NoNewPrivs 1, Seccomp 2'
            ' (filter)'
        )

    def writable(self) -> str:
        pid = self.show('MainPID')
        uid = self.guest.run(['id', '-u', 'jamey']).out.strip()
        # As jamey, in jameyd's mount namespace: every directory it may
        # create files in (access(2) counts read-only mounts too).
        found = self.guest.run(
            [
                *('nsenter', '-t', pid, '-m', '-S', uid, '-G', uid, '--'),
                *('find', '/', '(', '-path', '/proc', '-o', '-path', '/sys', ')'),
                *('-prune', '-o', '-type', 'd', '-writable', '-print'),
            ],
            timeout=120,
        ).out.split()
        tops = sorted(d for d in found if not any(d.startswith(f'{o}/') for o in found))
        extra = [d for d in tops if d not in WRITABLE]
        expect(not extra, f'jamey may also write in {extra}')
        expect({'/var/lib/jamey', '/run/jamey'} <= set(tops), f'writable: {tops}')
        return f'jamey may write only in {", ".join(tops)}'

    def socket_access(self) -> str:
        mode = self.guest.run(['stat', '-c', '%a %U:%G', SOCKET]).out.strip()
        expect(mode == '660 jamey:jamey', f'socket {mode}')
        member = self.ctl('status', user='member')
        expect(member.rc == 0, f'member of group jamey: {member.rc} {member.text()}')
        outsider = self.ctl('status', user='outsider')
        expect(outsider.rc == 69, f'outsider: {outsider.rc} {outsider.text()}')
        return (
            f'socket {mode}; a member of group jamey is served, another user'
            f' refused (69: {outsider.text()[:80]})'
        )

    def watchdog(self) -> str:
        self.remember('written before the watchdog stopped jameyd')
        pid = self.show('MainPID')
        stop = self.guest.run(['kill', '-STOP', pid])
        expect(stop.rc == 0, f'kill -STOP {pid}: {stop.text()}')
        took = self.wait_active(pid)
        logged = [
            line
            for line in self.journal('-u', 'jamey', '-o', 'cat')
            if 'Watchdog timeout' in line
        ]
        expect(bool(logged), 'no watchdog timeout in the journal')
        return f'restarted {took:.0f} s after SIGSTOP ({logged[-1]}); {self.recall()}'

    def restart(self) -> str:
        before = int(self.show('NRestarts'))
        self.remember('written before SIGKILL')
        pid = self.show('MainPID')
        kill = self.guest.run(['kill', '-KILL', pid])
        expect(kill.rc == 0, f'kill -KILL {pid}: {kill.text()}')
        took = self.wait_active(pid)
        after = int(self.show('NRestarts'))
        expect(after == before + 1, f'NRestarts {before} -> {after}')
        return (
            f'restarted {took:.1f} s after SIGKILL (NRestarts {after}); {self.recall()}'
        )

    def reload(self, edit: str) -> str:
        """Edit the config file, systemctl reload, wait for jameyd's verdict."""
        events = ('config.reloaded', 'config.reload_failed')
        before = len(self.journal_events(*events))
        result = self.guest.sh(f'{edit} && systemctl reload jamey')
        expect(result.rc == 0, f'systemctl reload: {result.text()}')
        deadline = time.monotonic() + 30
        while len(seen := self.journal_events(*events)) == before:
            expect(time.monotonic() < deadline, 'jameyd logged no reload')
            time.sleep(0.5)
        return seen[-1]

    def journal_events(self, *events: str) -> list[str]:
        lines = self.journal('_SYSTEMD_UNIT=jamey.service', '-o', 'cat')
        return [e for e in map(_event, lines) if e in events]

    def reload_live(self) -> str:
        pid = self.show('MainPID')
        role = 'sed -i \'s/^unix_role = .*/unix_role = "{}"/\' ' + CONFIG
        applied = self.reload(role.format('read'))
        [(refused, _)] = self.api(
            ('POST', '/memories', {'content': 'x', 'layer': 'working'})
        )
        restored = self.reload(role.format('admin'))
        self.remember('written after the reloads')
        expect(applied == restored == 'config.reloaded', f'{applied}, {restored}')
        expect(
            refused == 403, f'a write with api.unix_role = "read" answered {refused}'
        )
        expect(self.show('MainPID') == pid, 'the main pid changed')
        return (
            'api.unix_role = "read" applied by systemctl reload (a write answered'
            ' 403), then "admin" again, same pid'
        )

    def reload_bad(self) -> str:
        pid = self.show('MainPID')
        refused = self.reload(
            f'cp -p {CONFIG} {CONFIG}.good && echo "this is not TOML" >> {CONFIG}'
        )
        [(health, _)] = self.api(('GET', '/health', None))
        restored = self.reload(f'mv {CONFIG}.good {CONFIG}')
        expect(refused == 'config.reload_failed', f'a bad file: {refused}')
        expect(restored == 'config.reloaded', f'the good file again: {restored}')
        expect(self.show('ActiveState') == 'active', 'jamey not active')
        expect(self.show('MainPID') == pid, 'the main pid changed')
        expect(health == 200, f'/health answered {health}')
        return (
            'a file that is not TOML is refused (config.reload_failed), jameyd'
            ' serves on, same pid'
        )

    def credential(self) -> str:
        result = self.guest.sh(
            f'{JAMEYCTL} vault keygen /etc/jamey/vault.key'
            ' && mkdir -p /etc/systemd/system/jamey.service.d'
            ' && printf "[Service]\\nLoadCredential=vault.key:/etc/jamey/vault.key\\n"'
            ' > /etc/systemd/system/jamey.service.d/vault.conf'
            " && sed -i '/^\\[vault\\]/,/^\\[/ s/^key_file = .*/key_file"
            f' = "vault.key"/\' {CONFIG}'
            ' && systemctl daemon-reload && systemctl restart jamey',
            timeout=300,
        )
        expect(result.rc == 0, f'setting the key up: {result.text()}')
        backup = self.ctl('--json', 'vault', 'backup')
        expect(backup.rc == 0, f'vault backup: {backup.rc} {backup.text()}')
        made = json.loads(backup.out)['id']
        listed = self.ctl('--json', 'vault', 'list')
        expect(listed.rc == 0, f'vault list: {listed.rc} {listed.text()}')
        ids = [b['id'] for b in json.loads(listed.out)['backups']]
        expect(made in ids, f'vault list shows {ids}, not {made}')
        mode = self.guest.run(
            ['stat', '-c', '%a %U', '/etc/jamey/vault.key']
        ).out.strip()
        expect(mode == '600 root', f'key file {mode}')
        return (
            f'key file {mode}, LoadCredential=vault.key: backup {made} made and listed'
        )

    def journald(self) -> str:
        entries = [
            json.loads(line)
            for line in self.journal('_SYSTEMD_UNIT=jamey.service', '-o', 'json')
        ]
        wrong = []
        for entry in entries:
            message = entry['MESSAGE']
            if not isinstance(message, str):
                message = bytes(message).decode(errors='replace')
            try:
                line = json.loads(message)
            except ValueError:
                wrong.append(f'not JSON: {message[:100]}')
                continue
            if int(entry['PRIORITY']) != PRIORITIES[line['level']]:
                wrong.append(
                    f'{line["event"]} ({line["level"]}) at priority {entry["PRIORITY"]}'
                )
        expect(bool(entries), 'no lines from jameyd in the journal')
        expect(not wrong, f'{len(wrong)} of {len(entries)} lines: {wrong[:3]}')
        errors = self.journal('-u', 'jamey', '-p', 'err', '-o', 'cat')
        expect(
            any('config.reload_failed' in line for line in errors),
            f'journalctl -p err -u jamey: {errors[-3:]}',
        )
        return (
            f"all {len(entries)} lines of jameyd are JSON, each at its level's"
            ' priority; journalctl -p err -u jamey shows config.reload_failed'
        )

    def clean_stop(self) -> str:
        start = time.monotonic()
        result = self.guest.run(['systemctl', 'stop', 'jamey'], timeout=120)
        took = time.monotonic() - start
        shown = self.guest.run(
            ['systemctl', 'show', '-p', 'Result,ExecMainStatus,ActiveState', 'jamey']
        ).out.split()
        gone = self.guest.run(['test', '-e', SOCKET]).rc != 0
        stopped = any(
            'daemon.stopped' in line
            for line in self.journal('-u', 'jamey', '-o', 'cat', '-n', '10')
        )
        self.guest.run(['systemctl', 'start', 'jamey'], timeout=300)
        expect(result.rc == 0, f'systemctl stop: {result.text()}')
        expect(
            {'Result=success', 'ExecMainStatus=0', 'ActiveState=inactive'}
            <= set(shown),
            f'after stop: {shown}',
        )
        expect(gone, 'the socket is still there')
        expect(stopped, 'no daemon.stopped in the journal')
        return f'stopped in {took:.1f} s, exit 0, Result=success, socket removed'

    # Second boot.

    def reboot(self) -> str:
        self.remember('written before the reboot')
        before = self.guest.wait_up()
        with contextlib.suppress(NoAnswerError):
            self.guest.run(['systemctl', 'reboot'], timeout=5)
        self.guest.wait_exit(180)
        self.guest.kill()
        self.guest = self.boot()
        after = self.guest.wait_up()
        self.wait_active()
        self.timings['boot to ready after the reboot'] = (
            time.monotonic() - self.guest.started
        )
        expect(after != before, 'the same boot id')
        previous = self.journal('-b', '-1', '-u', 'jamey', '-o', 'cat')
        expect(
            any('daemon.stopped' in line for line in previous),
            f'journalctl -b -1 -u jamey ends with {previous[-2:]}',
        )
        return (
            f'journalctl -b -1 -u jamey: {len(previous)} lines, ending with the'
            f' clean stop at shutdown; {self.recall()}'
        )

    # Third boot.

    def hard_kill(self) -> str:
        writes = ''.join(
            json.dumps(
                [
                    'POST',
                    '/memories',
                    {'content': f'acknowledged {n}', 'layer': 'long_term'},
                ]
            )
            + '\n'
            for n in range(ACKNOWLEDGED_WRITES)
        )
        # A file written without fsync just before the kill: whether the
        # kill lost the guest's page cache (it shows the test can lose data).
        result = self.guest.run(
            [
                'sh',
                '-c',
                f'python3 -c "$0" {SOCKET} && echo unsynced > /var/tmp/unsynced',
                API_CLIENT,
            ],
            stdin=writes,
            timeout=300,
        )
        acknowledged = time.monotonic()
        self.guest.process.kill()
        gap_ms = (time.monotonic() - acknowledged) * 1000
        self.guest.kill()
        expect(result.rc == 0, f'the writes failed: {result.text()}')
        for line, n in zip(
            result.out.splitlines(), range(ACKNOWLEDGED_WRITES), strict=True
        ):
            status, body = json.loads(line)
            expect(status == 201, f'write {n} answered {status}')
            self.memories[body['id']] = f'acknowledged {n}'
        self.guest = self.boot()
        self.guest.wait_up()
        self.wait_active()
        self.timings['boot to ready after the kill'] = (
            time.monotonic() - self.guest.started
        )
        control = self.guest.run(['test', '-s', '/var/tmp/unsynced']).rc == 0
        return (
            f'SIGKILL to qemu {gap_ms:.1f} ms after the last of {ACKNOWLEDGED_WRITES}'
            f' acknowledged writes; {self.recall()}; a file written without fsync'
            f' just before is {"still there" if control else "lost"}'
        )

    # The package's life after that.

    def version(self) -> str:
        result = self.guest.run(['dpkg-query', '-W', '-f', '${Version}', 'jamey'])
        return result.out.strip() if result.rc == 0 else '(not installed)'

    def exists(self, path: str) -> bool:
        return self.guest.run(['test', '-e', path]).rc == 0

    def apt(self, *args: str) -> float:
        """Run apt in the guest; how long it took."""
        start = time.monotonic()
        result = self.guest.sh(f'apt {" ".join(args)} 2>&1', timeout=600)
        expect(result.rc == 0, f'apt {" ".join(args)}: {result.text()}')
        return time.monotonic() - start

    def upgrade(self) -> str:
        self.remember('written before the upgrade')
        pid, before = self.show('MainPID'), self.version()
        took = self.apt('install', '-y', self.packages[1])
        self.timings['apt upgrade, to ready'] = took
        after = self.version()
        expect(after != before, f'still version {after}')
        expect(self.show('ActiveState') == 'active', 'jamey not active')
        expect(self.show('MainPID') != pid, 'not restarted: the same main pid')
        expect(
            self.guest.run(['systemctl', 'is-enabled', 'jamey']).out.strip()
            == 'enabled',
            'no longer enabled',
        )
        edited = self.guest.run(['grep', '-qx', 'key_file = "vault.key"', CONFIG])
        expect(edited.rc == 0, f'the edit of {CONFIG} was not kept')
        return (
            f'{before} -> {after} in {took:.0f} s: restarted, still enabled, the'
            f' edited {CONFIG} kept; {self.recall()}'
        )

    def remove(self) -> str:
        self.apt('remove', '-y', 'jamey')
        leftover = self.guest.run(['find', '/opt/jamey', '-type', 'f']).out.split()
        expect(not self.exists('/opt/jamey'), f'left in /opt/jamey: {leftover[:5]}')
        expect(not self.exists('/usr/bin/jameyctl'), 'jameyctl still there')
        expect(self.show('ActiveState') == 'inactive', 'jamey still running')
        expect(not self.exists(SOCKET), 'the socket is still there')
        expect(self.exists('/var/lib/jamey/jamey.db'), 'the database was removed')
        expect(self.exists(CONFIG), f'{CONFIG} was removed')
        return (
            'apt remove: jamey stopped, /opt/jamey and /usr/bin/jameyctl gone, the'
            f' database and {CONFIG} kept'
        )

    def purge(self) -> str:
        self.apt('purge', '-y', 'jamey')
        expect(self.version() == '(not installed)', f'dpkg knows {self.version()}')
        expect(not self.exists('/var/lib/jamey'), '/var/lib/jamey is still there')
        expect(not self.exists(CONFIG), f'{CONFIG} is still there')
        override = self.guest.run(['dpkg-statoverride', '--list', CONFIG])
        expect(override.rc != 0, f'statoverride left: {override.out.strip()}')
        expect(
            self.exists('/etc/jamey/vault.key'), "the operator's vault.key was removed"
        )
        return (
            f'apt purge: /var/lib/jamey, {CONFIG} and its statoverride gone; the'
            " operator's /etc/jamey/vault.key and the user jamey stay"
        )

    def poweroff(self) -> str:
        start = time.monotonic()
        with contextlib.suppress(NoAnswerError):
            self.guest.run(['systemctl', 'poweroff'], timeout=5)
        self.guest.wait_exit(120)
        self.guest.kill()
        return f'systemctl poweroff: qemu exited {time.monotonic() - start:.1f} s later'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--qemu', type=Path, required=True)
    parser.add_argument('--kernel', type=Path, required=True)
    parser.add_argument('--initrd', type=Path, required=True)
    parser.add_argument('--disk', type=Path, required=True)
    parser.add_argument('--workdir', type=Path, required=True)
    parser.add_argument('--accel', choices=('tcg', 'kvm'), default='tcg')
    parser.add_argument('--image', type=int, required=True, help='image build, s')
    parser.add_argument('--image-state', choices=('built', 'cached'), required=True)
    parser.add_argument(
        '--packages', nargs=2, required=True, help="the two builds' paths in the guest"
    )
    parser.add_argument('--wheel', type=int, required=True, help='wheel, s')
    parser.add_argument('--package', type=int, required=True, help='one package, s')
    parser.add_argument('--disk-image', type=int, required=True, help='mkfs, s')
    parser.add_argument('--started', type=int, required=True, help='start, epoch s')
    args = parser.parse_args()
    machine = Machine(
        args.qemu, args.kernel, args.initrd, args.disk, args.workdir, args.accel
    )
    print(
        f'disk cache={CACHE_MODE}: a write the guest sees completed is in the'
        ' host file, so killing qemu loses only what the guest had not written'
        ' to its disk (its page cache); every acknowledged write found after'
        ' the kill was on the disk before jamey acknowledged it.'
        f' Emulation: {machine.accel}.',
        flush=True,
    )
    report = Report()
    checks = Checks(machine, report, tuple(args.packages))
    every = [
        ('readiness', checks.readiness),
        ('package', checks.package),
        ('status', checks.status_text),
        ('sandbox', checks.sandbox),
        ('writable paths', checks.writable),
        ('socket group', checks.socket_access),
        ('watchdog', checks.watchdog),
        ('restart', checks.restart),
        ('reload live', checks.reload_live),
        ('reload bad file', checks.reload_bad),
        ('credential', checks.credential),
        ('journald', checks.journald),
        ('clean stop', checks.clean_stop),
        ('reboot', checks.reboot),
        ('hard kill', checks.hard_kill),
        ('upgrade', checks.upgrade),
        ('remove', checks.remove),
        ('purge', checks.purge),
        ('poweroff', checks.poweroff),
    ]
    try:
        for name, check in every:
            if not report.check(name, check) and name == 'readiness':
                break
    finally:
        if checks.guest.process.poll() is None:
            checks.guest.kill()
    timings = {
        f'image build ({args.image_state})': args.image,
        'wheel': args.wheel,
        'package (scripts/package-deb)': args.package,
        'disk image (mkfs.ext4 -d)': args.disk_image,
        **checks.timings,
        'total': time.time() - args.started,
    }
    for name, seconds in timings.items():
        print(f'TIME {name}: {seconds:.1f} s', flush=True)
    if report.failed:
        print(f'{len(report.failed)} checks failed: {", ".join(report.failed)}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
