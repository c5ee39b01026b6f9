"""Encryption at rest (docs/security.md): with a key, the data dir's databases hold no
plaintext; a wrong key, or none, stops `oms up` at start with a clear error and a
non-zero exit; the right key reads the orders back."""

import os
import subprocess
from pathlib import Path

from conftest import Server, oms_bin
from helpers import ADDRESS, Api, order_body

KEY = "8f" * 32
WRONG_KEY = "3c" * 32
# Something only the order carries: found in a file, it was stored in clear.
CUSTOMER_NAME = "Zenobia Quartermaine-Encrypted"


def start_refused(data_dir, env=None, args=(), unset=()):
    """Runs `oms up` expecting it to refuse to start, with `env` added to this process's
    environment and the variables in `unset` removed; returns (exit code, output)."""
    base = {k: v for k, v in os.environ.items() if k not in unset}
    run = subprocess.run(
        [oms_bin(), "up", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *args],
        env={**base, **(env or {})},
        cwd=data_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return run.returncode, run.stdout + run.stderr


def completed_order(data_dir, env=None):
    """Starts `oms up` on `data_dir`, runs one order to COMPLETED, and kills the server
    (killed, not stopped: the WAL files are left as a crash leaves them)."""
    server = Server(data_dir, extra_args=["--pick-delay-ms", "20"], env=env)
    server.start()
    body = order_body(ship_to={**ADDRESS, "name": CUSTOMER_NAME})
    api = Api(server.endpoint)
    api.ok("POST", "/orders", body, want=(202,))
    assert api.finish(body["order_id"])["status"] == "COMPLETED"
    server.kill()
    return body


def files_containing(data_dir, text):
    needle = text.encode()
    return [p.name for p in Path(data_dir).iterdir() if p.is_file() and needle in p.read_bytes()]


def test_a_keyed_data_dir_holds_no_plaintext_and_opens_with_its_key_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    body = completed_order(data, env={"OMS_DB_KEY": KEY})
    databases = sorted(p.name for p in data.iterdir() if ".sqlite3" in p.name or ".db" in p.name)
    # The order store and the event log live in oms.sqlite3 (one WAL with the runtime's).
    assert "oms.sqlite3" in databases and "events.db" not in databases, databases
    assert files_containing(data, CUSTOMER_NAME) == []
    assert files_containing(data, body["order_id"]) == []
    assert files_containing(data, "SQLite format 3") == []

    code, out = start_refused(data, env={"OMS_DB_KEY": WRONG_KEY})
    assert code == 2, out
    assert "is encrypted and the key from OMS_DB_KEY does not open it" in out, out
    assert WRONG_KEY not in out and KEY not in out

    code, out = start_refused(data, unset=["OMS_DB_KEY"])
    assert code == 2, out
    assert "is encrypted or is not a database" in out, out

    key_file = tmp_path / "db.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    server = Server(data, extra_args=["--db-key-file", str(key_file)])
    server.start()
    view = Api(server.endpoint).ok("GET", f"/orders/{body['order_id']}", want=(200,))
    assert view["status"] == "COMPLETED"
    server.kill()


def test_a_key_for_an_unencrypted_data_dir_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    completed_order(data)
    # Without a key the name is on disk: the search above would find it.
    assert files_containing(data, CUSTOMER_NAME) != []
    code, out = start_refused(data, env={"OMS_DB_KEY": KEY})
    assert code == 2, out
    assert "is not encrypted but a key was given (OMS_DB_KEY)" in out, out


def test_bad_keys_are_refused_naming_the_source_and_the_rule(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    code, out = start_refused(data, env={"OMS_DB_KEY": "correct horse battery staple"})
    assert code == 2 and "OMS_DB_KEY: the database key must be 64 hex characters" in out, out
    assert "horse" not in out

    key_file = tmp_path / "open.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    code, out = start_refused(data, args=["--db-key-file", str(key_file)])
    assert code == 2 and "is open to other users (mode 644)" in out, out

    key_file.chmod(0o600)
    code, out = start_refused(data, env={"OMS_DB_KEY": KEY}, args=["--db-key-file", str(key_file)])
    assert code == 2 and "given twice" in out, out
    assert not (data / "oms.sqlite3").exists()
