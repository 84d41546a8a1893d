"""A local PostgreSQL for the archive's Iceberg catalog, started from Debian's binaries.

``sensorlib db start`` runs the ``postgresql`` package's own server programs (``initdb``,
``pg_ctl``, ``postgres``) on a data folder of sensorlib's (``$SENSORLIB_DATA/postgres``) and
a port of its own (``SENSORLIB_DB_PORT``, 5433: never a system PostgreSQL's 5432), the way
:mod:`sensorlib.kafka.broker` runs Kafka: no root, no systemd, no Docker. It listens on
127.0.0.1 only and trusts local connections (a workbench's database, not a shared server:
point ``SENSORLIB_CATALOG_URI`` at a managed PostgreSQL for that).

PostgreSQL refuses to run as root. Run as root (containers, CI), the server runs as the
``postgres`` user the package creates (``runuser -u postgres``), and its cluster lives in
that user's home (``~postgres/sensorlib/<id>``: a root-only folder such as ``/root`` cannot
be entered by it); ``sensorlib db status`` names the folder.

>>> db = LocalPostgres.from_settings(Settings.from_env())   # doctest: +SKIP
>>> db.start().uri                                             # doctest: +SKIP
'postgresql+psycopg://sensorlib@127.0.0.1:5433/sensorlib'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import psutil

from sensorlib.config import Settings
from sensorlib.errors import DatabaseError, PortInUse
from sensorlib.kafka.ports import port_holder, port_open
from sensorlib.progress import Progress, quiet

__all__ = ["DB_NAME", "DB_USER", "LocalPostgres", "find_binaries", "server_uri"]

#: The role ``initdb`` creates (the cluster's superuser) and the catalog's database.
DB_USER = "sensorlib"
DB_NAME = "sensorlib"
#: Where Debian and Ubuntu put each major version's server programs (not on PATH).
DEBIAN_BIN = "/usr/lib/postgresql"
#: What to do when the server programs are missing.
INSTALL_HINT = ("install PostgreSQL's server programs: `apt-get install postgresql` "
                "(Debian/Ubuntu; sensorlib starts the server itself, no systemd needed), "
                "or put the folder holding initdb and pg_ctl on PATH")


def find_binaries(search: Sequence[str | Path] | None = None) -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: the one on PATH, else the newest
    ``/usr/lib/postgresql/<major>/bin`` (where Debian puts them).

    Raises:
        DatabaseError: with the command that installs them.
    """
    candidates: list[Path] = []
    if search is None:
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        majors = sorted(Path(DEBIAN_BIN).glob("*/bin"),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
                        reverse=True)
        candidates.extend(majors)
    else:
        candidates = [Path(p) for p in search]
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise DatabaseError(f"PostgreSQL's server programs (initdb, pg_ctl) were not found: "
                        f"{INSTALL_HINT}")


def server_uri(host: str, port: int, database: str = DB_NAME, user: str = DB_USER) -> str:
    """The SQLAlchemy URL of a database on a local server (psycopg 3, no password: the
    local server trusts connections from this machine).

    >>> server_uri("127.0.0.1", 5433)
    'postgresql+psycopg://sensorlib@127.0.0.1:5433/sensorlib'
    """
    return f"postgresql+psycopg://{user}@{host}:{port}/{database}"


#: What to do when the driver is missing (a plain ``pip install sensorlib``).
DRIVER_HINT = ("PostgreSQL needs the psycopg driver: pip install 'sensorlib[postgres]' "
               "(or psycopg[binary])")


def require_driver() -> None:
    """Raise :class:`DatabaseError` with the install command unless psycopg 3 imports."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise DatabaseError(DRIVER_HINT) from None


def _valid_name(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise DatabaseError(f"{name!r} is not a usable database name (lower-case letters, "
                            "digits and _, at most 63)")
    return name


class LocalPostgres:
    """A PostgreSQL server of sensorlib's own, on 127.0.0.1.

    Args:
        directory: sensorlib's folder for it (``$SENSORLIB_DATA/postgres``): the cluster
            (``data/``), its log (``postgres.log``) and socket folder (``run/``); run as
            root, these live in the ``postgres`` user's home instead (see the module).
        port: the TCP port (``SENSORLIB_DB_PORT``).
        durable: False skips fsync (tests and benchmarks: faster, lost on a power cut).
        bin_dir: the folder of ``initdb``/``pg_ctl`` (default: :func:`find_binaries`).
    """

    def __init__(self, directory: Path, *, port: int = 5433, host: str = "127.0.0.1",
                 durable: bool = True, bin_dir: Path | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.port = port
        self.host = host
        self.durable = durable
        self._bin_dir = bin_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalPostgres:
        """The everyday server: ``$SENSORLIB_DATA/postgres`` on ``SENSORLIB_DB_PORT``."""
        return cls(settings.data_dir / "postgres", port=settings.db_port)

    # -- where things are ------------------------------------------------------

    @property
    def as_root(self) -> bool:
        """Whether this process is root (the server then runs as the ``postgres`` user)."""
        return os.geteuid() == 0

    @property
    def home(self) -> Path:
        """The folder holding the cluster, the log and the socket folder."""
        if not self.as_root:
            return self.directory
        key = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        return Path(self._postgres_user().pw_dir) / "sensorlib" / key

    @property
    def data_dir(self) -> Path:
        """The cluster (``PGDATA``)."""
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        """The server's log (``pg_ctl -l``)."""
        return self.home / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        """The server's Unix socket folder: ``run/`` beside the cluster, or a short folder
        in the temporary directory when that path is too long for a socket (~100 bytes)."""
        own = self.home / "run"
        if len(str(own)) <= 80:
            return own
        key = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"sensorlib-pg-{key}"

    @property
    def uri(self) -> str:
        """The SQLAlchemy URL of the catalog database (``SENSORLIB_CATALOG_URI``)."""
        return self.database_uri(DB_NAME)

    def database_uri(self, database: str) -> str:
        """The SQLAlchemy URL of another database on this server."""
        return server_uri(self.host, self.port, database)

    def _postgres_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise DatabaseError(
                "PostgreSQL refuses to run as root, and there is no `postgres` user to run "
                f"it as: {INSTALL_HINT} (the package creates the user), or run sensorlib as "
                "a normal user") from None

    @property
    def bin_dir(self) -> Path:
        """The folder of the server programs (:func:`find_binaries` on first use)."""
        if self._bin_dir is None:
            self._bin_dir = find_binaries()
        return self._bin_dir

    def _run(self, tool: str, *args: str, timeout: float = 120.0,
             detach: bool = False) -> subprocess.CompletedProcess[str]:
        """Run one of the server programs (as the ``postgres`` user when root)."""
        command = [str(self.bin_dir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=timeout, cwd="/", start_new_session=detach,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"{tool} did not finish within {timeout:.0f}s. "
                                f"{self.log_excerpt()}") from None
        except OSError as exc:
            raise DatabaseError(f"{command[0]} could not be run ({exc}): {INSTALL_HINT}") from None

    # -- set-up ------------------------------------------------------------------

    def _own(self, path: Path) -> None:
        """Make ``path`` the ``postgres`` user's when running as root."""
        if self.as_root:
            user = self._postgres_user()
            os.chown(path, user.pw_uid, user.pw_gid)

    def init(self, progress: Progress = quiet) -> None:
        """Create the cluster once (``initdb``; superuser ``sensorlib``, trusted locally)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            base = self.home.parent
            base.mkdir(parents=True, exist_ok=True)
            self._own(base)
            (self.directory / "WHERE").write_text(
                f"Run as root, the PostgreSQL cluster lives in {self.home} (the postgres user "
                "cannot enter a root-only folder).\n")
        for folder in (self.home, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            self._own(folder)
        self._check_version()
        if (self.data_dir / "PG_VERSION").exists():
            return
        progress(f"Creating a PostgreSQL cluster in {self.data_dir} …")
        proc = self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", DB_USER,
                         "-E", "UTF8", "--locale=C", "--no-instructions")
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
            raise DatabaseError(f"initdb failed in {self.data_dir}:\n{tail}")

    def _check_version(self) -> None:
        """Refuse a cluster of another major version than the binaries (a clear message,
        not the server's start-up failure)."""
        try:
            cluster = (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return
        binaries = self.bin_dir.parent.name
        if binaries.isdigit() and cluster != binaries:
            raise DatabaseError(
                f"the cluster in {self.data_dir} is PostgreSQL {cluster}, the server programs "
                f"in {self.bin_dir} are {binaries}: install postgresql-{cluster}, or move "
                "the folder away (the catalog in it is then lost: the warehouse's tables must "
                "be registered again)")

    # -- processes -----------------------------------------------------------------

    def pid(self) -> int | None:
        """The server's pid when it runs (from ``postmaster.pid``, checked to be alive)."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            proc = psutil.Process(int(first))
            if proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name():
                return proc.pid
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def running(self) -> bool:
        """Whether the server runs (its ``postmaster.pid`` names a live ``postgres``)."""
        return self.pid() is not None

    def _server_options(self) -> str:
        options = [f"-p {self.port}", f"-k {self.socket_dir}",
                   f"-c listen_addresses={self.host}"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off",
                        "-c full_page_writes=off"]
        return " ".join(options)

    def start(self, timeout: float = 60.0, progress: Progress = quiet) -> Self:
        """Start the server unless it runs, and create the catalog database (idempotent).

        Raises:
            DatabaseError: the programs are missing, or the server did not start (its
                log's errors are in the message).
            PortInUse: another program holds the port.
        """
        _ = self.bin_dir  # the missing-binaries error first
        require_driver()
        if not self.running():
            if port_open(self.host, self.port):
                raise PortInUse(
                    f"port {self.port} (PostgreSQL, SENSORLIB_DB_PORT) on {self.host} is in use "
                    f"by {port_holder(self.port) or 'another program'}: stop it, or choose "
                    "another port (SENSORLIB_DB_PORT)")
            self.init(progress)
            self._log_start = self._log_size()
            progress(f"Starting PostgreSQL on {self.host}:{self.port} …")
            proc = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                             "-o", self._server_options(), "-w", "-t", str(int(timeout)),
                             "start", timeout=timeout + 15, detach=True)
            if proc.returncode != 0 or not self.running():
                said = (proc.stdout + proc.stderr).strip()
                raise DatabaseError(f"PostgreSQL did not start: {said}\n{self.log_excerpt()}")
        self.create_database(DB_NAME)
        progress(f"PostgreSQL is up: {self.uri}")
        return self

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server (fast shutdown: open sessions are ended); whether it was running."""
        pid = self.pid()
        if pid is None:
            return False
        proc = self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t",
                         str(int(timeout)), "stop", timeout=timeout + 15)
        if proc.returncode != 0 and self.running():
            with contextlib.suppress(psutil.Error):
                server = psutil.Process(pid)
                server.terminate()
                server.wait(timeout=timeout)
        return True

    def remove(self) -> None:
        """Stop the server and delete its cluster (tests): every catalog in it is lost."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.as_root:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------

    def connect(self, database: str = "postgres", timeout: float = 10.0) -> object:
        """A psycopg connection (autocommit) to ``database`` on this server."""
        require_driver()
        import psycopg

        try:
            return psycopg.connect(host=self.host, port=self.port, user=DB_USER,
                                   dbname=database, autocommit=True,
                                   connect_timeout=max(1, int(timeout)))
        except psycopg.Error as exc:
            raise DatabaseError(f"PostgreSQL on {self.host}:{self.port} does not answer "
                                f"({str(exc).strip()}): `sensorlib db start` starts it") from None

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; its SQLAlchemy URL."""
        require_driver()
        import psycopg
        from psycopg import sql

        _valid_name(name)
        with self.connect() as con:  # type: ignore[attr-defined]
            exists = con.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()
            if not exists:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase,
                                         psycopg.errors.UniqueViolation):
                    con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_uri(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists (its sessions are ended first)."""
        from psycopg import sql

        _valid_name(name)
        with self.connect() as con:  # type: ignore[attr-defined]
            con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    # -- what it says --------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """pid (or None), port, whether it accepts connections, the URL, folder and log."""
        return {"pid": self.pid(), "port": self.port, "host": self.host,
                "listening": port_open(self.host, self.port), "uri": self.uri,
                "data": str(self.data_dir), "log": str(self.log_file)}

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def log_excerpt(self, lines: int = 12) -> str:
        """This run's FATAL/ERROR lines of the server log, then its last lines."""
        try:
            with open(self.log_file, "rb") as log:
                log.seek(getattr(self, "_log_start", 0))
                text = log.read().decode(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_file})"
        errors = [line for line in text if re.search(r"\b(FATAL|PANIC|ERROR):", line)][:4]
        out = ""
        if errors:
            out += f"Errors in {self.log_file}:\n" + "\n".join(errors) + "\n"
        return out + f"Last lines of {self.log_file}:\n" + "\n".join(text[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
