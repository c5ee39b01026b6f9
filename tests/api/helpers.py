"""Helpers shared by the API tests (imported by the test modules and conftest)."""

import json
import socket
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/oms-tests"


def wait_listening(proc, port, timeout):
    """Waits until something listens on loopback `port`; False if `proc` exits first or
    `timeout` seconds pass (the caller fails the test, saying what did not start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


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


def task_errors(sfn, execution_arn):
    """The errors an execution's tasks failed or timed out with, in history order (every
    page), with those of the children its tasks ran (the order saga's Express child,
    where its forward steps retry) where the task that ran them ends: the faults
    injected that the saga retried past or caught."""
    details = ("taskFailedEventDetails", "lambdaFunctionFailedEventDetails", "taskTimedOutEventDetails")
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    out = []
    for page in pages:
        for e in page["events"]:
            child = child_execution(e)
            if child:
                try:
                    out += task_errors(sfn, child)
                except sfn.exceptions.ExecutionDoesNotExist:
                    # A succeeded parent deletes its Express children that met no error
                    # (docs/store.md, "Express children"): none to find in them.
                    pass
            out += [e[d].get("error", "?") for d in details if d in e]
    return out


def child_execution(event):
    """The child execution a startExecution task's end names (its output when it
    succeeded, its cause when it failed), or None."""
    for key, field in (("taskSucceededEventDetails", "output"), ("taskFailedEventDetails", "cause")):
        d = event.get(key)
        if d and d.get("resourceType") == "states" and d.get("resource", "").startswith("startExecution"):
            try:
                return json.loads(d.get(field) or "{}").get("ExecutionArn")
            except ValueError:
                return None
    return None


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


def wait_executions(sfn, timeout=20.0, **list_args):
    """The executions ListExecutions answers once there are any: a nested child or a
    Map Run's child is started by a task of its own, just after the parent's step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sfn.list_executions(**list_args)["executions"]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no executions for {list_args} within {timeout} s")


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


# ---- the Orders API ----------------------------------------------------------------

ADDRESS = {"name": "Ada", "line1": "1 Main St", "city": "Boston", "postal_code": "02101", "country": "US"}
_counter = [0]


def order_body(**over):
    _counter[0] += 1
    body = {
        "order_id": f"it-{int(time.time() * 1000) % 10**8}-{_counter[0]}",
        "customer_id": "cust-it",
        "lines": [{"sku": "SOCKS-3PK", "quantity": 1}],
        "payment": {"token": "tok_visa"},
        "ship_to": dict(ADDRESS),
    }
    body.update(over)
    return body


class Api:
    def __init__(self, endpoint):
        self.endpoint = endpoint

    def call(self, method, path, body=None, headers=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None, want=(200, 202)):
        status, out = self.call(method, path, body)
        assert status in want, (method, path, status, out)
        return out

    def wait(self, order_id, until, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            view = self.ok("GET", f"/orders/{order_id}")
            if until(view):
                return view
            if time.monotonic() > deadline:
                pytest.fail(f"order {order_id} never got there: {json.dumps(view, indent=1)}")
            time.sleep(0.1)

    def finish(self, order_id, timeout=60):
        """Waits until the order's execution has ended."""
        return self.wait(order_id, lambda v: v["execution_status"] not in (None, "RUNNING"), timeout)

    def import_feed(self, kind, text, content_type="text/csv", feed_id=None):
        """POST /imports: the status and the report (or error)."""
        path = f"/imports?kind={kind}" + (f"&feed_id={feed_id}" if feed_id else "")
        return self.call("POST", path, text.encode(), {"Content-Type": content_type})

    def stock(self):
        return {(r["sku"], r["warehouse_id"]): (r["on_hand"], r["reserved"], r["shipped"])
                for r in self.ok("GET", "/inventory")["inventory"]}


def read_stream(endpoint, want, after=None, last_event_id=None, timeout=20):
    """The first `want` messages of GET /events as (id, event, data) tuples."""
    path = "/events" if after is None else f"/events?after={after}"
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    out, frame = [], {}
    with urllib.request.urlopen(urllib.request.Request(endpoint + path, headers=headers),
                                timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        while len(out) < want:
            line = r.readline().decode().rstrip("\n")
            if line == "":
                if frame:
                    out.append((int(frame["id"]), frame["event"], json.loads(frame["data"])))
                frame = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                frame[key] = value[1:] if value.startswith(" ") else value
    return out
