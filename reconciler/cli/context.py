"""What every command's context holds (the global options), kept apart so that starting the
CLI — ``--version``, ``--help``, shell completion — imports nothing else of the tool."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_CONFIG_DIR = "configs"
# True in the console script's own process (``cli.run``): a short-lived process of ours, where
# the parse cache may be written by a forked child. A command run inside another program (a
# test runner, an embedding tool: its threads, files and connections not ours) writes it in place.
CONSOLE = False


@dataclass
class State:
    config_dir: str
    debug: bool
    colour: bool | None
    parallelism: int | None = None

    def colour_for(self, stream: Any) -> bool:
        if self.colour is not None:
            return self.colour
        return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
