"""The Orders API against its own description: schemathesis generates requests from
GET /openapi.json of a running `oms up` (valid ones, ones that break the schema, and
sequences that follow the document's links from a placed order to its routes) and
checks every answer: no 5xx, a documented status code, a documented content type, a
body that matches the documented schema, and a refusal of data the document says is
invalid. openapi.json must describe the server truthfully, so a failure here is a
defect of one or the other.

It runs schemathesis's CLI: its pytest plugin does not run under this suite's pytest
(it reads a node attribute pytest 9 removed). The examples are bounded (MAX_EXAMPLES
per operation, a fixed seed, no shrinking), so each run takes well under a minute on
two cores and finds the same things every time.
"""

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import Server

MAX_EXAMPLES = 20
SEED = 20261202
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
OPERATIONS = 19  # the operations openapi.json lists, but GET /events (below)


def schemathesis(server, workdir, headers=()):
    """Runs schemathesis against `server`; returns its exit code and its report."""
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install tests/api/requirements.txt into this venv "
                    "(cargo xtask test does)", pytrace=False)
    args = [str(exe), "run", server.endpoint + "/openapi.json",
            "--checks", ",".join(CHECKS),
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--no-shrink",
            "--workers", "1", "--request-timeout", "30",
            "--report", "ndjson", "--report-dir", str(workdir)]
    # GET /events is a stream that stays open: every example would end in the request
    # timeout. test_events.py checks it.
    args += ["--exclude-path", "/events"]
    for h in headers:
        args += ["--header", h]
    # One worker: CPython 3.11 before 3.11.9 can fail ast.parse run in two threads at
    # once ("AST constructor recursion depth mismatch", cpython#106905), which
    # hypothesis does when it describes a strategy.
    # Its working dir is a temporary one: its example database and reports stay there.
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    out = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    report = out.stdout + out.stderr
    (Path(workdir) / "schemathesis.txt").write_text(report)
    return out.returncode, report


def assert_clean(code, report):
    tail = report[-12000:]
    assert code == 0, f"schemathesis found defects (exit {code}; whole report in schemathesis.txt):\n{tail}"
    # That it tested something: every operation, and many cases, all passed.
    ops = re.search(r"Operations:\s+(\d+) selected / (\d+) total", report)
    assert ops and int(ops.group(1)) == OPERATIONS, tail
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases and int(cases.group(1)) > 10 * OPERATIONS, tail
    assert cases.group(1) == cases.group(2), tail


def test_loopback_server_answers_as_documented(tmp_path):
    """Nothing needs credentials; fault injection is on, so /admin/faults is exercised."""
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, extra_args=["--fault-injection"])
    try:
        s.start()
        code, report = schemathesis(s, tmp_path)
        assert_clean(code, report)
        # The document's example order and its links were used: orders were placed.
        with urllib.request.urlopen(s.endpoint + "/orders?limit=1", timeout=30) as r:
            assert json.loads(r.read())["orders"], "the run placed no order"
    finally:
        s.kill()


def test_server_requiring_a_token_answers_as_documented(tmp_path):
    """With --require-auth and the bearer token; fault injection off (403 Faults.Disabled)."""
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, extra_args=["--require-auth"])
    try:
        s.start()
        token = json.loads((data / "credentials.json").read_text())["token"]
        code, report = schemathesis(s, tmp_path, [f"Authorization: Bearer {token}"])
        assert_clean(code, report)
    finally:
        s.kill()

