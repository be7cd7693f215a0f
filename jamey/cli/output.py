"""What jameyctl prints, and the exit codes it returns."""

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from jamey.cli.client import Reply

EX_OK = 0
EX_REFUSED = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_CONFIG = 78


def emit(args: argparse.Namespace, document: Any, human: str) -> None:
    """The document for scripts (--json), or the text for people."""
    print(json.dumps(document, indent=2, ensure_ascii=False) if args.json else human)


def refused(args: argparse.Namespace, reply: Reply) -> int:
    """The daemon said no: show its problem document, exit 1."""
    document = reply.document if isinstance(reply.document, dict) else {}
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    detail = document.get('detail') or document.get('title') or f'HTTP {reply.status}'
    field = document.get('field')
    where = f' ({field})' if field else ''
    print(f'jameyctl: refused{where}: {detail}', file=sys.stderr)
    return EX_REFUSED


def answered(
    args: argparse.Namespace,
    reply: Reply,
    expected: int,
    render: Callable[[Any], str],
) -> int:
    """Print a successful reply (``render`` makes the human text), or refuse."""
    if reply.status != expected:
        return refused(args, reply)
    emit(args, reply.document, render(reply.document))
    return EX_OK
