"""A throwaway PostgreSQL server for the history tests, from the server binaries on this machine.

Used by the ``pg_url`` fixture (conftest.py) when BENCH_TEST_PG_URL is unset, and by .ci/run:

    python tests/pg_server.py start STATE_FILE   # prints the URL; reuses a server still running
    python tests/pg_server.py stop STATE_FILE    # stops it and removes its data folder

initdb into a temporary folder, a free port on 127.0.0.1, trust authentication for the
local user ``bench``, database ``hist``. PostgreSQL refuses to run as root: as root, the
server runs as the ``postgres`` system user (Debian's package creates it).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

USER, DATABASE = "bench", "hist"
START_TIMEOUT_S = 60


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else the newest Debian /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def unavailable_reason() -> str | None:
    """Why no server can be started here (None when one can)."""
    if bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql, " \
               "or set BENCH_TEST_PG_URL"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user to run the server as (PostgreSQL refuses root)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed: pip install 'benchrunner[postgres]'"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(_as_server_user(args), capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")


@dataclass
class PgServer:
    data_dir: str
    port: int
    bin_dir: str

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @classmethod
    def start(cls) -> "PgServer":
        bins = bin_dir()
        if bins is None:
            raise RuntimeError(unavailable_reason())
        data_dir = tempfile.mkdtemp(prefix="bench-pg-")
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        server = cls(data_dir, _free_port(), str(bins))
        try:
            _run([f"{bins}/initdb", "-D", data_dir, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
                 "initdb")
            _run([f"{bins}/pg_ctl", "-D", data_dir, "-l", f"{data_dir}/server.log", "-w", "-t", str(START_TIMEOUT_S),
                  "-o", f"-p {server.port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                 "pg_ctl start")
            _run([f"{bins}/createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, DATABASE], "createdb")
        except BaseException:
            server.stop()
            raise
        return server

    def running(self) -> bool:
        done = subprocess.run(_as_server_user([f"{self.bin_dir}/pg_ctl", "-D", self.data_dir, "status"]),
                              capture_output=True, text=True)
        return done.returncode == 0

    def stop(self) -> None:
        if Path(self.data_dir, "postmaster.pid").exists():
            subprocess.run(_as_server_user([f"{self.bin_dir}/pg_ctl", "-D", self.data_dir, "-m", "fast", "-w",
                                            "stop"]), capture_output=True, text=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _cli(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: pg_server.py start|stop STATE_FILE", file=sys.stderr)
        return 2
    command, state = argv[0], Path(argv[1])
    previous = PgServer(**json.loads(state.read_text())) if state.exists() else None
    if command == "stop":
        if previous is not None:
            previous.stop()
            state.unlink()
        return 0
    if previous is not None and previous.running():
        print(previous.url)
        return 0
    if previous is not None:
        previous.stop()
    reason = unavailable_reason()
    if reason:
        print(f"pg_server: {reason}", file=sys.stderr)
        return 1
    server = PgServer.start()
    state.write_text(json.dumps(asdict(server)))
    print(server.url)
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
