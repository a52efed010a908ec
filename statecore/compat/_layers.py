"""The values set in ``prefect.context`` by this process, and the local secrets.

Process-wide, not per thread: a run started inside ``with prefect.context(...)`` shows
them to the bodies on its worker threads too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["BASE", "ENV_PREFIX", "LAYERS", "LOCK", "local_secret", "local_secrets", "stacked"]

#: Prefect 1's environment variables for local secrets (the name keeps its case)
ENV_PREFIX = "PREFECT__CONTEXT__SECRETS__"

LOCK = threading.Lock()
BASE: dict[str, Any] = {}
LAYERS: list[dict[str, Any]] = []


def stacked() -> dict[str, Any]:
    with LOCK:
        merged = dict(BASE)
        for layer in LAYERS:
            merged.update(layer)
    return merged


def local_secrets() -> dict[str, Any]:
    """The local secrets: the environment's, then the context's (the context wins)."""
    found = {
        key[len(ENV_PREFIX) :]: value
        for key, value in os.environ.items()
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX)
    }
    with LOCK:
        for layer in (BASE, *LAYERS):
            given = layer.get("secrets")
            if isinstance(given, Mapping):
                found.update(given)
    return found


def local_secret(name: str) -> Any:
    """A local secret's raw value (context, then ``PREFECT__CONTEXT__SECRETS__NAME``), or
    None."""
    return local_secrets().get(name)
