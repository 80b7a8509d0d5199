"""Zendesk API emulator: serves a Zendesk dataset folder (see `sim.synth.zendesk_dataset`)."""

from .app import create_app
from .store import ZendeskStore

__all__ = ["ZendeskStore", "create_app"]
