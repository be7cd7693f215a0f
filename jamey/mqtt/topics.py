"""Topic names of a device and its fleet, and MQTT filter matching.

Requests arrive on ``<prefix>/<device_id>/<request>`` (this device only) and
on ``<prefix>/fleet/<request>`` through a shared subscription, so the broker
hands each fleet request to one daemon of the group.
"""

from jamey.errors import RefusedError

REQUESTS = ('conscience/evaluate', 'memory/store', 'memory/query')
SHARE_GROUP = 'jamey'
FLEET = 'fleet'
# Reply topics are chosen by the requester; a long one is a mistake or worse.
MAX_TOPIC_CHARS = 512


class Topics:
    """Every topic one device publishes to or subscribes to."""

    def __init__(self, prefix: str, device_id: str) -> None:
        self.prefix = prefix
        self.device = f'{prefix}/{device_id}'
        self.fleet = f'{prefix}/{FLEET}'
        self.status = f'{self.device}/status'
        self.heartbeat = f'{self.device}/heartbeat'
        self.errors = f'{self.device}/errors'

    def subscriptions(self) -> list[str]:
        own = [f'{self.device}/{request}' for request in REQUESTS]
        shared = [
            f'$share/{SHARE_GROUP}/{self.fleet}/{request}' for request in REQUESTS
        ]
        return own + shared

    def request(self, topic: str) -> str | None:
        """Which request a message's topic asks for (None: not a request)."""
        for base in (self.device, self.fleet):
            rest = topic[len(base) + 1 :] if topic.startswith(f'{base}/') else None
            if rest in REQUESTS:
                return rest
        return None

    def refuse_as_reply_topic(self, topic: str) -> None:
        """A requester may not have replies sent to this device's own topics
        (its status, its errors, its requests) nor to any device's request
        topic, the fleet's too: a reply there would speak for this device,
        or come back as a request, round and round.

        Raises:
            RefusedError: ``forbidden`` with reason ``reply_topic_not_allowed``.
        """
        own = topic == self.device or topic.startswith(f'{self.device}/')
        under_prefix = topic.startswith(f'{self.prefix}/')
        _, _, request = topic[len(self.prefix) + 1 :].partition('/')
        if own or (under_prefix and request in REQUESTS):
            raise RefusedError(
                'forbidden',
                'reply_topic_not_allowed',
                "Replies may not go to this device's own topics or to request topics.",
            )


def covers(pattern: str, topic: str) -> bool:
    """Whether an MQTT topic filter (``+`` one level, ``#`` the rest) matches
    ``topic``; a malformed filter (``#`` not last) matches nothing."""
    wanted = pattern.split('/')
    levels = topic.split('/')
    for i, level in enumerate(wanted):
        if level == '#':
            return i == len(wanted) - 1
        if i >= len(levels) or level not in ('+', levels[i]):
            return False
    return len(wanted) == len(levels)


def response_topic(value: str) -> str:
    """A requester's reply topic, checked before anything is published to it:
    a wildcard in a PUBLISH is a protocol error that would cost the
    connection.

    Raises:
        RefusedError: ``bad_request`` with reason ``invalid_response_topic``.
    """
    if (
        not value
        or len(value) > MAX_TOPIC_CHARS
        or any(c in value for c in '+#\x00')
        or value.startswith('$')
    ):
        raise RefusedError(
            'bad_request',
            'invalid_response_topic',
            'The response topic must be a topic name without wildcards.',
        )
    return value
