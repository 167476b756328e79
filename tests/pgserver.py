"""A throwaway PostgreSQL server for the tests, started from the distro's binaries.

``PgServer().start()`` runs ``initdb`` into a fresh temporary directory and starts the
server with ``pg_ctl`` on 127.0.0.1 only, on a free port, with its unix socket in that
directory and durability switched off (fsync, synchronous_commit, full_page_writes) since
nothing of it outlives the test session. The bootstrap superuser is ``reconciler`` with a
random password; TCP connections need it (scram-sha-256), the unix socket trusts.

initdb refuses to run as root, and CI runs as root: then every server command runs as the
``postgres`` OS user (created by Debian's ``postgresql`` package) through ``runuser`` (or
``setpriv``, or ``su``), and the temporary directory belongs to that user. As anyone else
the commands run directly.

Every wait is bounded (``pg_ctl -w -t``, subprocess timeouts); a failure raises
``PgServerError`` with the tail of the server's log.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from psycopg.sql import Composed

BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "reconciler"
OS_USER = "postgres"  # who runs the server when we are root
HOST = "127.0.0.1"
START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 60  # initdb, and pg_ctl on top of its own -t
PORT_ATTEMPTS = 3

SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "'32MB'",
    "log_min_messages": "warning",
    "log_connections": "off",
}


class PgServerError(RuntimeError):
    """The test server could not be set up, started or stopped."""


class PostgresNotFound(PgServerError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: the one PATH's ``initdb`` lives in
    (symlinks resolved), else the newest ``/usr/lib/postgresql/<version>/bin``."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")

    def version(d: str) -> tuple[int, ...]:
        parts = re.findall(r"\d+", Path(d).parent.name)
        return tuple(int(p) for p in parts)

    candidates += [Path(d) for d in sorted(versioned, key=version, reverse=True)]
    for d in candidates:
        if all(os.access(d / b, os.X_OK) for b in BINARIES):
            return d
    looked = ", ".join(str(d) for d in candidates) or "PATH, /usr/lib/postgresql/*/bin"
    raise PostgresNotFound(f"PostgreSQL server binaries ({', '.join(BINARIES)}) not found (looked in: {looked})")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (it may be taken before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _run_as_prefix(user: str) -> list[str]:
    """The command prefix that runs a command as ``user`` (we are root)."""
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--"]
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    if shutil.which("su"):
        return []  # see PgServer._command: su takes one shell string
    raise PgServerError(f"running as root and none of runuser, setpriv, su found to run PostgreSQL as {user!r}")


def _reachable_by_others(path: Path) -> bool:
    """Whether every directory from / down to ``path`` can be traversed by any user."""
    p = path.resolve()
    for d in [p, *p.parents]:
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class PgServer:
    """One throwaway PostgreSQL server: ``start()``, ``url(db)``, ``create_database(name)``, ``stop()``."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir if bindir is not None else find_bindir()
        self.password = secrets.token_urlsafe(18)
        self.port: int | None = None
        self.tmp: Path | None = None
        self._as_root = os.geteuid() == 0
        self._owner: pwd.struct_passwd | None = None
        self._prefix: list[str] = []
        if self._as_root:
            try:
                self._owner = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PgServerError(
                    f"running as root, and there is no {OS_USER!r} OS user to run PostgreSQL as "
                    "(initdb refuses root; Debian's postgresql package creates that user)") from None
            self._prefix = _run_as_prefix(OS_USER)

    # ------------------------------------------------------------------ paths

    @property
    def datadir(self) -> Path:
        return self._tmp / "data"

    @property
    def socket_dir(self) -> Path:
        return self._tmp

    @property
    def logfile(self) -> Path:
        return self._tmp / "server.log"

    @property
    def _tmp(self) -> Path:
        if self.tmp is None:
            raise PgServerError("the server is not started")
        return self.tmp

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """initdb a fresh cluster in a new temp dir and start it; bounded, raises PgServerError."""
        if self.tmp is not None:
            raise PgServerError("already started")
        self.tmp = self._make_tmp()
        atexit.register(self.stop)
        try:
            self._initdb()
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server at once (-m immediate) and remove its temp dir. Idempotent."""
        if self.tmp is None:
            return
        atexit.unregister(self.stop)
        try:
            if (self.datadir / "postmaster.pid").exists():
                try:
                    self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "immediate",
                               "-w", "-t", str(START_TIMEOUT_S)], timeout=START_TIMEOUT_S + 10)
                except PgServerError:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
            self.port = None

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ use

    def url(self, dbname: str, *, password: bool = True) -> str:
        """``postgresql://reconciler:PASSWORD@127.0.0.1:PORT/dbname`` (no password when ``password=False``)."""
        if self.port is None:
            raise PgServerError("the server is not started")
        auth = f"{SUPERUSER}:{quote(self.password, safe='')}" if password else SUPERUSER
        return f"postgresql://{auth}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; returns its URL (with the password)."""
        from psycopg import sql

        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing its sessions first (PostgreSQL 13+)."""
        from psycopg import sql

        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement: Composed) -> None:
        """Run one statement on the ``postgres`` database, outside a transaction (as CREATE DATABASE needs)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    # ------------------------------------------------------------------ internals

    def _make_tmp(self) -> Path:
        base: str | None = None
        if self._as_root and not _reachable_by_others(Path(tempfile.gettempdir())):
            base = "/tmp"  # the postgres user must be able to reach its directory
        tmp = Path(tempfile.mkdtemp(prefix="reconciler-pg-", dir=base))
        if self._owner is not None:
            os.chown(tmp, self._owner.pw_uid, self._owner.pw_gid)
        return tmp

    def _initdb(self) -> None:
        pwfile = self._tmp / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if self._owner is not None:
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        try:
            self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                       "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C",
                       "--no-sync"], timeout=COMMAND_TIMEOUT_S)
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {**SETTINGS, "unix_socket_directories": _literal(str(self.socket_dir))}
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# the reconciler tests' throwaway server\n" + conf)

    def _start_on_free_port(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            log_size = self.logfile.stat().st_size if self.logfile.exists() else 0
            try:
                self._run([str(self.bindir / "pg_ctl"), "start", "-D", str(self.datadir), "-l", str(self.logfile),
                           "-o", f"-p {port}", "-w", "-t", str(START_TIMEOUT_S)], timeout=START_TIMEOUT_S + 10)
            except PgServerError:
                new_log = self._log_text()[log_size:]
                if attempt < PORT_ATTEMPTS and "in use" in new_log:  # "Address already in use": lost the race
                    continue
                raise
            self.port = port
            return

    def _command(self, args: list[str]) -> list[str]:
        if not self._as_root:
            return args
        if self._prefix:
            return [*self._prefix, *args]
        return ["su", "-s", "/bin/sh", OS_USER, "-c", shlex.join(args)]

    def _run(self, args: list[str], *, timeout: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        cmd = self._command(args)
        try:
            r = subprocess.run(cmd, cwd=self._tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise PgServerError(f"{shlex.join(cmd)} took longer than {timeout}s{self._tail()}") from e
        if r.returncode != 0:
            out = (r.stdout + r.stderr).strip()
            raise PgServerError(f"{shlex.join(cmd)} exited {r.returncode}:\n{out}{self._tail()}")

    def _log_text(self) -> str:
        try:
            return self.logfile.read_text(encoding="utf-8", errors="replace")
        except (OSError, PgServerError):
            return ""

    def _tail(self, lines: int = 30) -> str:
        text = self._log_text().strip()
        if not text:
            return ""
        return "\n--- server log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl stop failed: SIGKILL the postmaster named in postmaster.pid."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError as e:
                if e.errno == errno.ESRCH:
                    return
            time.sleep(0.05)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
