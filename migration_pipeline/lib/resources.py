"""The HTTP knobs every vendor resource exposes in the Dagster UI, declared once; and the repr
every resource shares, which never shows a secret."""

import re
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

# Fields whose whole value is a credential, by name (api_token, api_key, a future password...).
_SECRET_FIELD = re.compile(r"(token|key|password|secret)$", re.IGNORECASE)
# The password of a URL (`scheme://user:PASSWORD@host`). Greedy up to the last `@`, as URL parsers
# read it, so a password with an unencoded `@` or `#` is hidden whole.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)\S*@")


def hide_url_password(text: str) -> str:
    """`text` with the password of a URL in it replaced by `***` (user and host kept)."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


class SecretSafeResource(dg.ConfigurableResource):
    """A resource whose repr and str (pydantic's, used by Dagster, rich, debuggers and f-strings)
    name every field but show credentials as `***`: fields named like a credential, and the
    password inside any URL, whether the value was given as such or resolved from an EnvVar."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name and _SECRET_FIELD.search(name) and value:
                yield name, "***"
            elif isinstance(value, str):
                yield name, hide_url_password(value)
            else:
                yield name, value


class HttpClientSettings(SecretSafeResource):
    """Timeouts, retries and backoff shared by vendor resources (see lib/http.py for the policy).
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
