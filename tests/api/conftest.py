"""Fixtures for the Step Functions API tests: an `oms up` server on a free loopback
port with a fresh data dir, and a boto3 `stepfunctions` client pointed at it.

The binary comes from the environment variable OMS_BIN (`cargo xtask test` sets it).
If the server cannot start, the test fails saying why; it is never skipped. Every
server started here is killed when its fixture ends, when the interpreter exits, and
(through PR_SET_PDEATHSIG) when this process dies, so none is ever left behind.
"""

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from helpers import make_client

OMS_TOML = """\
[[tasks]]
resource = "arn:aws:lambda:*:*:function:bench-*"
builtin = "bench"
"""

_live = set()


def _kill_all():
    for server in list(_live):
        server.kill()


atexit.register(_kill_all)


def _die_with_parent():
    # Runs in the child between fork and exec: if the test process dies (even by
    # SIGKILL), the kernel sends SIGKILL to the server.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oms_bin():
    path = os.environ.get("OMS_BIN")
    if not path:
        pytest.fail(
            "OMS_BIN is not set: build the server (cargo build -p oms) and set "
            "OMS_BIN=target/debug/oms, or run `cargo xtask test`",
            pytrace=False,
        )
    path = os.path.abspath(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail(f"OMS_BIN={path} is not an executable file", pytrace=False)
    return path


class Server:
    """One `oms up` process. `start` may be called again after `kill` (same data dir)."""

    def __init__(self, data_dir, config=None, extra_args=(), env=None, listen_host="127.0.0.1"):
        self.bin = oms_bin()
        # The address bound (0.0.0.0 for off loopback); clients still call 127.0.0.1.
        self.listen_host = listen_host
        self.env = None if env is None else {**os.environ, **env}
        self.extra_args = list(extra_args)
        self.data_dir = str(data_dir)
        self.config = str(config) if config else None
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.data_dir, "..", f"oms-{uuid.uuid4().hex[:8]}.log")
        self._log = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def log_text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return "(no log)"

    def start(self, timeout=20.0):
        self.port = _free_port()
        args = [self.bin, "up", "--listen", f"{self.listen_host}:{self.port}", "--data-dir", self.data_dir]
        if self.config:
            args += ["--config", self.config]
        args += self.extra_args
        self._log = open(self.log_path, "ab")
        # Run from the data dir so that no ./oms.toml of the caller is picked up.
        try:
            self.proc = subprocess.Popen(
                args,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                env=self.env,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            self._log.close()
            self._log = None
            pytest.fail(f"cannot run {' '.join(args)}: {e}", pytrace=False)
        _live.add(self)
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.kill()
                pytest.fail(
                    f"oms up exited with status {code} before serving ({' '.join(args)}); its output:\n"
                    + self.log_text(),
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError as e:
                last_error = e
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"oms up did not answer GET /health within {timeout}s (last error: {last_error}); its output:\n"
            + self.log_text(),
            pytrace=False,
        )

    def kill(self, sig=signal.SIGKILL):
        """Kills the server (SIGKILL by default: no graceful shutdown) and reaps it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        _live.discard(self)

    def client(self):
        return make_client(self.endpoint)


@pytest.fixture(scope="session")
def oms_config(tmp_path_factory):
    """An oms.toml routing the bench saga's Lambda functions to the builtin handler."""
    path = tmp_path_factory.mktemp("config") / "oms.toml"
    path.write_text(OMS_TOML)
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory, oms_config):
    """One server for the session, with the bench routing (tests use unique names)."""
    root = tmp_path_factory.mktemp("oms")
    data = root / "data"
    data.mkdir()
    s = Server(data, oms_config)
    try:
        s.start()
        yield s
    finally:
        s.kill()


@pytest.fixture
def sfn(server):
    """A boto3 stepfunctions client for the session's server."""
    if server.proc.poll() is not None:
        pytest.fail("the oms server exited during the session; its output:\n" + server.log_text(), pytrace=False)
    return server.client()


@pytest.fixture
def fresh_server(tmp_path, oms_config):
    """A factory of servers on fresh data dirs, all killed when the test ends."""
    made = []

    def make(data_dir=None):
        d = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(dir=tmp_path))
        d.mkdir(parents=True, exist_ok=True)
        s = Server(d, oms_config)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.kill()
