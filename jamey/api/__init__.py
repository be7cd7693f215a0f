"""The HTTP API: a Falcon app built by a factory from injected capabilities."""

from jamey.api.app import create_app

__all__ = ['create_app']
