"""Exceptions shared by every part of Jamey, defined once.

The Rust extension raises these same classes (it imports them), so callers
catch one hierarchy whichever side of the boundary failed.
"""


class JameyError(Exception):
    """Base of every error Jamey raises on purpose."""


class ConfigError(JameyError):
    """The configuration is invalid; the message names the key and the value."""


class SecretError(ConfigError):
    """A secret file is missing, unreadable or readable by others."""


class StorageError(JameyError):
    """The database cannot be opened or used."""


class MigrationError(StorageError):
    """A schema migration failed; the database stays at its previous version."""


class StateLockedError(StorageError):
    """Another jameyd holds the state directory."""


class MemoryIndexError(JameyError):
    """The memory index cannot be opened or used; it can be rebuilt from SQLite."""


class RuleError(JameyError):
    """A conscience rule cannot be compiled (bad weight, a phrase without words)."""


class InputError(JameyError):
    """Input that breaks a rule of the API; names the field and a stable code.

    Capability modules raise it, so the HTTP API and MQTT report the same
    field and code for the same mistake.
    """

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class NotFoundError(JameyError):
    """The named thing does not exist."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConflictError(JameyError):
    """The named thing exists already."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RefusedError(JameyError):
    """An MQTT request that is not executed: ``error`` is ``bad_request``,
    ``invalid_token`` or ``forbidden``, ``reason`` says which rule it broke."""

    def __init__(
        self, error: str, reason: str, message: str, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.reason = reason
        self.field = field
