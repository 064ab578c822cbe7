"""Run a real gateway in a subprocess on a free port: for tests, benchmarks and notebooks;
cut it off from Docker and reconnect it with a :class:`SocketProxy`.

Example::

    with GatewayProcess(Path("/tmp/gw")) as gw:
        gw.wait_ready()
        client = sandcell.Client(base_url=gw.url, token=gw.token)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import docker
import httpx

T = TypeVar("T")
# The directory holding this ``sandcell_gateway`` (a checkout's ``kernel_gateway/``).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
"""


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # poll interval
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class GatewayProcess:
    """``sandcell serve --port 0`` in a subprocess, with its own token, id and runtime dir.

    ``config`` is TOML text; ``{gateway_id}`` in it is replaced by the generated id.
    """

    def __init__(self, workdir: Path, config: str = DEFAULT_CONFIG) -> None:
        self.workdir = workdir
        self.gateway_id = f"sandcell-test-{secrets.token_hex(4)}"
        self.token = secrets.token_urlsafe(16)
        self.runtime_dir = workdir / "runtime"
        self.log_path = workdir / "gateway.log"
        self.config_path = workdir / "sandcell.toml"
        self.config_path.write_text(config.replace("{gateway_id}", self.gateway_id))
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        # None: the caller's (coverage writes a gateway's data file there, for `make test`)
        self.cwd: Path | None = None

    def start(self, timeout: float = 60) -> GatewayProcess:
        """Start (or, after :meth:`kill`, restart) the gateway: same id, token, store.

        If it does not announce itself within ``timeout`` seconds it is stopped (SIGTERM, then
        SIGKILL) before the ``TimeoutError`` propagates, so a failed start leaks no process.
        """
        for stale in self.runtime_dir.glob("gateway-*.json"):  # a killed run's announcement
            stale.unlink()
        with self.log_path.open("ab") as log:  # a restart appends: both runs stay readable
            self.process = subprocess.Popen(self.command(), env=self.environment(),
                                            cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            runtime_file = wait_for(self._runtime_file, timeout, "the gateway's runtime file")
        except BaseException:  # a timeout, or ^C: no gateway process outlives a failed start
            self._end()
            raise
        self.url = json.loads(runtime_file.read_text())["url"]
        return self

    def command(self) -> list[str]:
        return [sys.executable, "-m", "sandcell_gateway.cli", "serve", "--port", "0",
                "--config", str(self.config_path), "--no-build"]

    def environment(self) -> dict[str, str]:
        """The gateway's environment: this token and runtime dir, and this very package.

        ``PYTHONPATH`` starts with the directory this module was imported from, so the
        subprocess runs the same ``sandcell_gateway`` as the caller, not an installed copy.
        XDG_DATA_HOME: the history store goes under workdir, not the user's home.
        """
        path = [str(PACKAGE_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {**os.environ, "SANDCELL_TOKEN": self.token,
                "SANDCELL_RUNTIME_DIR": str(self.runtime_dir),
                "XDG_DATA_HOME": str(self.workdir / "data"), "PYTHONPATH": os.pathsep.join(path)}

    def _end(self) -> None:
        """SIGTERM (the gateway removes its containers), then SIGKILL if it does not stop."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def _runtime_file(self) -> Path | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
        files = list(self.runtime_dir.glob("gateway-*.json"))
        return files[0] if files else None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, like a user's Ctrl-C; return the exit code (0 if it never started).

        A gateway that does not stop within ``timeout`` seconds is killed before the
        ``TimeoutExpired`` propagates: a hung shutdown fails the test and leaks no process.
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise

    def kill(self) -> None:
        """SIGKILL, a crash: no shutdown code runs, containers and store stay as they were."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/api/v1/health", timeout=10).json())

    def wait_ready(self, template: str = "python", count: int | None = None,
                   timeout: float = 120) -> None:
        """Block until the template's pool holds ``count`` (default ``min_ready``) ready."""
        def ready() -> bool:
            pool = self.health()["pools"][template]
            return bool(pool["ready"] >= (pool["min_ready"] if count is None else count))

        wait_for(ready, timeout, f"the {template} pool to fill")

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.token}"})

    def containers(self) -> list[dict[str, Any]]:
        """This gateway's containers (docker's list summaries), found by label."""
        client = docker.APIClient()
        try:
            return list(client.containers(
                all=True, filters={"label": f"org.sandcell.gateway={self.gateway_id}"}))
        finally:
            client.close()

    def container_of(self, sandbox_id: str) -> dict[str, Any] | None:
        """The list summary of the container behind one of this gateway's sandboxes."""
        found = [c for c in self.containers() if c["Labels"]["org.sandcell.sandbox"] == sandbox_id]
        return found[0] if found else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class SocketProxy:
    """Forwards a Unix socket to Docker's, so a test can cut Docker off and bring it back.

    Point the gateway at it with ``docker_host = "unix://<path>"`` in its config::

        proxy = SocketProxy(Path("/tmp/gw/docker.sock"))
        proxy.start()
        proxy.cut()      # Docker is unreachable: refused connections, open ones dropped
        proxy.restore()  # and reachable again
    """

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut(): the listener was shut down
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        """Stop accepting (the socket file goes away) and drop every open connection."""
        assert self._listener is not None
        self._close(self._listener)
        self.path.unlink()
        with self._lock:
            open_now = list(self._open)
        self._close(*open_now)

    restore = start
