"""What both services share: error bodies, health answers, body limits."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from sensorlib.events import MAX_BODY_BYTES

SERVICE_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class BodyTooLarge(Exception):
    """The request body exceeds the 64 KiB contract."""


async def read_limited_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing (without buffering it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def problem(status: int, errors: list[dict[str, str]], message: str) -> JSONResponse:
    """A JSON error answer: ``{"error": message, "detail": [{"field", "reason"}]}``."""
    return JSONResponse(status_code=status, content={"error": message, "detail": errors})


def health_response(body: dict[str, Any]) -> JSONResponse:
    """200 when ``body["ok"]``, else 503 — the contract of ``GET /health``."""
    return JSONResponse(status_code=200 if body.get("ok") else 503, content=body)
