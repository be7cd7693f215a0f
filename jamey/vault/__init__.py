"""Phoenix Vault: encrypted, verifiable, streaming backups of jameyd's state.

``format`` is the file (header and STREAM chunks), ``keys`` the three key
modes, ``archive`` the payload (snapshot, config, manifest) and ``store`` the
operations. ``open_vault`` builds a vault from the settings, the same way for
the daemon and for ``jameyctl`` working offline.
"""

from collections.abc import Mapping
from pathlib import Path

from jamey import config
from jamey.errors import ConfigError
from jamey.vault.keys import FileKey
from jamey.vault.keys import Keyring
from jamey.vault.keys import Passphrase
from jamey.vault.keys import Recipient
from jamey.vault.keys import parse_key
from jamey.vault.store import Backup
from jamey.vault.store import Policy
from jamey.vault.store import Vault

__all__ = ['Backup', 'Policy', 'Vault', 'keyring', 'open_vault', 'private_keyring']


def keyring(
    settings: config.VaultSettings, environ: Mapping[str, str]
) -> Keyring | None:
    """The configured key source (None: none set), its secret read now.

    Raises:
        SecretError: the file is missing or others can read it (a
            CredentialUnavailableError: a credential name, outside the
            service).
        VaultConfigError: it does not hold a key.
    """
    if settings.key_file:
        raw = config.read_secret(settings.key_file, environ, 'vault.key_file')
        return FileKey(parse_key(raw, f'vault.key_file {settings.key_file}'))
    if settings.passphrase_file:
        raw = config.read_secret(
            settings.passphrase_file, environ, 'vault.passphrase_file'
        )
        return Passphrase(_passphrase(raw, settings.passphrase_file))
    if settings.recipient_file:
        raw = config.read_secret(
            settings.recipient_file, environ, 'vault.recipient_file'
        )
        return Recipient(
            parse_key(raw, f'vault.recipient_file {settings.recipient_file}')
        )
    return None


def _passphrase(raw: bytes, name: str) -> bytes:
    # Editors end files with a newline; it is not part of the passphrase.
    passphrase = raw.rstrip(b'\r\n')
    if not passphrase:
        raise ConfigError(f'vault.passphrase_file {name} is empty')
    return passphrase


def private_keyring(path: Path, environ: Mapping[str, str]) -> Keyring:
    """A recipient's private key (``--private-key``): reads its backups."""
    raw = config.read_secret(path, environ)
    return Recipient.from_private(parse_key(raw, f'private key {path}'))


def vault_dir(settings: config.Settings) -> Path:
    return (
        Path(settings.vault.dir)
        if settings.vault.dir
        else (settings.storage.state_dir / 'vault')
    )


def open_vault(
    settings: config.Settings,
    environ: Mapping[str, str],
    config_file: Path | None,
    read_key: bool = True,
) -> Vault:
    """The vault the settings describe, its key read from its secret file.

    ``read_key=False`` leaves the key unread (and the vault without one):
    listing and pruning read only the headers, which need no key.
    """
    vault = settings.vault
    return Vault(
        vault_dir(settings),
        keyring(vault, environ) if read_key else None,
        vault.cipher,
        Policy(vault.keep_last, vault.keep_daily, vault.keep_weekly),
        tuple(Path(m) for m in vault.mirror_dirs),
        config_file,
        device=settings.mqtt.device_id,
    )
