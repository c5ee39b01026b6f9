"""Which order saga `oms up` registers: statemachines/order-saga.asl.json (JSONPath, the
default) or its JSONata twin, chosen by oms.toml's `[saga] query_language` or
`--saga-query-language` (docs/oms-toml.md). test_orders.py runs the fault matrix
against both."""

import json
import subprocess

import pytest

from conftest import Server, oms_bin


def registered_language(server):
    sfn = server.client()
    arn = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
               if m["name"] == "order-saga")
    return json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]).get("QueryLanguage")


def test_oms_toml_picks_the_saga_definition_and_the_flag_overrides_it(tmp_path):
    config = tmp_path / "oms.toml"
    config.write_text('[saga]\nquery_language = "JSONata"\n')
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, config)
    s.start()
    try:
        assert registered_language(s) == "JSONata"
        s.kill()
        # The same data dir with the flag: the registered saga is updated to JSONPath.
        s.extra_args = ["--saga-query-language", "JSONPath"]
        s.start()
        assert registered_language(s) is None, "the JSONPath saga names no QueryLanguage"
    finally:
        s.kill()


@pytest.mark.parametrize("where", ["toml", "flag"])
def test_an_unknown_saga_query_language_is_refused_at_start_naming_the_setting(tmp_path, where):
    args = [oms_bin(), "up", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")]
    if where == "toml":
        config = tmp_path / "oms.toml"
        config.write_text('[saga]\nquery_language = "jsonata"\n')
        args += ["--config", str(config)]
    else:
        args += ["--saga-query-language", "jsonata"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stdout
    named = "query_language" if where == "toml" else "--saga-query-language"
    assert named in proc.stderr and "JSONata" in proc.stderr, proc.stderr


def test_the_aws_backend_refuses_a_saga_choice(tmp_path):
    # Over a deployed stack the stack's definition runs; refused before AWS is called.
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    proc = subprocess.run([oms_bin(), "up", "--backend", "aws", "--stack-outputs", str(outputs),
                           "--listen", "127.0.0.1:0", "--saga-query-language", "JSONata"],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "--saga-query-language" in proc.stderr and "--backend aws" in proc.stderr, proc.stderr
