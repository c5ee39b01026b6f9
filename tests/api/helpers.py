"""Helpers shared by the API tests (imported by the test modules and conftest)."""

import json
import time
import uuid

import boto3
from botocore.config import Config

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/oms-tests"


def make_client(endpoint):
    return boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        aws_session_token=None,
        config=Config(
            # GetActivityTask long-polls for up to 60 s; retries would hide errors.
            read_timeout=75,
            connect_timeout=5,
            retries={"max_attempts": 1, "mode": "standard"},
            # StartSyncExecution's endpoint is sync-<host> on AWS; locally there is one host.
            inject_host_prefix=False,
        ),
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_machine(sfn, definition, name=None, type_="STANDARD"):
    resp = sfn.create_state_machine(
        name=name or unique("sm"),
        definition=json.dumps(definition) if not isinstance(definition, str) else definition,
        roleArn=ROLE,
        type=type_,
    )
    return resp["stateMachineArn"]


def wait_status(sfn, arn, statuses=("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"), timeout=20.0):
    """Polls DescribeExecution until the status is one of `statuses`; returns the description."""
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] in statuses:
            return d
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {arn} is still {d['status']} after {timeout}s, wanted {statuses}")
        time.sleep(0.05)


def history(sfn, arn, **kwargs):
    events, token = [], None
    while True:
        args = dict(executionArn=arn, **kwargs)
        if token:
            args["nextToken"] = token
        r = sfn.get_execution_history(**args)
        events += r["events"]
        token = r.get("nextToken")
        if not token:
            return events


def wait_event(sfn, arn, event_type, timeout=20.0):
    """Waits until the history holds an event of `event_type`; returns the last one."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in history(sfn, arn) if e["type"] == event_type]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            types = [e["type"] for e in history(sfn, arn)]
            raise AssertionError(f"no {event_type} event in {arn} after {timeout}s; events: {types}")
        time.sleep(0.05)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]
