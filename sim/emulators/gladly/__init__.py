"""Gladly REST API emulator: serves a dataset folder (see `sim.synth.dataset`)."""

from .app import DOWNLOAD_PATTERN, create_app
from .store import GladlyStore

__all__ = ["DOWNLOAD_PATTERN", "GladlyStore", "create_app"]
