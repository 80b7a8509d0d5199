"""The HTTP knobs every vendor resource exposes in the Dagster UI, declared once."""

from typing import Any

import dagster as dg
from pydantic import Field


class HttpClientSettings(dg.ConfigurableResource):
    """Timeouts, retries and backoff shared by vendor resources (see core/http.py for the policy).
    Subclasses add the vendor's URL, credentials and pacing default."""

    timeout_seconds: float = Field(default=60.0, description="Read timeout per request")
    max_attempts: int = Field(default=6, description="Attempts per request on 429/5xx/connection errors")
    backoff_initial_seconds: float = Field(default=0.5, description="First retry wait (exponential, jittered)")
    backoff_max_seconds: float = Field(default=30.0, description="Longest wait between retries")
    throttle_pause_seconds: float = Field(default=1.0, description="Pause after a 429 without Retry-After")

    def http_kwargs(self) -> dict[str, Any]:
        return {
            "timeout_seconds": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "backoff_initial_seconds": self.backoff_initial_seconds,
            "backoff_max_seconds": self.backoff_max_seconds,
            "throttle_pause_seconds": self.throttle_pause_seconds,
        }
