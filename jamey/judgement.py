"""Judging an action for someone: the conscience, told by the soul.

The one place the two meet, so every way a request arrives (API, MQTT,
chat) judges alike: an entity trusted less than ``soul.low_trust`` is judged
with a lower deny weight, and the verdict is recorded as an emotion about it.
Every decision gets a ``decision_id`` and an entry in the audit log, written
in the same transaction as the emotion.
"""

from typing import Any

from jamey import validation
from jamey.audit import AuditLog
from jamey.conscience import Conscience
from jamey.soul import Soul

REQUEST_FIELDS = ('action', 'entity')


def judge_request(
    conscience: Conscience, soul: Soul, audit: AuditLog, principal: str, body: Any
) -> dict[str, Any]:
    """``judge`` for a request document ``{action, entity?}``, checked alike
    whichever way it arrived (HTTP body, MQTT payload).

    Raises:
        InputError: not an object, an unknown field, no action, or what
            ``judge`` refuses.
    """
    body = validation.require_object(body)
    validation.reject_unknown(body, REQUEST_FIELDS)
    validation.require_fields(body, ('action',))
    return judge(conscience, soul, audit, principal, body['action'], body.get('entity'))


def judge(
    conscience: Conscience,
    soul: Soul,
    audit: AuditLog,
    principal: str,
    action: Any,
    entity: Any = None,
) -> dict[str, Any]:
    """The conscience's evaluation, with what it meant for ``entity``.

    Raises:
        InputError: a bad action or entity name, or an unknown entity while
            ``soul.auto_create`` is off.
    """
    if entity is None:
        result = conscience.evaluate(action)
        result['decision_id'] = audit.record(
            principal, result['verdict'], result['rules_version'], result['action']
        )
        return result
    name = validation.entity_name('entity', entity)
    strict = soul.strictness(name, conscience.deny_weight)
    result = conscience.evaluate(
        action, deny_weight=None if strict is None else strict.deny_weight
    )
    with audit.db.transaction():
        emotion, intensity, after = soul.record_verdict(
            name, result['verdict'], result['score'], result['max_score']
        )
        result['decision_id'] = audit.record(
            principal, result['verdict'], result['rules_version'], result['action']
        )
    result['entity'] = name
    result['strictness'] = None if strict is None else strict.as_dict()
    result['emotion'] = {
        'name': emotion.value,
        'emoji': emotion.emoji,
        'intensity': round(intensity, 6),
    }
    result['trust'] = round(after.trust, 6)
    return result
