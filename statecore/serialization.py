"""Result serialization: msgpack with a registry of extension types.

(Minimal placeholder: the full registry is being written.)
"""

from __future__ import annotations

from typing import Any

import msgpack

from statecore.errors import SerializationError

__all__ = ["packb", "unpackb"]


def packb(obj: Any) -> bytes:
    """Encode ``obj``; raises SerializationError for a type nothing can write."""
    try:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(str(exc)) from exc


def unpackb(data: bytes) -> Any:
    """Decode what :func:`packb` wrote."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
