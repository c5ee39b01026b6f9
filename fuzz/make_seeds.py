"""Writes the seed corpora under fuzz/corpus/<target>/ from the repository's real
inputs: state machines, the engine's data-driven cases, the JSONPath and intrinsic
cases, and request bodies the API tests send. Run from the repository root:
`python3 fuzz/make_seeds.py`. Seeds are named by content hash, like libFuzzer's own.
"""

import glob
import hashlib
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
# Seeds larger than this are left out: the corpus stays small, and libFuzzer's
# default -max_len is taken from the largest seed.
MAX_SEED_BYTES = 8 * 1024


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_SEED_BYTES:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def load(path):
    with open(path) as f:
        return json.load(f)


def definitions():
    for p in sorted(glob.glob(os.path.join(ROOT, "statemachines/**/*.asl.json"), recursive=True)):
        yield load(p)
    for pattern in ["asl/tests/engine_cases/*.json", "asl/tests/validate_cases/*.json"]:
        for p in sorted(glob.glob(os.path.join(ROOT, pattern))):
            case = load(p)
            if isinstance(case.get("definition"), dict):
                yield case["definition"]


def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from strings(x)


def main():
    paths, calls = set(), set()
    for d in definitions():
        write("definition", compact(d))
        for s in strings(d):
            if s.startswith("States."):
                calls.add(s)
            elif s.startswith("$"):
                paths.add(s)
    doc = compact({"a": [1, {"b": "c"}], "items": [{"id": 1}, {"id": 2}], "s": "x,y"})
    jp = load(os.path.join(ROOT, "asl/tests/jsonpath_cases.json"))
    for case in jp["select"] + jp["set"]:
        write("jsonpath", case["path"] + "\n" + compact(case.get("input")))
    for p in sorted(paths):
        write("jsonpath", p + "\n" + doc)
    for case in load(os.path.join(ROOT, "asl/tests/intrinsics_cases.json")):
        write("intrinsics", case["expr"] + "\n" + compact(case.get("input")))
    for c in sorted(calls):
        write("intrinsics", c + "\n" + doc)
    aws_json()
    orders()


def aws_json():
    text = open(os.path.join(ROOT, "saga-core/src/dispatch.rs")).read()
    ops = re.findall(r'^\s*"(\w+)" => \w+\(api::', text, re.M)
    machine = compact(load(os.path.join(ROOT, "statemachines/examples/order-pipeline.asl.json")))
    sm = "arn:aws:states:us-east-1:000000000000:stateMachine:m"
    ex = "arn:aws:states:us-east-1:000000000000:execution:m:e"
    act = "arn:aws:states:us-east-1:000000000000:activity:a"
    role = "arn:aws:iam::000000000000:role/r"
    bodies = {
        "CreateStateMachine": {"name": "m", "definition": machine, "roleArn": role, "type": "STANDARD",
                               "tags": [{"key": "k", "value": "v"}],
                               "loggingConfiguration": {"level": "OFF"}},
        "UpdateStateMachine": {"stateMachineArn": sm, "definition": machine, "publish": True},
        "DescribeStateMachine": {"stateMachineArn": sm},
        "ListStateMachines": {"maxResults": 10, "nextToken": "abc"},
        "DeleteStateMachine": {"stateMachineArn": sm},
        "ValidateStateMachineDefinition": {"definition": machine, "type": "EXPRESS", "maxResults": 5},
        "StartExecution": {"stateMachineArn": sm, "name": "e", "input": "{\"a\": 1}"},
        "StartSyncExecution": {"stateMachineArn": sm, "input": "{}", "traceHeader": "t"},
        "DescribeExecution": {"executionArn": ex},
        "DescribeStateMachineForExecution": {"executionArn": ex},
        "ListExecutions": {"stateMachineArn": sm, "statusFilter": "RUNNING", "maxResults": 1000},
        "GetExecutionHistory": {"executionArn": ex, "reverseOrder": True, "includeExecutionData": False},
        "StopExecution": {"executionArn": ex, "error": "E", "cause": "c"},
        "RedriveExecution": {"executionArn": ex, "clientToken": "t"},
        "SendTaskSuccess": {"taskToken": "tok", "output": "{}"},
        "SendTaskFailure": {"taskToken": "tok", "error": "E", "cause": "c"},
        "SendTaskHeartbeat": {"taskToken": "tok"},
        "CreateActivity": {"name": "a", "tags": []},
        "DeleteActivity": {"activityArn": act},
        "DescribeActivity": {"activityArn": act},
        "ListActivities": {"maxResults": 3},
        "GetActivityTask": {"activityArn": act, "workerName": "w"},
        "TestState": {"definition": "{\"Type\":\"Pass\",\"End\":true}", "roleArn": role,
                      "input": "{}", "inspectionLevel": "DEBUG"},
    }
    for i, op in enumerate(ops):
        write("aws_json", bytes([i]) + compact(bodies.get(op, {})).encode())
        write("aws_json", bytes([i]) + b"{}")
    write("aws_json", b"\x00")
    write("aws_json", b"\x06{\"stateMachineArn\": null, \"input\": 5}")


def orders():
    address = {"name": "Ada", "line1": "1 Main St", "city": "Boston", "postal_code": "02101",
               "country": "US"}
    order = {"order_id": "it-1", "customer_id": "cust-it",
             "lines": [{"sku": "SOCKS-3PK", "quantity": 1}],
             "payment": {"token": "tok_visa"}, "ship_to": address}
    write("orders_body", compact(order))
    write("orders_body", compact({**order, "options": {"pick_timeout_seconds": 600,
                                                       "pick_heartbeat_seconds": 60}}))
    write("orders_body", compact({**order, "payment": {"method": "pm_" + "0a" * 16},
                                  "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 99}]}))
    write("orders_body", compact({"damaged": "crushed box"}))
    write("orders_body", compact({}))
    write("orders_body", compact({"place": {"fail_next": 1, "error": "Payment.Declined",
                                            "after_effect": False},
                                  "charge": {"transient_rate": 0.5, "latency_ms": 20}}))


if __name__ == "__main__":
    main()
