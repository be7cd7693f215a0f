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


class CredentialUnavailableError(SecretError):
    """A secret names a systemd credential where there are none: credentials
    exist only inside the service (``$CREDENTIALS_DIRECTORY``)."""

    code = 'credential_unavailable'


class UnsafeDirectoryError(ConfigError):
    """A directory the daemon keeps its files in could be changed by another
    user (it belongs to one, or others may write in it): what the daemon
    writes there could be read, swapped or redirected."""

    code = 'unsafe_directory'


class StorageError(JameyError):
    """The database cannot be opened or used."""


class StorageDamagedError(StorageError):
    """SQLite's own check of the database found damage; jameyd will not use it."""


class RowDamagedError(StorageDamagedError):
    """A row fails its checksum (``jamey.checksums``): what it holds is not
    what was stored, and is not served."""


class MigrationError(StorageError):
    """A schema migration failed; the database stays at its previous version."""


class StateLockedError(StorageError):
    """Another jameyd holds the state directory."""


class MemoryIndexError(JameyError):
    """The memory index cannot be opened or used; it can be rebuilt from SQLite."""


class EncoderError(JameyError):
    """The sentence encoder cannot be loaded (a missing or wrong model) or run."""


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


class VaultError(JameyError):
    """A backup cannot be made, read or restored; ``code`` says which way.

    Every subclass is one way a backup can be wrong, so an operator (and a
    script reading ``code``) can tell a wrong key from a damaged disk.
    """

    code = 'vault_error'


class VaultConfigError(VaultError, ConfigError):
    """No key is configured, or a key file does not hold a key."""

    code = 'vault_not_configured'


class VaultBusyError(VaultError):
    """Another backup, prune or rekey runs on this vault right now."""

    code = 'vault_busy'


class BackupCancelledError(VaultError):
    """jameyd is stopping: a backup in progress gave up and cleaned up."""

    code = 'cancelled'


class VaultSpaceError(VaultError):
    """The disk filled up while writing; nothing was left behind."""

    code = 'no_space'


class BackupNotFoundError(VaultError):
    """No backup has that id."""

    code = 'backup_not_found'


class ForeignBackupError(VaultError):
    """The backup was made by another device; restoring it here needs the
    operator to say so (``--from-device``)."""

    code = 'foreign_backup'


class NotABackupError(VaultError):
    """The file does not start like a Jamey backup, or of a newer format."""

    code = 'not_a_backup'


class WrongKeyError(VaultError):
    """The backup was made with a different key: not damage, the wrong key."""

    code = 'wrong_key'


class PrivateKeyRequiredError(WrongKeyError):
    """A recipient-mode backup can only be read with the private key."""

    code = 'private_key_required'


class HeaderDamagedError(VaultError):
    """The header's checksum fails: bits changed on disk or in transit."""

    code = 'header_damaged'


class HeaderTamperedError(VaultError):
    """The header's checksum holds but its key-bound MAC fails: altered."""

    code = 'header_tampered'


class ChunkTamperedError(VaultError):
    """A chunk fails authentication: altered, damaged or from another backup."""

    code = 'chunk_tampered'


class ChunksReorderedError(VaultError):
    """A chunk authenticates, but at another position than where it lies."""

    code = 'chunks_reordered'


class TruncatedError(VaultError):
    """The file ends before its last chunk."""

    code = 'truncated'


class AppendedError(VaultError):
    """Data follows the chunk marked last."""

    code = 'appended'


class PayloadError(VaultError):
    """The decrypted payload breaks its manifest (a hash, a size, a member)."""

    code = 'payload_invalid'


class SnapshotCorruptError(PayloadError):
    """The database snapshot fails SQLite's integrity check."""

    code = 'snapshot_corrupt'


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


class ModelError(JameyError):
    """A model (chat's or the guard's) failed; ``code`` says how, for the API
    and the health check."""

    code = 'model_unavailable'


class ModelTimeoutError(ModelError):
    """The model did not answer in time (its timeout, or the request's deadline)."""

    code = 'model_timeout'


class ModelMalformedError(ModelError):
    """The model answered, but not with a completion in the form expected."""

    code = 'model_malformed'


class ModelReplyTooLargeError(ModelError):
    """The model's reply is longer than its limit (chat: ``llm.max_reply_chars``)."""

    code = 'model_reply_too_large'
