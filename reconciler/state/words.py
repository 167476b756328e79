"""The state store's words that opening it needs: the run statuses and ``StateError``.

Apart from ``types`` (the values its methods return, frozen dataclasses) so that a read-only
command can look for an interrupted apply (``surely_nothing_interrupted``, ``resolve_url``)
without defining them.
"""

from __future__ import annotations

from ..errors import ReconcilerError

# The run statuses of ``Store.runs`` (history JSON ``runs``; docs/workflows.md).
FINISHED = "finished"
INTERRUPTED = "interrupted"
RUNNING = "running"


class StateError(ReconcilerError):
    """The state store cannot be opened, read or written, or refuses what was asked
    (``unlock`` of a live run, a run that lost its locks). One line, no password."""
