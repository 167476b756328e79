"""Pausing the cyclic garbage collector while many small acyclic objects are built.

Building big trees of small objects (YAML nodes and plain values, 10,000 shops' states from the
sandbox) sets off young collections that find nothing to collect: 2-6x the time of the work
itself (measured; README "Benchmarks"). A leaf module, so the config readers and the providers
share it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Set by the console script for ``plan``, ``drift`` and ``validate`` (``cli.run``): the process is
# one read-only command, and what is built in a pause (the configuration, the platform's
# states) lives until it ends.
FREEZE = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC inside; turned back on afterwards only if it was on before.

    With ``FREEZE``, what exists when the outermost pause ends is moved out of the collector's
    reach (``gc.freeze``) first: otherwise the next young collection walks every object the
    pause built (~10 ms a warm plan of 10,000 shops), to find nothing. Refcounting still frees
    those objects; only a cycle among them would stay until the process ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if FREEZE:
                gc.freeze()
            gc.enable()
