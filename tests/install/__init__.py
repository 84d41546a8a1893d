"""Tests that install sensorlib (or a dependency) with pip into a fresh venv."""

from __future__ import annotations

import subprocess

#: What pip says when it cannot reach the index (then the test is skipped, not failed).
NETWORK_ERRORS = ("Failed to establish a new connection", "Temporary failure in name resolution",
                  "Could not fetch URL", "Network is unreachable", "Max retries exceeded",
                  "Read timed out", "Connection refused")


def unreachable(done: subprocess.CompletedProcess) -> str | None:
    """Why pip could not reach the index (its last line), or None when it failed otherwise."""
    text = done.stdout + done.stderr
    if not any(marker in text for marker in NETWORK_ERRORS):
        return None
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no answer"
