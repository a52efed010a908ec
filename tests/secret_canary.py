"""A secret canary: a value no test writes by chance, and scanners that look for it.

Any test that hands a secret to statecore (a ``Secret`` task, ``STATECORE_SECRET_<NAME>``,
``flow.run(secrets=...)``) can make a fresh canary with :func:`new_canary` and then assert
that the canary is nowhere it must not be::

    from tests.secret_canary import assert_absent, new_canary, scan_dir, scan_redis

    canary = new_canary()
    flow.run(secrets={"TOKEN": canary}, store=store)
    assert_absent(scan_dir(canary, tmp_path), scan_redis(canary, redis_url), ui_found)

Each scanner returns the places where the canary was found (empty: no leak), so a
failure names them. They look for the raw value only, in UTF-8; a canary should therefore
be made of ASCII letters and digits (so UTF-16, percent- or HTML-escaping would not hide it
either: none of them changes such characters). What no scanner can see (a transformed
value: base64, a hash, a slice, a case change) is listed in ``.notes/h3.md``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "assert_absent",
    "new_canary",
    "scan_bytes",
    "scan_dir",
    "scan_redis",
    "scan_texts",
]


def new_canary(tag: str = "cnry") -> str:
    """A fresh canary: ``tag`` and 24 random hex digits (ASCII, unlikely anywhere)."""
    return f"{tag}{uuid.uuid4().hex[:24]}"


def _needles(canary: str) -> tuple[bytes, ...]:
    raw = canary.encode()
    # the value as UTF-16 (Windows APIs, some JSON encoders) would hide it from a byte scan
    return (raw, canary.encode("utf-16-le"))


def scan_bytes(canary: str, data: bytes, where: str = "bytes") -> list[str]:
    """``[where]`` when ``data`` holds the canary (raw or UTF-16), else ``[]``."""
    return [where] if any(n in data for n in _needles(canary)) else []


def scan_texts(canary: str, texts: Mapping[str, str | bytes]) -> list[str]:
    """The names of the texts (name -> text or bytes) that hold the canary."""
    found: list[str] = []
    for name, text in texts.items():
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        found += scan_bytes(canary, data, name)
    return found


def scan_dir(canary: str, root: Path) -> list[str]:
    """Every file under ``root`` (recursively: SQLite's -wal and -shm too) that holds it."""
    found: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found += scan_bytes(canary, path.read_bytes(), str(path))
    return found


def scan_redis(canary: str, url: str, match: str = "*") -> list[str]:
    """Every key of the Redis database at ``url`` matching ``match`` whose name, value
    (any type, every field and member) or ``DUMP`` holds the canary."""
    import redis

    client = redis.Redis.from_url(url)
    found: list[str] = []
    try:
        for key in client.scan_iter(match=match, count=1000):
            parts: list[bytes] = [key]
            kind = client.type(key)
            if kind == b"stream":
                for entry_id, fields in client.xrange(key):
                    parts.append(entry_id)
                    for name, value in fields.items():
                        parts += [name, value]
            elif kind == b"hash":
                for name, value in client.hgetall(key).items():
                    parts += [name, value]
            elif kind == b"list":
                parts += client.lrange(key, 0, -1)
            elif kind == b"zset":
                parts += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"set":
                parts += list(client.smembers(key))
            elif kind == b"string":
                parts.append(client.get(key) or b"")
            parts.append(client.dump(key) or b"")
            if scan_bytes(canary, b"\x00".join(parts)):
                found.append(f"redis key {key!r}")
    finally:
        client.close()
    return found


def assert_absent(*found: Iterable[str]) -> None:
    """Fail naming every place the scanners found the canary."""
    places = [place for group in found for place in group]
    assert not places, f"the secret canary leaked into: {places}"
