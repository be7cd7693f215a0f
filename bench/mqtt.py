"""``scripts/bench mqtt``: QoS 1 evaluate round trips through a local broker.

One Mosquitto (TLS 1.3, the test suite's configuration: passwords, an ACL,
``set_tcp_nodelay true``), one requester, and in the same run:
- jamey: a real jameyd answering ``conscience/evaluate`` (token check,
  evaluation, the reply committed to the outbox, published, removed on
  PUBACK), with ``storage.synchronous`` full (the default) and normal;
- bare: a paho client that echoes each payload to the response topic with
  its correlation data, in its message callback (the floor for any
  responder on this broker).
Each with 1 and 8 requests in flight: p50, p99 and round trips per second.
Then the floors under any responder, in the same run: the requester's
own request coming back to it (one pass through the broker, where a round
trip needs two), and a 4 KiB append plus ``fdatasync`` on the disk of the
state directory (what ``synchronous`` full adds to every reply). And the
time from a broker restart to jameyd subscribed again (its new retained
``online`` status, sent right after it subscribes).
"""

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from startup import BIN
from startup import jameyd_env
from startup import scratch
from startup import start_until_ready
from startup import stop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
from mqtt_broker import HOST
from mqtt_broker import PASSWORD
from mqtt_broker import Broker
from mqtt_broker import Sibling
from mqtt_broker import envelope
from mqtt_broker import token

REPLIES = 'replies/bench'
ACTION = {'action': 'I will not hurt them and I will tell the truth'}


def client(broker: Broker, name: str) -> paho.Client:
    mqtt = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f'{name}-{uuid.uuid4().hex[:6]}',
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    mqtt.tls_set(ca_certs=str(broker.pki['ca']))
    mqtt.username_pw_set('tester', PASSWORD)
    mqtt.on_socket_open = lambda c, u, s: s.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    return mqtt


def connect(mqtt: paho.Client, broker: Broker, topic: str) -> None:
    subscribed = threading.Event()
    mqtt.on_subscribe = lambda *a: subscribed.set()
    mqtt.connect(HOST, broker.port)
    mqtt.subscribe(topic, qos=1)
    mqtt.loop_start()
    if not subscribed.wait(10):
        raise SystemExit('no SUBACK')


def bare_responder(broker: Broker) -> paho.Client:
    """Echo each request to its response topic, from the callback."""
    mqtt = client(broker, 'bare')

    def echo(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = message.properties.CorrelationData
        c.publish(
            message.properties.ResponseTopic,
            message.payload,
            qos=1,
            properties=properties,
        )

    mqtt.on_message = echo
    connect(mqtt, broker, 'bare/echo')
    return mqtt


class Requester:
    """Keeps ``in_flight`` requests outstanding; each reply sends the next."""

    def __init__(self, broker: Broker) -> None:
        self.mqtt = client(broker, 'requester')
        self.mqtt.on_message = self._reply
        self.sent: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.topic = ''
        self.remaining = 0
        self.bearer = token(aud='jamey/fleet', permissions=['jamey/#'])
        connect(self.mqtt, broker, REPLIES)

    def _send(self) -> None:
        correlation = uuid.uuid4().bytes
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = REPLIES
        properties.CorrelationData = correlation
        body = envelope(ACTION)
        # A token per request, as mqtt.bind_tokens wants (an HS256 signature).
        bearer = self.bearer.bound(json.loads(body)['message_id'])
        properties.UserProperty = [('authorization', f'Bearer {bearer}')]
        self.sent[correlation] = time.perf_counter()
        self.mqtt.publish(self.topic, body, qos=1, properties=properties)

    def _reply(self, c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        started = self.sent.pop(message.properties.CorrelationData, None)
        if started is None:
            return
        self.latencies.append(time.perf_counter() - started)
        self.remaining -= 1
        if self.remaining >= len(self.sent) + 1:
            self._send()
        elif not self.sent:
            self.done.set()

    def run(self, topic: str, in_flight: int, count: int) -> tuple[float, list[float]]:
        self.topic = topic
        self.latencies = []
        self.remaining = count
        self.done.clear()
        started = time.perf_counter()
        for _ in range(in_flight):
            self._send()
        if not self.done.wait(300):
            raise SystemExit(f'{topic}: {len(self.latencies)} of {count} replies')
        return time.perf_counter() - started, self.latencies


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    requester: Requester, topic: str, in_flight: int, count: int
) -> dict[str, float]:
    requester.run(topic, in_flight, min(count, 200))  # warm-up
    seconds, latencies = requester.run(topic, in_flight, count)
    return {
        'p50': statistics.median(latencies) * 1e3,
        'p99': percentile(latencies, 0.99) * 1e3,
        'rate': count / seconds,
    }


def start_jameyd(broker: Broker, root: Path, synchronous: str) -> Any:
    env = jameyd_env(
        root,
        JAMEY_STORAGE_SYNCHRONOUS=synchronous,
        JAMEY_LOG_LEVEL='warning',
        **broker.jameyd_env('dev-a'),
    )
    _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
    return proc


def wait_online(watcher: Sibling, seen: int, timeout: float = 120.0) -> float:
    """When a live (not retained) ``online`` status came after message ``seen``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in watcher.messages[seen:]:
            if not message.retain and b'"online"' in message.payload:
                return time.perf_counter()
        time.sleep(0.002)
    raise SystemExit('jameyd did not come online')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--count', type=int, default=3000)
    args = parser.parse_args()
    with scratch() as root:
        broker = Broker(root).start()
        try:
            run(broker, root, args.count)
        finally:
            broker.stop()


def run(broker: Broker, root: Path, count: int) -> None:
    bare = bare_responder(broker)
    requester = Requester(broker)
    watcher = Sibling(broker).connect('jamey/dev-a/status')
    # Each jamey row is compared with the bare responder measured beside it.
    results: dict[tuple[int, str, str], dict[str, float]] = {}
    loop = measure(requester, REPLIES, 1, count)  # before the broker restarts
    for synchronous in ('full', 'normal'):
        state = root / synchronous
        state.mkdir()
        seen = len(watcher.messages)
        proc = start_jameyd(broker, state, synchronous)
        try:
            wait_online(watcher, seen)
            for in_flight in (1, 8):
                results[(in_flight, synchronous, 'jamey')] = measure(
                    requester, 'jamey/dev-a/conscience/evaluate', in_flight, count
                )
                results[(in_flight, synchronous, 'bare')] = measure(
                    requester, 'bare/echo', in_flight, count
                )
            if synchronous == 'normal':
                restart = resubscribe_time(broker, watcher)
        finally:
            stop(proc)
    print(f'\nQoS 1 evaluate round trips, {count} per row (TLS 1.3, local Mosquitto)')
    print(
        f'  {"responder":18} {"in flight":>9} {"p50 ms":>8} {"p99 ms":>8} {"per s":>8}'
        f' {"p99 / bare":>10}'
    )
    for (in_flight, synchronous, name), r in sorted(results.items()):
        ratio = r['p99'] / results[(in_flight, synchronous, 'bare')]['p99']
        label = (
            f'{name} ({synchronous})' if name == 'jamey' else f'bare (by {synchronous})'
        )
        print(
            f'  {label:18} {in_flight:9d} {r["p50"]:8.3f} {r["p99"]:8.3f}'
            f' {r["rate"]:8.0f} {ratio:9.2f}x'
        )
    print('  targets: p99 <= 1.5x the bare responder; < 0.5 ms with 1 in flight')
    print('\nfloors in this run, under any responder:')
    print(
        '  a request back to its requester (one pass through the broker):'
        f' p50 {loop["p50"]:.3f} ms  p99 {loop["p99"]:.3f} ms'
    )
    print(f'  a 4 KiB append + fdatasync on the state disk: {fsync_floor(root, count)}')
    print(f'\nbroker restart to resubscribed: {restart:.2f} s (backoff 1 s to 60 s)')
    bare.disconnect()
    requester.mqtt.disconnect()
    watcher.close()


def fsync_floor(root: Path, count: int) -> str:
    """p50 and p99 of a 4 KiB append made durable, on the state's disk."""
    samples = []
    fd = os.open(root / 'fsync-floor', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, bytes(4096))
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return (
        f'p50 {statistics.median(samples) * 1e3:.3f} ms'
        f'  p99 {percentile(samples, 0.99) * 1e3:.3f} ms'
    )


def resubscribe_time(broker: Broker, watcher: Sibling) -> float:
    """Stop the broker for 3 s, start it, time until jameyd is back."""
    broker.stop()
    time.sleep(3)
    seen = len(watcher.messages)
    broker.start()
    restarted = time.perf_counter()
    return wait_online(watcher, seen) - restarted


if __name__ == '__main__':
    main()
