"""Jamey: a guardian daemon for edge devices.

The package version comes from the crate's version (pyproject.toml declares it
dynamic and maturin reads Cargo.toml), so there is one number to bump.
"""

__version__ = '0.1.0'

__all__ = ['__version__']
