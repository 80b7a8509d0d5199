"""The one exception the emulator's request handlers raise for a refusal.

The error body shape `{"error": "<detail>"}` is assumed: no source shows Unthread's error JSON
(facts file §1), so the emulator picks the simplest shape and says so. Details always name the
field and the reason, because people rehearse migrations against this emulator and read them.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def error_body(status: int, code: str, detail: str) -> dict[str, str]:
    """assumed: Unthread's error body is `{"error": detail}` (shape unconfirmed, facts file §1)."""
    return {"error": detail}
