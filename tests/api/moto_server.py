"""moto's server (`moto[server]`, installed by `cargo xtask test` from requirements.txt)
on a free port, for the tests that need a stand-in for AWS services."""

import contextlib
import subprocess
import time

import pytest

from conftest import _die_with_parent, _free_port
from dynamodb_local import ROOT


@contextlib.contextmanager
def moto_server(ready, timeout_s=60):
    """Starts moto's server and yields its endpoint once `ready(endpoint)` answers
    without raising; stops it afterwards. Fails the test, saying why, if it cannot."""
    server = ROOT / "target/venv/bin/moto_server"
    if not server.exists():
        pytest.fail(f"{server} is missing: `cargo xtask test` installs moto[server] from "
                    "tests/api/requirements.txt", pytrace=False)
    port = _free_port()
    proc = subprocess.Popen([str(server), "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                ready(endpoint)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start", pytrace=False)
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.kill()
        proc.wait()
