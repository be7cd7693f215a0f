"""The native core of Jamey (Rust, built with PyO3)."""

__all__ = ['__version__', 'version']

__version__: str

def version() -> str:
    """The version of the native extension.

    The daemon compares it with the Python package's version, so a
    half-upgraded install is reported rather than guessed at.
    """
