"""Event ids: UUIDv7 (RFC 9562), time-ordered, so ids sort roughly by creation.

Written here because the standard library has no uuid7 before Python 3.14
and the SDK should not pull a package for twenty lines.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Seeded from os.urandom by the random module; ids need uniqueness, not secrecy.
_random = random.Random()


def _uuid7_int() -> int:
    """48 bits of Unix milliseconds, a 12-bit counter (monotonic within a millisecond, per
    process), 62 random bits."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = _random.getrandbits(62)
    return (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand


def uuid7() -> uuid.UUID:
    return uuid.UUID(int=_uuid7_int())


def new_id() -> str:
    """A fresh event id (UUIDv7 text). Formatted by hand: ids are made per event, on the
    publisher's hot path."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
