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


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC inside; turned back on afterwards only if it was on before."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
