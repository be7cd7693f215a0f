"""``/evaluate`` and ``/rules``: thin adapters over jamey.conscience."""

from typing import Any
from typing import ClassVar

import falcon

from jamey import conscience
from jamey import validation
from jamey.api.body import read_json
from jamey.api.openapi import json_response
from jamey.api.openapi import ref
from jamey.api.openapi import text
from jamey.audit import AuditLog
from jamey.conscience import Conscience
from jamey.judgement import judge_request
from jamey.soul import Soul

_JSON = 'application/json'


_PHRASES = {
    'type': 'array',
    'maxItems': conscience.MAX_PHRASES,
    'items': text(conscience.MAX_PHRASE_CHARS),
}
_EXAMPLES = {
    'type': 'array',
    'maxItems': conscience.MAX_EXAMPLES,
    'items': text(conscience.MAX_EXAMPLE_CHARS),
}
_NEAREST = {
    'oneOf': [
        {'type': 'null'},
        {
            'type': 'object',
            'required': ['text', 'similarity'],
            'properties': {
                'text': {'type': 'string'},
                'similarity': {'type': 'number', 'minimum': -1, 'maximum': 1},
            },
        },
    ]
}
_RULE_FIELDS: dict[str, Any] = {
    'name': {'type': 'string', 'pattern': f'^{validation.SLUG.pattern}$'},
    'description': text(conscience.MAX_DESCRIPTION_CHARS),
    'weight': {
        'type': 'number',
        'exclusiveMinimum': 0,
        'maximum': conscience.MAX_WEIGHT,
    },
    'violations': _PHRASES,
    'affirmations': _PHRASES,
    'examples': _EXAMPLES,
    'counterexamples': _EXAMPLES,
    'enabled': {'type': 'boolean'},
}
SCHEMAS: dict[str, Any] = {
    'EvaluateRequest': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['action'],
        'properties': {
            'action': text(conscience.MAX_ACTION_CHARS),
            'entity': text(validation.MAX_ENTITY_CHARS),
        },
    },
    'Finding': {
        'type': 'object',
        'required': [
            'rule',
            'polarity',
            'phrase',
            'start',
            'end',
            'negated',
            'overruled',
        ],
        'properties': {
            'rule': {'type': 'string'},
            'polarity': {'type': 'string', 'enum': ['violation', 'affirmation']},
            'phrase': {'type': 'string'},
            'start': {'type': 'integer', 'minimum': 0},
            'end': {'type': 'integer', 'minimum': 0},
            'negated': {'type': 'boolean'},
            'overruled': {
                'type': 'boolean',
                'description': "a violation its rule's nearest counterexample,"
                ' or the guard model, cleared',
            },
        },
    },
    'Meaning': {
        'type': 'object',
        'required': ['rule', 'outcome', 'strength', 'example', 'counterexample'],
        'properties': {
            'rule': {'type': 'string'},
            'outcome': {'type': 'string', 'enum': ['violated', 'cleared', 'unsure']},
            'strength': {'type': 'number', 'minimum': 0, 'maximum': 1},
            'example': _NEAREST,
            'counterexample': _NEAREST,
        },
    },
    'GuardRuling': {
        'type': 'object',
        'required': ['outcome', 'latency_ms'],
        'description': 'the guard model, where it was asked',
        'properties': {
            'outcome': {'type': 'string', 'enum': ['answered', 'failed']},
            'violated': {
                'type': 'array',
                'items': {'type': 'string'},
                'description': 'the rules it ruled violated (answered)',
            },
            'error': {'type': 'string', 'description': 'why it failed (failed)'},
            'latency_ms': {'type': 'number', 'minimum': 0},
        },
    },
    'Evaluation': {
        'type': 'object',
        'required': [
            'action',
            'score',
            'verdict',
            'findings',
            'meaning',
            'guard',
            'layer',
            'rules_version',
            'decision_id',
        ],
        'properties': {
            'action': {'type': 'string'},
            'decision_id': {'type': 'string', 'description': 'its entry in /audit'},
            'entity': {'type': 'string'},
            'score': {'type': 'number'},
            'max_score': {'type': 'number', 'minimum': 0},
            'verdict': {'type': 'string', 'enum': ['allow', 'review', 'deny']},
            'findings': {'type': 'array', 'items': ref('Finding')},
            'meaning': {'type': 'array', 'items': ref('Meaning')},
            'guard': {'oneOf': [{'type': 'null'}, ref('GuardRuling')]},
            'layer': {
                'type': 'string',
                'enum': [
                    conscience.LAYER_PHRASES,
                    conscience.LAYER_EXAMPLES,
                    conscience.LAYER_GUARD,
                ],
                'description': 'the layer that decided the verdict',
            },
            'rules_version': {'type': 'integer'},
            'strictness': {'oneOf': [{'type': 'null'}, ref('Strictness')]},
            'emotion': {
                'type': 'object',
                'required': ['name', 'emoji', 'intensity'],
                'properties': {
                    'name': {'type': 'string'},
                    'emoji': {'type': 'string'},
                    'intensity': {'type': 'number', 'minimum': 0, 'maximum': 1},
                },
            },
            'trust': {'type': 'number', 'minimum': 0, 'maximum': 1},
        },
    },
    'Strictness': {
        'type': 'object',
        'required': [
            'entity',
            'trust',
            'low_trust',
            'factor',
            'deny_weight',
            'usual_deny_weight',
            'reason',
        ],
        'properties': {
            'entity': {'type': 'string'},
            'trust': {'type': 'number'},
            'low_trust': {'type': 'number'},
            'factor': {'type': 'number'},
            'deny_weight': {'type': 'number'},
            'usual_deny_weight': {'type': 'number'},
            'reason': {'type': 'string'},
        },
    },
    'RuleInput': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['name', 'description', 'weight'],
        'properties': _RULE_FIELDS,
    },
    'RuleChange': {
        'type': 'object',
        'additionalProperties': False,
        'minProperties': 1,
        'properties': _RULE_FIELDS,
    },
    'Rule': {
        'type': 'object',
        'required': [*_RULE_FIELDS, 'created_at', 'updated_at'],
        'properties': {
            **_RULE_FIELDS,
            'created_at': {'type': 'string'},
            'updated_at': {'type': 'string'},
            'rules_version': {'type': 'integer'},
            'warnings': {'type': 'array', 'items': {'type': 'string'}},
        },
    },
    'RuleList': {
        'type': 'object',
        'required': ['rules', 'rules_version'],
        'properties': {
            'rules': {'type': 'array', 'items': ref('Rule')},
            'rules_version': {'type': 'integer'},
        },
    },
}
_NAME_PARAMETER = {
    'name': 'name',
    'in': 'path',
    'required': True,
    'schema': {'type': 'string', 'maxLength': 64},
}


class Evaluate:
    """``POST /evaluate``: judge an action against the rules."""

    spec: ClassVar[dict[str, Any]] = {
        'post': {
            'summary': 'Judge an action against the conscience',
            'operationId': 'evaluate',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('EvaluateRequest')}},
            },
            'responses': {
                '200': json_response('The verdict and why', ref('Evaluation'))
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, conscience: Conscience, soul: Soul, audit: AuditLog) -> None:
        self.conscience = conscience
        self.soul = soul
        self.audit = audit

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = judge_request(
            self.conscience,
            self.soul,
            self.audit,
            req.context.principal.name,
            read_json(req),
        )


def _rule_document(rule: conscience.Rule, version: int) -> dict[str, Any]:
    return {**rule.as_dict(), 'rules_version': version, 'warnings': rule.warnings}


class Rules:
    """``GET /rules`` and ``POST /rules``."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Every rule and the version of the rule set',
            'operationId': 'listRules',
            'responses': {'200': json_response('The rules', ref('RuleList'))},
        },
        'post': {
            'summary': 'Add a rule',
            'operationId': 'createRule',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('RuleInput')}},
            },
            'responses': {'201': json_response('The new rule', ref('Rule'))},
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, conscience: Conscience) -> None:
        self.conscience = conscience

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        version, rules = self.conscience.rules()
        resp.media = {'rules': [r.as_dict() for r in rules], 'rules_version': version}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        rule, version = self.conscience.create_rule(read_json(req))
        resp.status = falcon.HTTP_201
        resp.location = f'/rules/{rule.name}'
        resp.media = _rule_document(rule, version)


class RuleItem:
    """``GET|PUT|DELETE /rules/{name}``; PUT changes only the fields given."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [_NAME_PARAMETER],
        'get': {
            'summary': 'One rule',
            'operationId': 'getRule',
            'responses': {'200': json_response('The rule', ref('Rule'))},
        },
        'put': {
            'summary': 'Change a rule (fields not given stay as they are)',
            'operationId': 'updateRule',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('RuleChange')}},
            },
            'responses': {'200': json_response('The changed rule', ref('Rule'))},
        },
        'delete': {
            'summary': 'Remove a rule',
            'operationId': 'deleteRule',
            'responses': {'204': {'description': 'Removed'}},
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, conscience: Conscience) -> None:
        self.conscience = conscience

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        version = self.conscience.version()
        resp.media = _rule_document(self.conscience.rule(name), version)

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        rule, version = self.conscience.update_rule(name, read_json(req))
        resp.media = _rule_document(rule, version)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.conscience.delete_rule(name)
        resp.status = falcon.HTTP_204
