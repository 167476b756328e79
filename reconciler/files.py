"""Reading and writing the files the tool handles: whole, bounded, and only regular files.

Files named by users or found in the config dir may be anything: a FIFO (reading it hangs),
``/dev/zero`` (endless), a symlink to a private key, a path under a directory that does
not exist. ``read_regular`` opens without following a FIFO's block, refuses what is not a
regular file, and stops at a size cap; ``write_atomic`` writes a whole file or nothing.
Failures are ``FileError`` (a ``ReconcilerError``) naming the path — never a traceback and
never the file's content.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import ReconcilerError

MiB = 1 << 20


class FileError(ReconcilerError):
    """A file cannot be read or written as asked."""


def read_regular(path: Path, *, what: str, limit: int = 64 * MiB) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``what`` names it in errors)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise FileError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(f"{path}: the {what} is not a regular file")
        if st.st_size > limit:
            raise FileError(f"{path}: the {what} is larger than {limit // MiB} MiB")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:  # it grew while we read it
                raise FileError(f"{path}: the {what} is larger than {limit // MiB} MiB")
            chunks.append(chunk)
    except OSError as e:
        raise FileError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a whole file or nothing (a temp file renamed over the target); text as UTF-8."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
    except OSError as e:
        raise FileError(f"{path}: cannot write it: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
