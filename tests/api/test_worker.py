"""`oms worker`: the activities as a Step Functions Activity worker, against `oms up`'s
Step Functions API: it polls GetActivityTask, runs the activity, and answers with
SendTaskSuccess, or SendTaskFailure carrying the activity's error name."""

import json
import os
import subprocess
import time
import uuid

from conftest import _die_with_parent, oms_bin

ROLE = "arn:aws:iam::000000000000:role/worker"


def wait_done(sfn, arn, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING" or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def test_the_worker_runs_activities_and_reports_typed_errors(server, sfn, tmp_path):
    tag = "wk" + uuid.uuid4().hex[:6] + "-"
    arns = {}
    for fn in ["place-order", "reserve-inventory"]:
        arns[fn] = sfn.create_activity(name=tag + fn)["activityArn"]
    prefix = arns["place-order"][: -len("place-order")]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local",
               AWS_REGION="us-east-1", OMS_SEED_DEMO="1")
    # The worker polls every activity, so all of them must exist.
    for fn in ["charge-payment", "pick-shipment", "ship-shipment", "cancel-shipment",
               "restock-shipment", "refund-payment", "release-inventory", "record-order-status"]:
        sfn.create_activity(name=tag + fn)
    worker = subprocess.Popen(
        [oms_bin(), "worker", "--activity-arn-prefix", prefix, "--store", f"sqlite:{tmp_path}/store.db",
         "--sfn-endpoint", server.endpoint, "--name", "test-worker", "--heartbeat-seconds", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        definition = {"StartAt": "Place", "States": {
            "Place": {"Type": "Task", "Resource": arns["place-order"], "ResultPath": "$.placed", "Next": "Reserve"},
            "Reserve": {"Type": "Task", "Resource": arns["reserve-inventory"], "HeartbeatSeconds": 30,
                        "Parameters": {"order_id.$": "$.order_id"}, "End": True}}}
        machine = sfn.create_state_machine(name=tag + "machine", definition=json.dumps(definition), roleArn=ROLE)
        order = {"order_id": tag + "o1", "customer_id": "c1", "lines": [{"sku": "SOCKS-3PK", "quantity": 2}],
                 "payment": {"token": "tok_visa"},
                 "ship_to": {"name": "A", "line1": "1 St", "city": "Boston", "postal_code": "02101", "country": "US"}}
        ok = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(order))
        d = wait_done(sfn, ok["executionArn"])
        assert d["status"] == "SUCCEEDED", (d, worker.poll())
        out = json.loads(d["output"])
        assert out["order_id"] == order["order_id"] and out["shipments"][0]["warehouse_id"] == "WH-NJ"

        bad = dict(order, order_id=tag + "o2", lines=[{"sku": "SOCKS-3PK", "quantity": -1}])
        failed = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(bad))
        d = wait_done(sfn, failed["executionArn"])
        assert d["status"] == "FAILED"
        assert d["error"] == "Order.Invalid" and "lines[0].quantity" in d["cause"]
    finally:
        worker.kill()
        worker.wait()
