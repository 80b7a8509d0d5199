"""Unthread REST API emulator (see app.py for the layers and the assumptions it makes)."""

from .app import create_app

__all__ = ["create_app"]
