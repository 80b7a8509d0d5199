"""The emulators' notion of now: pinned (tests, `--now`) or the wall clock, moved at run time
through `GET/PUT /_emulator/clock` so a rehearsal can make later exports or deltas "happen"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sim.emulators.timeutil import datetime_to_ns, format_ns, parse_rfc3339_ns


class Clock:
    """The emulator's notion of now: pinned (tests, `--now`) or the wall clock."""

    def __init__(self, pinned: datetime | None = None):
        self.pinned_ns: int | None = datetime_to_ns(pinned) if pinned is not None else None

    def now_ns(self) -> int:
        if self.pinned_ns is not None:
            return self.pinned_ns
        return datetime_to_ns(datetime.now().astimezone())

    def as_dict(self) -> dict[str, Any]:
        return {"now": format_ns(self.now_ns()), "pinned": self.pinned_ns is not None}


def clock_routes(clock: Clock) -> list[Route]:
    """`GET/PUT /_emulator/clock`: read or move the emulator's clock (`{"now": RFC3339|null}`)."""

    async def get_clock(_: Request) -> JSONResponse:
        return JSONResponse(clock.as_dict())

    async def put_clock(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be JSON: {\"now\": RFC3339 or null}"}, status_code=400)
        if not isinstance(payload, dict) or "now" not in payload:
            return JSONResponse({"error": "body must be {\"now\": RFC3339 or null}"}, status_code=400)
        value = payload["now"]
        if value is None:
            clock.pinned_ns = None
            return JSONResponse(clock.as_dict())
        parsed = parse_rfc3339_ns(value)
        if parsed is None:
            detail = f"now must be an RFC3339 timestamp with offset, got {value!r}"
            return JSONResponse({"error": detail}, status_code=400)
        clock.pinned_ns = parsed
        return JSONResponse(clock.as_dict())

    return [
        Route("/_emulator/clock", get_clock, methods=["GET"]),
        Route("/_emulator/clock", put_clock, methods=["PUT"]),
    ]
