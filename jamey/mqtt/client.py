"""The connection to the broker, and the work it brings.

Threads: paho's network thread only queues (messages for the workers,
acknowledgements and connection changes for the supervisor); two workers
check and answer requests; the supervisor connects with backoff, restores
subscriptions and the retained ``online`` status on every connect (a
restarted broker forgets them), removes acknowledged outbox rows, sends the
heartbeat and logs in again before the broker JWT expires.

Each connection is a new paho client: what an old one still held in memory
is dropped, and the outbox, the only record of what must go out, is sent
again from its oldest row, so nothing is lost and the order per topic holds.
A request is acknowledged (PUBACK) only after its reply was committed; one
that a crash interrupted is redelivered by the broker and answered then.
"""

import collections
import logging
import queue
import socket
import ssl
import threading
import time
from typing import Any

import apsw
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from jamey import __version__
from jamey.clock import iso_utc
from jamey.errors import InputError
from jamey.errors import MemoryIndexError
from jamey.errors import RefusedError
from jamey.errors import StorageDamagedError
from jamey.mqtt.connection import Backoff
from jamey.mqtt.connection import Login
from jamey.mqtt.envelope import encode
from jamey.mqtt.envelope import error_payload
from jamey.mqtt.envelope import parse_request
from jamey.mqtt.envelope import refusal
from jamey.mqtt.envelope import storage_refusal
from jamey.mqtt.handlers import Handler
from jamey.mqtt.outbox import Outbox
from jamey.mqtt.tokens import Verifier
from jamey.mqtt.topics import REQUESTS
from jamey.mqtt.topics import Topics
from jamey.mqtt.topics import response_topic
from jamey.storage import Database

log = logging.getLogger('jamey.mqtt')
KEEPALIVE_S = 30
# The broker keeps the session (subscriptions, unacknowledged requests) this
# long while jameyd is away, so a restart picks up where it stopped.
SESSION_EXPIRY_S = 3600
# Requests the broker may send before one is acknowledged: bounds the queue.
RECEIVE_MAXIMUM = 64
# QoS 0 requests are not acknowledged, so the receive maximum does not bound
# them: at most this many wait; more are dropped (counted, as QoS 0 allows).
QOS0_WAITING_MAX = 64
WORKERS = 2
TICK_S = 1.0
ACK_BATCH_S = 0.05
CONNECT_TIMEOUT_S = 10.0
FORGET_EVERY_S = 60.0
GOODBYE_TIMEOUT_S = 2.0
CAPABILITIES = list(REQUESTS)


def _no_delay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho never sets TCP_NODELAY: without it every QoS 1 round trip waits
    on Nagle's algorithm against delayed ACKs (tens of milliseconds)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _reply_properties(correlation: bytes | None) -> Properties | None:
    """A reply's PUBLISH properties: the request's correlation data, if any."""
    if correlation is None:
        return None
    properties = _properties(PacketTypes.PUBLISH)
    properties.CorrelationData = correlation
    return properties


def _authorization(properties: Any) -> str | None:
    values = [
        v for k, v in getattr(properties, 'UserProperty', []) if k == 'authorization'
    ]
    if len(values) > 1:
        raise RefusedError('invalid_token', 'malformed', 'Send one authorization.')
    return values[0] if values else None


class Bridge:
    """jameyd on the broker: one device, its requests, its outbox."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        topics: Topics,
        tls: ssl.SSLContext,
        login: Login,
        verifier: Verifier,
        db: Database,
        handlers: dict[str, Handler],
        heartbeat_s: float,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.topics = topics
        self.tls = tls
        self.login = login
        self.verifier = verifier
        self.db = db
        self.outbox = Outbox(db)
        self.handlers = handlers
        self.heartbeat_s = heartbeat_s
        self.backoff = Backoff()
        self._started = time.monotonic()
        self._work: queue.Queue[tuple[paho.Client, paho.MQTTMessage] | None] = (
            queue.Queue()
        )
        self._qos0_waiting = threading.Semaphore(QOS0_WAITING_MAX)
        self._wake = threading.Condition()
        self._events: collections.deque[tuple[Any, ...]] = collections.deque()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        # The connection workers publish on, and what it was handed.
        self._publish_lock = threading.Lock()
        self._client: paho.Client | None = None
        self._generation = 0
        self._inflight: dict[int, int] = {}
        self._sent = 0
        self._refresh_at: float | None = None
        self._next_heartbeat = 0.0
        self._next_forget = 0.0
        # What stats() reports.
        self.state = 'connecting'
        self.last_connect: str | None = None
        self.subscribed_at: str | None = None
        self.connects = 0
        self.answered = 0
        self.redelivered = 0
        self.refused: collections.Counter[str] = collections.Counter()

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        names = ['jamey-mqtt'] + [f'jamey-mqtt-worker-{i}' for i in range(WORKERS)]
        targets = [self._supervise] + [self._serve_requests] * WORKERS
        for name, target in zip(names, targets, strict=True):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_s: float) -> None:
        """Finish the requests in hand, wait (up to ``grace_s``) until the
        broker acknowledged the outbox, say ``offline``, disconnect. What is
        left stays in the outbox for the next start."""
        deadline = time.monotonic() + grace_s
        workers = self._threads[1:]
        for _ in workers:
            self._work.put(None)
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        while self.connected and time.monotonic() < deadline:
            if self.outbox.depth()[0] == 0:
                break
            time.sleep(0.02)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._threads:
            self._threads[0].join(CONNECT_TIMEOUT_S + GOODBYE_TIMEOUT_S)
        self._threads = []

    @property
    def connected(self) -> bool:
        return self.state == 'connected'

    @property
    def reconnects(self) -> int:
        """Connections to the broker after the first."""
        return max(0, self.connects - 1)

    def stats(self) -> dict[str, Any]:
        """Connection and outbox figures for health checks and metrics."""
        depth, age = self.outbox.depth()
        return {
            'state': self.state,
            'broker': f'{self.host}:{self.port}',
            'last_connect': self.last_connect,
            'subscribed_at': self.subscribed_at,
            'reconnects': self.reconnects,
            'outbox_depth': depth,
            'outbox_oldest_s': age,
            'answered': self.answered,
            'redelivered': self.redelivered,
            'refused': dict(self.refused),
        }

    # -- the supervisor --------------------------------------------------

    def _event(self, *event: Any) -> None:
        """Queue an event for the supervisor. Only the first of a run of
        acknowledgements wakes it: it removes them from the outbox in
        batches (see _take_events)."""
        with self._wake:
            if event[0] != 'ack' or not self._events:
                self._wake.notify_all()
            self._events.append(event)

    def _supervise(self) -> None:
        attempt = 0
        while not self._stopping:
            client = self._connect()
            accepted = client is not None and self._serve_connection(client)
            if client is not None:
                client.disconnect()
                client.loop_stop()
                self._late_acks()
            if accepted:
                attempt = 0
            planned = (
                self._refresh_at is not None and time.monotonic() >= self._refresh_at
            )
            if not self._stopping and not (accepted and planned):
                self._sleep(self.backoff.delay(attempt))
                attempt += 1

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._wake:
            while not self._stopping and (left := deadline - time.monotonic()) > 0:
                self._wake.wait(left)

    def _connect(self) -> paho.Client | None:
        self._generation += 1
        generation = self._generation
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        client.tls_set_context(self.tls)
        username, password, self._refresh_at = self.login.credentials()
        client.username_pw_set(username, password)
        client.will_set(self.topics.status, self._status('offline'), qos=1, retain=True)
        client.manual_ack_set(True)
        client.on_socket_open = _no_delay
        client.on_connect = lambda c, u, f, rc, p: self._event(
            'connected', generation, rc
        )
        client.on_disconnect = lambda c, u, f, rc, p: self._event('gone', generation)
        client.on_publish = lambda c, u, mid, rc, p: self._event(
            'ack', generation, mid, rc
        )
        client.on_subscribe = lambda c, u, mid, rcs, p: self._event(
            'subscribed', generation, rcs
        )
        client.on_message = self._receive
        properties = _properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            client.connect(
                self.host,
                self.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=properties,
            )
        except (OSError, ValueError) as exc:
            self._connect_failed(str(exc))
            return None
        client.loop_start()
        return client

    def _connect_failed(self, error: str) -> None:
        self.state = 'disconnected'
        log.warning(
            'mqtt.connect_failed',
            extra={'broker': f'{self.host}:{self.port}', 'error': error},
        )

    def _serve_connection(self, client: paho.Client) -> bool:
        """Handle one connection's events until it ends; True if the broker
        accepted it."""
        generation = self._generation
        opened = time.monotonic()
        accepted = False
        while True:
            for kind, event_generation, *rest in self._take_events():
                if event_generation != generation:
                    continue
                if kind == 'gone':
                    if not accepted:
                        # TLS 1.3 refuses a client certificate only after
                        # the handshake: the first read finds it closed.
                        self._connect_failed('closed before the broker accepted it')
                    self._disconnected()
                    return accepted
                if kind == 'subscribed':
                    self.subscribed_at = iso_utc(time.time())
                elif kind == 'connected':
                    accepted = self._connected(client, rest[0])
                    if not accepted:
                        return False
            if self._ended(client, accepted, opened):
                self._disconnected()
                return accepted
            if accepted:
                self._tick(client)

    def _take_events(self) -> list[tuple[Any, ...]]:
        """Wait for events (at most a tick), and for ACK_BATCH_S more
        while only acknowledgements came; they are applied, the others
        returned. One removal per batch instead of one commit per PUBACK,
        which would contend with the workers for the write lock."""
        with self._wake:
            if not self._stopping and not self._events:
                self._wake.wait(TICK_S)
            only_acks = all(e[0] == 'ack' for e in self._events)
            if not self._stopping and self._events and only_acks:
                self._wake.wait(ACK_BATCH_S)  # cut short by any other event
            events = list(self._events)
            self._events.clear()
        acks = [e for e in events if e[0] == 'ack']
        if acks:
            self._acknowledged(acks)
        return [e for e in events if e[0] != 'ack']

    def _ended(self, client: paho.Client, accepted: bool, opened: float) -> bool:
        """Whether to leave this connection: stopping, a broker that never
        answered, or a broker JWT due for renewal."""
        if self._stopping:
            if accepted:
                self._goodbye(client)
            return True
        if not accepted:
            if time.monotonic() - opened <= CONNECT_TIMEOUT_S:
                return False
            self._connect_failed('the broker did not answer the CONNECT')
            return True
        if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
            log.info('mqtt.token_refresh')
            return True
        return False

    def _connected(self, client: paho.Client, reason: ReasonCode) -> bool:
        if reason.is_failure:
            self.state = 'disconnected'
            log.error('mqtt.login_refused', extra={'reason': str(reason)})
            return False
        self.connects += 1
        self.last_connect = iso_utc(time.time())
        options = SubscribeOptions(qos=1)
        client.subscribe([(t, options) for t in self.topics.subscriptions()])
        client.publish(self.topics.status, self._status('online'), qos=1, retain=True)
        with self._publish_lock:
            self._client = client
            self._inflight = {}
            self._sent = 0
            self.state = 'connected'
        log.info(
            'mqtt.connected',
            extra={
                'broker': f'{self.host}:{self.port}',
                'reconnects': self.connects - 1,
            },
        )
        self._flush()
        return True

    def _disconnected(self) -> None:
        with self._publish_lock:
            if self._client is not None and not self._stopping:
                log.warning('mqtt.disconnected')
            self._client = None
            self.state = 'stopped' if self._stopping else 'disconnected'

    def _late_acks(self) -> None:
        """Acknowledgements that came after the connection was given up:
        their rows must not be sent again."""
        with self._wake:
            acks = [e for e in self._events if e[0] == 'ack']
            self._events.clear()
        if acks:
            self._acknowledged(acks)

    def _acknowledged(self, acks: list[tuple[Any, ...]]) -> None:
        """Remove what the broker acknowledged from the outbox. A message it
        refused (reason >= 0x80, e.g. not authorised) would be refused
        again: it leaves too, logged."""
        done = []
        with self._publish_lock:
            for _, generation, mid, reason in acks:
                if generation != self._generation:
                    continue
                row = self._inflight.pop(mid, None)
                if row is None:
                    continue
                done.append(row)
                if reason.is_failure:
                    self.refused['broker/' + reason.getName().replace(' ', '_')] += 1
                    log.error('mqtt.publish_refused', extra={'reason': str(reason)})
        if done:
            self.outbox.remove(done)

    def _tick(self, client: paho.Client) -> None:
        now = time.monotonic()
        if self.heartbeat_s and now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_s
            beat = {'uptime_s': round(now - self._started, 3)}
            client.publish(self.topics.heartbeat, encode(beat, self.client_id, None))
        if now >= self._next_forget:
            self._next_forget = now + FORGET_EVERY_S
            self.outbox.forget_answered()

    def _goodbye(self, client: paho.Client) -> None:
        """``offline`` (retained) before a clean disconnect: the broker sends
        the Last Will only when a connection is lost."""
        info = client.publish(
            self.topics.status, self._status('offline'), qos=1, retain=True
        )
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            info.wait_for_publish(GOODBYE_TIMEOUT_S)

    def _status(self, status: str) -> bytes:
        document: dict[str, Any] = {'status': status, 'version': __version__}
        if status == 'online':
            document['capabilities'] = CAPABILITIES
        return encode(document, self.client_id, None)

    # -- the outbox ------------------------------------------------------

    def _flush(self) -> None:
        """Hand every outbox row not yet sent on this connection to paho, in
        order; rows stay until the broker acknowledges them."""
        with self._publish_lock:
            client = self._client
            while client is not None:
                rows = self.outbox.after(self._sent)
                if not rows:
                    return
                for row in rows:
                    info = client.publish(
                        row.topic,
                        row.payload,
                        qos=1,
                        properties=_reply_properties(row.correlation),
                    )
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return  # gone; the next connection sends it again
                    self._inflight[info.mid] = row.id
                    self._sent = row.id

    # -- requests --------------------------------------------------------

    def _receive(
        self, client: paho.Client, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        if message.qos == 0 and not self._qos0_waiting.acquire(blocking=False):
            self.refused['overloaded/qos0_dropped'] += 1
            return
        self._work.put((client, message))

    def _serve_requests(self) -> None:
        while (item := self._work.get()) is not None:
            client, message = item
            if message.qos == 0:
                self._qos0_waiting.release()
            try:
                self._handle(message)
            except Exception:
                # A worker outlives any one message, and the message is
                # acknowledged all the same: one that always fails would
                # otherwise come back on every connection. Nothing was
                # remembered, so the requester's retry is applied.
                self.refused['internal_error/failed'] += 1
                log.exception('mqtt.request_failed')
            if message.qos > 0:
                client.ack(message.mid, message.qos)

    def _handle(self, message: paho.MQTTMessage) -> None:
        kind = self.topics.request(message.topic)
        if kind is None:
            return
        properties = message.properties
        correlation = getattr(properties, 'CorrelationData', None)
        reply_to: str | None = None
        request_id: str | None = None
        try:
            reply_to = self._reply_topic(properties)
            if message.retain:
                # A retained request would be replayed at every subscribe.
                raise RefusedError(
                    'bad_request', 'retained', 'Requests must not be retained.'
                )
            claims = self.verifier.claims(_authorization(properties), message.topic)
            request = parse_request(message.payload)
            request_id = request.message_id
            self.verifier.check_bound(claims, request_id)
            self._apply(
                kind, request.payload, request_id, claims, reply_to, correlation
            )
        except RefusedError as refused:
            self._refuse(refused, request_id, reply_to, correlation, message.topic)
        except MemoryIndexError:
            unavailable = RefusedError(
                'index_unavailable',
                'unavailable',
                'The memory index cannot answer now (its health check,'
                ' memory_index, says why); memories are kept. Try again later.',
            )
            self._refuse(unavailable, request_id, reply_to, correlation, message.topic)
        except (apsw.Error, StorageDamagedError) as exc:
            failed = storage_refusal(exc)
            if failed is None:
                raise
            # The outbox is in the database that just failed: this reply
            # goes out at once, and is not kept.
            self._refuse(
                failed, request_id, reply_to, correlation, message.topic, keep=False
            )

    def _reply_topic(self, properties: Any) -> str | None:
        value = getattr(properties, 'ResponseTopic', None)
        if value is None:
            return None
        topic = response_topic(value)
        self.topics.refuse_as_reply_topic(topic)
        return topic

    def _apply(
        self,
        kind: str,
        payload: dict[str, Any],
        request_id: str,
        claims: dict[str, Any],
        reply_to: str | None,
        correlation: bytes | None,
    ) -> None:
        """Apply a request and queue its reply in one transaction; a request
        seen before gets the reply it got then."""
        subject = str(claims.get('sub', ''))
        try:
            with self.db.transaction():
                reply = self.outbox.answered(subject, request_id)
                if reply is None:
                    result = self.handlers[kind](payload, f'mqtt:{subject}')
                    reply = encode(result, self.client_id, request_id)
                    self.outbox.remember(subject, request_id, reply)
                    self.answered += 1
                else:
                    self.redelivered += 1
                if reply_to is not None:
                    self.outbox.add(reply_to, reply, correlation)
        except InputError as exc:
            raise refusal(exc) from None
        self._flush()

    def _refuse(
        self,
        refused: RefusedError,
        request_id: str | None,
        reply_to: str | None,
        correlation: bytes | None,
        topic: str,
        keep: bool = True,
    ) -> None:
        """Nothing was executed: say why to the requester (or on ``errors``
        when there is no valid reply topic), and count it. A reply is kept
        in the outbox unless ``keep`` is false (the database failed)."""
        self.refused[f'{refused.error}/{refused.reason}'] += 1
        log.warning(
            'mqtt.request_refused',
            extra={'error': refused.error, 'reason': refused.reason, 'topic': topic},
        )
        reply = encode(error_payload(refused), self.client_id, request_id)
        if reply_to is not None and keep:
            self.outbox.add(reply_to, reply, correlation)
            self._flush()
            return
        with self._publish_lock:
            client = self._client
        if client is None:
            return
        if reply_to is None:
            client.publish(self.topics.errors, reply)
            return
        client.publish(
            reply_to, reply, qos=1, properties=_reply_properties(correlation)
        )
