"""``/chat``: a thin adapter over jamey.chat.

A refused message, a withheld reply and "no model configured" are answers
(200, ``outcome`` says which); a model that fails is an error of the gateway
kind: 504 ``model_timeout`` when it was too slow, else 502 with the code of
what went wrong (``model_unavailable``, ``model_malformed``,
``model_reply_too_large``).
"""

from typing import Any
from typing import ClassVar

import falcon

from jamey import chat
from jamey import validation
from jamey.api.body import read_json
from jamey.api.conscience import SCHEMAS as CONSCIENCE_SCHEMAS
from jamey.api.openapi import json_response
from jamey.api.openapi import ref
from jamey.api.openapi import text
from jamey.api.problems import PROBLEM_JSON
from jamey.api.problems import Problem
from jamey.chat import Chat
from jamey.errors import ModelError
from jamey.errors import ModelTimeoutError
from jamey.memory import LAYERS

_SESSION = {'type': 'string', 'pattern': f'^{chat.SESSION.pattern}$'}
_EVALUATION = CONSCIENCE_SCHEMAS['Evaluation']
_NULLABLE_TEXT = {'type': ['string', 'null']}


def _problem(description: str) -> dict[str, Any]:
    return {
        'description': description,
        'content': {PROBLEM_JSON: {'schema': ref('Problem')}},
    }


SCHEMAS: dict[str, Any] = {
    'ChatRequest': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['message'],
        'properties': {
            'message': text(chat.MAX_MESSAGE_CHARS),
            'entity': text(validation.MAX_ENTITY_CHARS),
            'session': _SESSION,
        },
    },
    'ChatReply': {
        'type': 'object',
        'required': [
            'session',
            'turn',
            'entity',
            'outcome',
            'reply',
            'explanation',
            'judged',
            'reply_judgement',
            'recalled',
            'model',
            'stored',
        ],
        'properties': {
            'session': {'type': 'string', 'description': 'send it with the next turn'},
            'turn': {'type': 'integer', 'minimum': 1},
            'entity': _NULLABLE_TEXT,
            'outcome': {'type': 'string', 'enum': list(chat.OUTCOMES)},
            'reply': {
                **_NULLABLE_TEXT,
                'description': "the model's reply, when it was allowed",
            },
            'explanation': {
                **_NULLABLE_TEXT,
                'description': 'why there is no reply',
            },
            'judged': {
                'type': 'object',
                'required': ['scope', 'turns', 'evaluation'],
                'properties': {
                    'scope': {
                        'type': 'string',
                        'enum': ['message', 'conversation'],
                        'description': 'which view of the message decided',
                    },
                    'turns': {
                        'type': 'integer',
                        'minimum': 1,
                        'description': 'user turns in the conversation judged',
                    },
                    'evaluation': ref('Evaluation'),
                },
            },
            'reply_judgement': {
                'oneOf': [
                    {'type': 'null'},
                    ref('Evaluation'),
                    ref('WithheldEvaluation'),
                ]
            },
            'recalled': {'type': 'array', 'items': ref('Memory')},
            'model': _NULLABLE_TEXT,
            'stored': {
                'type': 'array',
                'items': {
                    'type': 'object',
                    'required': ['id', 'layer'],
                    'properties': {
                        'id': {'type': 'string', 'format': 'uuid'},
                        'layer': {'type': 'string', 'enum': list(LAYERS)},
                    },
                },
            },
        },
    },
    # A denied reply's judgement: why it was withheld, never its text.
    'WithheldEvaluation': {
        **_EVALUATION,
        'properties': {
            **_EVALUATION['properties'],
            'action': {'type': 'null', 'description': 'the reply, withheld'},
        },
    },
    'ChatSessionEnded': {
        'type': 'object',
        'required': ['session', 'forgotten'],
        'properties': {
            'session': {'type': 'string'},
            'forgotten': {'type': 'integer', 'minimum': 0},
        },
    },
}


class ChatResource:
    """``POST /chat``: one turn of a conversation."""

    spec: ClassVar[dict[str, Any]] = {
        'post': {
            'summary': 'Say something to Jamey, judged in the context of the session',
            'operationId': 'chat',
            'requestBody': {
                'required': True,
                'content': {falcon.MEDIA_JSON: {'schema': ref('ChatRequest')}},
            },
            'responses': {
                '200': json_response(
                    'What was judged and recalled, and the reply or why none',
                    ref('ChatReply'),
                ),
                '502': _problem('The model failed (code says how)'),
                '504': _problem('The model did not answer in time'),
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, conversation: Chat) -> None:
        self.chat = conversation

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req)
        try:
            resp.media = self.chat.say(
                req.context.principal.name, body, req.context.deadline
            )
        except ModelError as exc:
            status = 504 if isinstance(exc, ModelTimeoutError) else 502
            raise Problem(status, exc.code, str(exc)) from None


class ChatSession:
    """``DELETE /chat/sessions/{session}``: end a session (``/clear``)."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [
            {'name': 'session', 'in': 'path', 'required': True, 'schema': _SESSION}
        ],
        'delete': {
            'summary': 'End a session: forget its working memory',
            'operationId': 'endChatSession',
            'responses': {
                '200': json_response(
                    'How many working memories were forgotten',
                    ref('ChatSessionEnded'),
                )
            },
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, conversation: Chat) -> None:
        self.chat = conversation

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, session: str
    ) -> None:
        resp.media = {'session': session, 'forgotten': self.chat.end(session)}
