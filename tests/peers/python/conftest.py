"""Shared fixtures for the third-party peer tests (Python `websockets` <-> our binaries).

Environment:
  WS_BIN_DIR        directory holding ws-server / ws-client (default: target/release
                    relative to the repository root)
  WS_RUNTIMES       space/comma separated runtimes to test (default: all four)
  WS_ARTIFACTS_DIR  where server logs go (default: <repo>/artifacts); logs are
                    written to $WS_ARTIFACTS_DIR/peers/python/
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
ALL_RUNTIMES = ("tokio", "async-std", "smol", "blocking")


def _runtimes() -> list[str]:
    raw = os.environ.get("WS_RUNTIMES", "").replace(",", " ").split()
    if not raw:
        return list(ALL_RUNTIMES)
    unknown = [r for r in raw if r not in ALL_RUNTIMES]
    if unknown:
        raise pytest.UsageError(f"WS_RUNTIMES: unknown runtime(s) {unknown}")
    return raw


RUNTIMES = _runtimes()


def bin_dir() -> Path:
    d = Path(os.environ.get("WS_BIN_DIR", "target/release"))
    if not d.is_absolute():
        d = REPO_ROOT / d
    return d


def binary(name: str) -> Path:
    p = bin_dir() / name
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"{name} not found or not executable at {p} (set WS_BIN_DIR)")
    return p


def artifacts_dir() -> Path:
    d = Path(os.environ.get("WS_ARTIFACTS_DIR", "artifacts"))
    if not d.is_absolute():
        d = REPO_ROOT / d
    d = d / "peers" / "python"
    d.mkdir(parents=True, exist_ok=True)
    return d


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError as e:  # not listening yet
            last_err = e
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s ({last_err})")


class ServerProc:
    """A running `ws-server` on a free loopback port."""

    def __init__(
        self,
        runtime: str,
        mode: str,
        tls: "CertAuthority | None" = None,
        extra: "list[str] | None" = None,
    ):
        self.runtime = runtime
        self.mode = mode
        self.tls = tls
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log_path = artifacts_dir() / f"ws-server-{mode}-{runtime}-{self.port}.log"
        self._log = open(self.log_path, "wb")
        cmd = [str(binary("ws-server")), "--addr", self.addr, "--mode", mode, "--runtime", runtime]
        if tls is not None:
            cmd += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        cmd += extra or []
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{' '.join(cmd)} did not start:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.addr}"

    @property
    def http(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.addr}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def assert_alive(self) -> None:
        rc = self.proc.poll()
        assert rc is None, f"ws-server ({self.runtime}, {self.mode}) died with status {rc}:\n{self.log_tail()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def __repr__(self) -> str:
        return f"ServerProc({self.runtime}, {self.mode}, {self.addr})"


class CertAuthority:
    """Certificates made fresh by tests/peers/make-test-ca.sh (a test CA, a
    server leaf for localhost and 127.0.0.1, a leaf for another name, and a
    second CA that signed nothing)."""

    def __init__(self, directory: Path):
        subprocess.run(
            [str(REPO_ROOT / "tests" / "peers" / "make-test-ca.sh"), str(directory)],
            check=True,
            timeout=60,
        )
        self.dir = directory
        self.ca = directory / "ca.pem"
        self.other_ca = directory / "other-ca.pem"
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.wrong_name_cert = directory / "wrong-name.pem"
        self.wrong_name_key = directory / "wrong-name.key"

    def client_context(self, ca: Path | None = None):
        """An ssl context for a client that trusts only `ca` (default: the test CA)."""
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca or self.ca))
        return ctx

    def server_context(self, wrong_name: bool = False):
        """An ssl context for a Python server presenting the test leaf."""
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if wrong_name:
            ctx.load_cert_chain(str(self.wrong_name_cert), str(self.wrong_name_key))
        else:
            ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        return ctx


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def echo_server(runtime):
    """One echo-mode server per runtime and test module; checked for liveness after every test."""
    srv = ServerProc(runtime, "echo")
    yield srv
    srv.stop()


@pytest.fixture
def echo(echo_server):
    echo_server.assert_alive()
    yield echo_server
    echo_server.assert_alive()


@pytest.fixture
def chat_server(runtime):
    """A fresh chat-mode server for each test (tests leave clients connected/aborted)."""
    srv = ServerProc(runtime, "chat")
    yield srv
    try:
        srv.assert_alive()
    finally:
        srv.stop()


def run(coro, timeout: float = 60.0):
    """Run an async test body with a hard time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
