"""The native extension is the one built from this tree, and says so."""

import importlib.metadata
import tomllib
from pathlib import Path

import jamey
from jamey import _core

ROOT = Path(__file__).resolve().parent.parent


def test_versions_agree() -> None:
    cargo = tomllib.loads((ROOT / 'Cargo.toml').read_text())['package']['version']
    assert _core.version() == cargo
    assert _core.__version__ == cargo
    assert jamey.__version__ == cargo
    assert importlib.metadata.version('jamey') == cargo
