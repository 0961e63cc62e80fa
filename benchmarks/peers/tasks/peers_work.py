"""The work of the two extra workloads, one body for every system (each system's
tasks module wraps these in its own task decorator, so every system runs the
same bytecode).

- ``nap(i)``: I/O, ``await asyncio.sleep(NAP_SEC)``; ``nap_sync`` is the same
  wait blocking a thread, for a system without async tasks (Huey).
- ``spin(i)``: pure-Python CPU work, a fixed loop of SPIN_STEPS steps (about
  5 ms here; the figure that matters is the same loop everywhere).

Both return ``i``, which the producer checks.
"""

from __future__ import annotations

import asyncio
import time

NAP_SEC = 0.1
SPIN_STEPS = 60_000


async def nap(i: int) -> int:
    """Wait NAP_SEC on the event loop, holding no thread."""
    await asyncio.sleep(NAP_SEC)
    return i


def nap_sync(i: int) -> int:
    """Wait NAP_SEC holding a thread (for systems without async tasks)."""
    time.sleep(NAP_SEC)
    return i


def spin(i: int) -> int:
    """SPIN_STEPS steps of Python bytecode, holding the GIL throughout."""
    x = i
    for step in range(SPIN_STEPS):
        x = (x * 31 + step) & 0xFFFF
    return i + (x & 0)
