"""Chat: a conversation guarded by the conscience and kept in memory.

A session is its working memories: each user message is stored in the
``working`` layer tagged with the session and its turn (the model's reply
beside it), so the conversation survives a restart, expires with the working
layer, and ends when those memories are forgotten.

A message is judged twice without side effects, alone and as the
*conversation*: the messages of the session's last ``chat.context_turns`` - 1
turns that were not refused, oldest first, one per line, this one last. A
phrase split across turns ("blow" / "up the car") matches only in the
conversation; words of earlier turns that affirm a rule, or a negator at the
end of one, could hide a violation in this message, which only the message
alone shows. Whichever view gives the stricter verdict is then judged for
real (``jamey.judgement.judge``: audited, and an emotion about the entity),
so the audit log holds the text that decided.

Refused turns stay in memory as a record but never join the conversation
again, or one refusal would refuse every later message. The model's reply
is judged without an entity (it is Jamey's speech, not the entity's): a
denied reply is withheld, from the answer (its judgement says why, not
what), from memory and from the log. When the model fails nothing is
stored; the message's judgement stays in the audit log.
"""

import re
import time
from typing import Any
from typing import NamedTuple

from jamey import validation
from jamey.audit import AuditLog
from jamey.conscience import MAX_ACTION_CHARS
from jamey.conscience import Conscience
from jamey.conscience import broken_rules
from jamey.errors import InputError
from jamey.ids import new_ids
from jamey.judgement import judge
from jamey.memory import MAX_LIMIT
from jamey.memory import Found
from jamey.memory import Memory
from jamey.memory import MemoryStore
from jamey.memory import search_results
from jamey.model import ModelBackend
from jamey.soul import Soul

MAX_MESSAGE_CHARS = 4000
SESSION = re.compile('[A-Za-z0-9][A-Za-z0-9._-]{0,63}')
FIELDS = ('message', 'entity', 'session')
OUTCOMES = ('answered', 'refused', 'withheld', 'no_model')
# What the model sees of each recalled memory: enough to use, not a flood.
RECALL_CHARS = 1000
# Time kept after the model's deadline to judge and store its reply.
RESERVE_S = 0.5
_RANK = {'allow': 0, 'review': 1, 'deny': 2}
_WORKING = 'working'
_SESSION_KEY = 'session'
_MOST_TAGGED = 10_000
_WORD = re.compile(r'\w+')
# Words of a message searched for at most (a long message is not a query).
RECALL_WORDS = 32


class ChatSettings(NamedTuple):
    context_turns: int = 4
    recall_limit: int = 5
    recall_context: int = 1
    system_prompt: str = 'You are Jamey, a careful guardian.'


class Turn(NamedTuple):
    """What the session said before: a message and the reply it got."""

    number: int
    message: str
    verdict: str
    reply: str | None


class Request(NamedTuple):
    message: str
    entity: str | None
    session: str


def check_session(value: Any) -> str:
    if not isinstance(value, str) or not SESSION.fullmatch(value):
        raise InputError(
            'session',
            'invalid_session',
            f'session must match {SESSION.pattern} (letters, digits, . _ -).',
        )
    return value


def _request(body: Any) -> Request:
    body = validation.require_object(body)
    validation.reject_unknown(body, FIELDS)
    if 'message' not in body:
        raise InputError('message', 'required', 'message is required.')
    message = validation.text('message', body['message'], MAX_MESSAGE_CHARS)
    entity = None
    if body.get('entity') is not None:
        entity = validation.entity_name('entity', body['entity'])
    session = body.get('session')
    if session is None:
        session = new_ids(1, int(time.time() * 1000))[0]
    return Request(message, entity, check_session(session))


def _turns(memories: list[Memory]) -> list[Turn]:
    """A session's working memories as turns, oldest first."""
    messages: dict[int, Memory] = {}
    replies: dict[int, str] = {}
    for memory in memories:
        meta = memory.metadata or {}
        number = meta.get('turn')
        if not isinstance(number, int):
            continue
        if meta.get('chat') == 'reply':
            replies[number] = memory.content
        elif meta.get('chat') == 'message':
            messages[number] = memory
    return [
        Turn(n, m.content, str((m.metadata or {}).get('verdict')), replies.get(n))
        for n, m in sorted(messages.items())
    ]


def conversation(earlier: list[Turn], message: str, turns: int) -> tuple[str, int]:
    """The text judged as the conversation, and how many turns it holds.

    Of the session's last ``turns`` - 1 turns, those not refused, and this
    message; the oldest dropped first while it is longer than the conscience
    accepts.
    """
    window = earlier[max(0, len(earlier) - turns + 1) :]
    lines = [t.message for t in window if t.verdict != 'deny'] + [message]
    while len(lines) > 1 and sum(map(len, lines)) + len(lines) - 1 > MAX_ACTION_CHARS:
        lines.pop(0)
    return '\n'.join(lines), len(lines)


def recall_query(message: str) -> str:
    """The message's first distinct words, ranked as any of them (the
    index's default), in lower case so no word is read as an operator."""
    words = dict.fromkeys(w.casefold() for w in _WORD.findall(message))
    return ' '.join(list(words)[:RECALL_WORDS])


def _refusal(evaluation: dict[str, Any], what: str) -> str:
    broken = ', '.join(broken_rules(evaluation)) or 'the rules'
    decision = evaluation['decision_id']
    return f'{what} breaks {broken} (verdict deny, decision {decision}).'


class Chat:
    """The conversation: judge, recall, ask the model, judge, remember."""

    def __init__(
        self,
        conscience: Conscience,
        soul: Soul,
        audit: AuditLog,
        memories: MemoryStore,
        backend: ModelBackend | None,
        settings: ChatSettings,
    ) -> None:
        self.conscience = conscience
        self.soul = soul
        self.audit = audit
        self.memories = memories
        self.backend = backend
        self.settings = settings

    def say(self, principal: str, body: Any, deadline: float) -> dict[str, Any]:
        """One turn of ``{message, entity?, session?}``; see the module.

        Raises:
            InputError: a bad field.
            ModelError: the model failed; nothing was stored.
        """
        req = _request(body)
        # Each turn is one or two working memories: enough for the window.
        earlier = _turns(self._session(req.session, 2 * self.settings.context_turns))
        number = earlier[-1].number + 1 if earlier else 1
        judged = self._judge(principal, req, earlier)
        evaluation = judged['evaluation']
        result: dict[str, Any] = {
            'session': req.session,
            'turn': number,
            'entity': req.entity,
            'judged': judged,
            'reply_judgement': None,
            'recalled': [],
            'model': None if self.backend is None else self.backend.model,
            'reply': None,
        }
        explanation: str | None
        if evaluation['verdict'] == 'deny':
            outcome = 'refused'
            explanation = 'Refused: ' + _refusal(evaluation, 'the message')
        else:
            recalled = self._recall(req)
            result['recalled'] = search_results(recalled)['memories']
            outcome, explanation = self._answer(
                principal, req, earlier, recalled, deadline, result
            )
        result['outcome'] = outcome
        result['explanation'] = explanation
        result['stored'] = self._remember(req, number, evaluation, result)
        return result

    def _session(self, session: str, limit: int) -> list[Memory]:
        return self.memories.tagged(_WORKING, _SESSION_KEY, session, limit)

    def _judge(
        self, principal: str, req: Request, earlier: list[Turn]
    ) -> dict[str, Any]:
        context, turns = conversation(earlier, req.message, self.settings.context_turns)
        scope, text = 'message', req.message
        if turns > 1 and self._stricter(context, req):
            scope, text = 'conversation', context
        evaluation = judge(
            self.conscience, self.soul, self.audit, principal, text, req.entity
        )
        return {'scope': scope, 'turns': turns, 'evaluation': evaluation}

    def _stricter(self, context: str, req: Request) -> bool:
        """Whether the conversation judges worse than the message alone."""
        deny_weight = None
        if req.entity is not None:
            strict = self.soul.strictness(req.entity, self.conscience.deny_weight)
            deny_weight = None if strict is None else strict.deny_weight
        alone, together = (
            self.conscience.evaluate(text, deny_weight=deny_weight)
            for text in (req.message, context)
        )
        return _RANK[together['verdict']] > _RANK[alone['verdict']]

    def _recall(self, req: Request) -> list[Found]:
        """The entity's most relevant memories first, then anyone's, each with
        the memories stored next to it; never this session's own (the model
        sees the session as the dialogue)."""
        want = self.settings.recall_limit
        query = recall_query(req.message)
        if want == 0 or not query:
            return []
        fetch = min(MAX_LIMIT, want + 4 * self.settings.context_turns)
        scopes = [None] if req.entity is None else [req.entity, None]
        found: list[tuple[Memory, float | None]] = []
        seen: set[str] = set()
        for entity in scopes:
            for memory, score in self.memories.search(
                query, entity=entity, limit=fetch
            ):
                meta = memory.metadata or {}
                if memory.id in seen or meta.get(_SESSION_KEY) == req.session:
                    continue
                seen.add(memory.id)
                found.append((memory, score))
                if len(found) == want:
                    return self._with_context(found, req)
        return self._with_context(found, req)

    def _with_context(
        self, hits: list[tuple[Memory, float | None]], req: Request
    ) -> list[Found]:
        return [
            f
            for f in self.memories.with_context(hits, self.settings.recall_context)
            if (f.memory.metadata or {}).get(_SESSION_KEY) != req.session
        ]

    def _answer(
        self,
        principal: str,
        req: Request,
        earlier: list[Turn],
        recalled: list[Found],
        deadline: float,
        result: dict[str, Any],
    ) -> tuple[str, str | None]:
        if self.backend is None:
            return 'no_model', (
                'No model is configured (llm.base_url): the message was judged'
                ' and memories recalled, but nobody can answer.'
            )
        reply = self.backend.complete(
            self._prompt(req, earlier, recalled), deadline - RESERVE_S
        )
        verdict = judge(self.conscience, self.soul, self.audit, principal, reply)
        if verdict['verdict'] == 'deny':
            # Withheld from every field: the judgement keeps why (verdict,
            # rules, where), never the text.
            result['reply_judgement'] = {**verdict, 'action': None}
            return 'withheld', 'The reply was withheld: ' + _refusal(verdict, 'it')
        result['reply_judgement'] = verdict
        result['reply'] = reply
        return 'answered', None

    def _prompt(
        self,
        req: Request,
        earlier: list[Turn],
        recalled: list[Found],
    ) -> list[dict[str, str]]:
        system = self.settings.system_prompt
        if req.entity is not None:
            system += f'\nYou are talking with {req.entity}.'
        if recalled:
            system += '\nWhat you remember that may be relevant:\n' + '\n'.join(
                f'- {f.memory.content[:RECALL_CHARS]}' for f in recalled
            )
        messages = [{'role': 'system', 'content': system}]
        answered = [t for t in earlier if t.reply is not None]
        keep = self.settings.context_turns - 1
        for turn in answered[max(0, len(answered) - keep) :]:
            messages.append({'role': 'user', 'content': turn.message})
            messages.append({'role': 'assistant', 'content': str(turn.reply)})
        messages.append({'role': 'user', 'content': req.message})
        return messages

    def _remember(
        self,
        req: Request,
        number: int,
        evaluation: dict[str, Any],
        result: dict[str, Any],
    ) -> list[dict[str, str]]:
        """The turn in short_term, the conversation in episodic, the session
        in working; one transaction, linked to the entity."""
        tags = {_SESSION_KEY: req.session, 'turn': number}
        said = result['reply'] or f'({result["outcome"].replace("_", " ")})'
        who = req.entity or 'someone'
        exchange = f'{who}: {req.message}\nJamey: {said}'
        verdict = evaluation['verdict']
        bodies: list[dict[str, Any]] = [
            {
                'layer': _WORKING,
                'content': req.message,
                'metadata': {**tags, 'chat': 'message', 'verdict': verdict},
            },
            {
                'layer': 'short_term',
                'content': exchange,
                'metadata': {**tags, 'chat': 'turn', 'verdict': verdict},
            },
            {
                'layer': 'episodic',
                'content': f'Conversation {req.session}, turn {number}:\n{exchange}',
                'metadata': {
                    **tags,
                    'chat': 'conversation',
                    'decision_id': evaluation['decision_id'],
                },
            },
        ]
        if result['reply'] is not None:
            bodies.append(
                {
                    'layer': _WORKING,
                    'content': result['reply'],
                    'metadata': {**tags, 'chat': 'reply'},
                }
            )
        for body in bodies:
            if req.entity is not None:
                body['entity'] = req.entity
        stored, _ = self.memories.store_many(bodies)
        return [{'id': m.id, 'layer': m.layer} for m in stored]

    def end(self, session: Any) -> int:
        """Forget a session's working memories; how many were forgotten.

        The turn and the conversation stay in short_term and episodic.
        """
        name = check_session(session)
        ids = [m.id for m in self._session(name, _MOST_TAGGED)]
        return self.memories.forget_many(ids)
