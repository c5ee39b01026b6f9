"""HTTP Tasks (`arn:aws:states:::http:invoke`) in `oms up` (docs/integrations.md, "HTTP
Tasks"): state machines created with boto3 call a real HTTP server this test starts on
a free loopback port, authorized by the EventBridge connections oms.toml defines
(API_KEY, BASIC, OAUTH_CLIENT_CREDENTIALS), with AWS's result shape and error names
caught and retried as on AWS."""

import base64
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import Server, _free_port, oms_bin
from helpers import create_machine, history, wait_status

HTTP = "arn:aws:states:::http:invoke"
SECRETS = {"OMS_TEST_API_KEY": "key-123", "OMS_TEST_PASSWORD": "pass word",
           "OMS_TEST_CLIENT_SECRET": "client-secret"}


def connection(name):
    """A ConnectionArn as AWS writes it: oms matches the name, whatever the id."""
    return f"arn:aws:events:us-east-1:123456789012:connection/{name}/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


class Api(BaseHTTPRequestHandler):
    """Records every request; /token is an OAuth client-credentials endpoint, /missing
    answers 404, anything else echoes the request as JSON."""

    def _serve(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        url = urlsplit(self.path)
        seen = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        self.server.requests.append(seen)
        if url.path == "/token":
            return self._token(seen)
        status = 404 if url.path == "/missing" else 200
        answer = {"message": "no such customer"} if status == 404 else {"seen": seen}
        self._answer(status, answer)

    def _token(self, seen):
        expected = "Basic " + base64.b64encode(b"client:client-secret").decode()
        form = parse_qs(seen["body"])
        if seen["headers"].get("authorization") != expected or form.get("grant_type") != ["client_credentials"]:
            return self._answer(401, {"error": "invalid_client"})
        self.server.tokens_issued += 1
        self._answer(200, {"access_token": f"token-{self.server.tokens_issued}",
                           "token_type": "Bearer", "expires_in": 3600})

    def _answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    server.requests, server.tokens_issued = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def config_text(api_url):
    return f"""
[[connections]]
name = "apikey"
authorization_type = "API_KEY"
api_key = {{ name = "x-api-key", value = "env:OMS_TEST_API_KEY" }}
invocation = {{ headers = {{ "X-Tenant" = "t-1" }}, query = {{ tenant = "t-1" }} }}

[[connections]]
name = "basic"
authorization_type = "BASIC"
basic = {{ username = "user", password = "env:OMS_TEST_PASSWORD" }}
endpoints = ["{api_url}/*"]

[[connections]]
name = "oauth"
authorization_type = "OAUTH_CLIENT_CREDENTIALS"
oauth = {{ authorization_endpoint = "{api_url}/token", client_id = "client", client_secret = "env:OMS_TEST_CLIENT_SECRET", scope = "orders.read" }}

[[connections]]
name = "revoked"
authorization_type = "OAUTH_CLIENT_CREDENTIALS"
oauth = {{ authorization_endpoint = "{api_url}/token", client_id = "client", client_secret = "wrong" }}
"""


@pytest.fixture(scope="module")
def sfn(tmp_path_factory, api):
    config = tmp_path_factory.mktemp("http-task") / "oms.toml"
    config.write_text(config_text(url(api)))
    server = Server(tmp_path_factory.mktemp("http-task-data"), config, env=SECRETS).start()
    yield server.client()
    server.kill()


def url(api, path=""):
    return f"http://127.0.0.1:{api.server_address[1]}{path}"


def http_task(parameters, **fields):
    return {"Type": "Task", "Resource": HTTP, "Parameters": parameters, **fields}


def run(sfn, states, start="Call", input_=None):
    arn = create_machine(sfn, {"StartAt": start, "States": states})
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(input_ or {}))
    return wait_status(sfn, execution["executionArn"], timeout=30)


def output(d):
    assert d["status"] == "SUCCEEDED", d
    return json.loads(d["output"])


def last_request(api, path):
    matching = [r for r in api.requests if r["path"] == path]
    assert matching, f"the server saw no request for {path}: {api.requests}"
    return matching[-1]


def test_get_sends_query_parameters_and_the_api_key(sfn, api):
    states = {"Call": http_task({
        "ApiEndpoint.$": "States.Format('{}/customers/{}', $.base, $.id)", "Method": "GET",
        "Authentication": {"ConnectionArn": connection("apikey")},
        "QueryParameters": {"currency": "usd", "q": "a b", "tag": ["x", "y"]}}, End=True)}
    out = output(run(sfn, states, input_={"base": url(api), "id": "c-42"}))
    assert out["StatusCode"] == 200 and out["StatusText"] == "OK"
    assert out["Headers"]["content-type"] == ["application/json"]
    seen = out["ResponseBody"]["seen"]
    assert seen == last_request(api, "/customers/c-42")
    # The connection's query parameter and header are added; the key comes from env.
    assert seen["query"] == {"currency": ["usd"], "q": ["a b"], "tag": ["x", "y"], "tenant": ["t-1"]}
    assert seen["headers"]["x-api-key"] == "key-123"
    assert seen["headers"]["x-tenant"] == "t-1"
    assert seen["headers"]["user-agent"] == "Amazon|StepFunctions|HttpInvoke|us-east-1"
    assert seen["headers"]["range"] == "bytes=0-262144"


def test_post_sends_a_json_body_with_basic_authorization(sfn, api):
    states = {"Call": http_task({
        "ApiEndpoint": url(api, "/orders"), "Method": "POST",
        "Authentication": {"ConnectionArn": connection("basic")},
        "Headers": {"Idempotency-Key": "k-1"},
        "RequestBody": {"order": {"id.$": "$.id", "qty": 2}}}, ResultSelector={"status.$": "$.StatusCode"}, End=True)}
    assert output(run(sfn, states, input_={"id": "o-7"})) == {"status": 200}
    seen = last_request(api, "/orders")
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == {"order": {"id": "o-7", "qty": 2}}
    assert seen["headers"]["content-type"] == "application/json; charset=UTF-8"
    assert seen["headers"]["idempotency-key"] == "k-1"
    assert seen["headers"]["authorization"] == "Basic " + base64.b64encode(b"user:pass word").decode()


def test_url_encoded_transform_sends_a_form(sfn, api):
    states = {"Call": http_task({
        "ApiEndpoint": url(api, "/invoices"), "Method": "POST",
        "Authentication": {"ConnectionArn": connection("basic")},
        "Headers": {"Content-Type": "application/x-www-form-urlencoded"},
        "RequestBody": {"description": "Monthly subscription", "metadata": {"order_details": "report"},
                        "items": ["a", "b"]},
        "Transform": {"RequestBodyEncoding": "URL_ENCODED",
                      "RequestEncodingOptions": {"ArrayFormat": "BRACKETS"}}}, End=True)}
    output(run(sfn, states))
    seen = last_request(api, "/invoices")
    assert seen["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert seen["body"] == ("description=Monthly%20subscription&metadata%5Border_details%5D=report"
                            "&items%5B%5D=a&items%5B%5D=b")
    assert parse_qs(seen["body"]) == {"description": ["Monthly subscription"],
                                      "metadata[order_details]": ["report"], "items[]": ["a", "b"]}


def test_oauth_fetches_a_token_once_and_sends_it_as_bearer(sfn, api):
    call = {"ApiEndpoint": url(api, "/private"), "Method": "GET",
            "InvocationConfig": {"ConnectionArn": connection("oauth")}}
    states = {"First": http_task(call, ResultPath="$.first", Next="Second"),
              "Second": http_task(call, ResultPath="$.second", End=True)}
    before = api.tokens_issued
    out = output(run(sfn, states, start="First"))
    token = out["first"]["ResponseBody"]["seen"]["headers"]["authorization"]
    assert token.startswith("Bearer token-")
    assert out["second"]["ResponseBody"]["seen"]["headers"]["authorization"] == token
    assert api.tokens_issued - before <= 1, "the token is cached until it expires"
    token_request = last_request(api, "/token")
    assert parse_qs(token_request["body"]) == {"grant_type": ["client_credentials"], "scope": ["orders.read"]}


def test_a_404_is_caught_as_its_status_code_error(sfn, api):
    states = {
        "Call": http_task({"ApiEndpoint": url(api, "/missing"), "Method": "GET",
                           "Authentication": {"ConnectionArn": connection("apikey")}},
                          Catch=[{"ErrorEquals": ["States.Http.StatusCode.404"], "ResultPath": "$.error",
                                  "Next": "NotFound"}], End=True),
        "NotFound": {"Type": "Pass", "End": True},
    }
    error = output(run(sfn, states))["error"]
    assert error["Error"] == "States.Http.StatusCode.404"
    cause = json.loads(error["Cause"])
    assert cause["StatusCode"] == 404 and cause["StatusText"] == "Not Found"
    assert cause["ResponseBody"] == {"message": "no such customer"}


def test_a_refused_connection_is_retried_then_caught_as_socket_error(sfn):
    closed = f"http://127.0.0.1:{_free_port()}/nothing"
    states = {
        "Call": http_task({"ApiEndpoint": closed, "Method": "GET",
                           "Authentication": {"ConnectionArn": connection("apikey")}},
                          Retry=[{"ErrorEquals": ["States.Http.Socket"], "IntervalSeconds": 1,
                                  "MaxAttempts": 2, "BackoffRate": 1}],
                          Catch=[{"ErrorEquals": ["States.Http.Socket"], "ResultPath": "$.error",
                                  "Next": "Down"}], End=True),
        "Down": {"Type": "Pass", "End": True},
    }
    d = run(sfn, states)
    assert output(d)["error"]["Error"] == "States.Http.Socket"
    failed = [e for e in history(sfn, d["executionArn"]) if e["type"] == "TaskFailed"]
    assert len(failed) == 3, "one attempt and two retries"
    assert all(e["taskFailedEventDetails"]["error"] == "States.Http.Socket" for e in failed)
    cause = failed[0]["taskFailedEventDetails"]["cause"]
    assert closed in cause
    # The connection's query parameters (which may be secrets) stay out of the history.
    assert "tenant" not in cause, cause


def test_an_unknown_connection_names_the_field_and_the_section_to_add(sfn, api):
    states = {"Call": http_task({"ApiEndpoint": url(api, "/x"), "Method": "GET",
                                 "Authentication": {"ConnectionArn": connection("payments")}}, End=True)}
    d = run(sfn, states)
    assert d["status"] == "FAILED"
    assert d["error"] == "Events.ConnectionResource.ResourceNotFound"
    assert "Parameters.Authentication.ConnectionArn" in d["cause"]
    assert '[[connections]] section with name = "payments"' in d["cause"]


def test_a_forbidden_header_fails_with_states_runtime_before_sending(sfn, api):
    before = len(api.requests)
    states = {"Call": http_task({"ApiEndpoint": url(api, "/x"), "Method": "GET",
                                 "Authentication": {"ConnectionArn": connection("apikey")},
                                 "Headers": {"Authorization": "Bearer mine"}}, End=True)}
    d = run(sfn, states)
    assert (d["status"], d["error"]) == ("FAILED", "States.Runtime")
    assert "'Authorization' is not allowed" in d["cause"]
    assert len(api.requests) == before


def test_oms_up_refuses_a_connection_whose_secret_is_not_set(tmp_path, api):
    config = tmp_path / "oms.toml"
    config.write_text(config_text(url(api)))
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    data = tmp_path / "data"
    data.mkdir()
    r = subprocess.run([oms_bin(), "up", "--listen", f"127.0.0.1:{_free_port()}", "--data-dir", str(data),
                        "--config", str(config)], env=env, cwd=data, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    message = r.stdout + r.stderr
    assert 'name = "apikey"' in message and "OMS_TEST_API_KEY, which is not set" in message, message


def test_a_connection_sends_its_credentials_only_to_its_endpoints(sfn, api):
    before = len(api.requests)
    elsewhere = f"http://127.0.0.1:{_free_port()}/collect"
    states = {"Call": http_task({"ApiEndpoint": elsewhere, "Method": "GET",
                                 "Authentication": {"ConnectionArn": connection("basic")}}, End=True)}
    d = run(sfn, states)
    assert (d["status"], d["error"]) == ("FAILED", "Events.ConnectionResource.AccessDenied")
    assert elsewhere in d["cause"] and "endpoints" in d["cause"]
    assert len(api.requests) == before


def test_an_express_machine_calls_the_api_in_start_sync_execution(sfn, api):
    definition = {"StartAt": "Call", "States": {"Call": http_task({
        "ApiEndpoint": url(api, "/express"), "Method": "PATCH",
        "Authentication": {"ConnectionArn": connection("apikey")}, "RequestBody": {"n.$": "$.n"}},
        ResultSelector={"status.$": "$.StatusCode", "body.$": "$.ResponseBody.seen.body"}, End=True)}}
    arn = create_machine(sfn, definition, type_="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 3}')
    assert r["status"] == "SUCCEEDED", r
    assert json.loads(r["output"]) == {"status": 200, "body": '{"n":3}'}


def test_state_calls_an_http_task_and_traces_the_exchange(sfn, api):
    state = http_task({"ApiEndpoint": url(api, "/traced"), "Method": "POST",
                       "Authentication": {"ConnectionArn": connection("apikey")},
                       "RequestBody": {"n.$": "$.n"}}, End=True)
    r = sfn.test_state(definition=json.dumps(state), input='{"n": 5}', inspectionLevel="TRACE")
    assert r["status"] == "SUCCEEDED", r
    out = json.loads(r["output"])
    assert out["StatusCode"] == 200 and out["ResponseBody"]["seen"]["body"] == '{"n":5}'
    # The server got the real key; the trace shows the connection's values masked.
    assert last_request(api, "/traced")["headers"]["x-api-key"] == "key-123"
    request, response = r["inspectionData"]["request"], r["inspectionData"]["response"]
    assert (request["protocol"], request["method"]) == ("http", "POST")
    assert request["url"] == url(api, "/traced") + "?tenant=%2A%2A%2A%2A%2A"
    headers = json.loads(request["headers"])
    assert headers["x-api-key"] == "*****" and headers["X-Tenant"] == "*****"
    assert request["body"] == '{"n":5}'
    assert (response["statusCode"], response["statusMessage"]) == ("200", "OK")
    assert json.loads(response["body"])["seen"]["path"] == "/traced"

    revealed = sfn.test_state(definition=json.dumps(state), input='{"n": 5}', inspectionLevel="TRACE",
                              revealSecrets=True)
    assert json.loads(revealed["inspectionData"]["request"]["headers"])["x-api-key"] == "key-123"
    info = sfn.test_state(definition=json.dumps(state), input='{"n": 5}')
    assert "request" not in info.get("inspectionData", {})


def test_state_reports_an_http_error_as_its_catcher_takes_it(sfn, api):
    state = http_task({"ApiEndpoint": url(api, "/missing"), "Method": "GET",
                       "Authentication": {"ConnectionArn": connection("apikey")}},
                      Catch=[{"ErrorEquals": ["States.Http.StatusCode.404"], "Next": "NotFound"}], End=True)
    definition = {"StartAt": "Call", "States": {"Call": state, "NotFound": {"Type": "Pass", "End": True}}}
    r = sfn.test_state(definition=json.dumps(definition), stateName="Call", inspectionLevel="TRACE")
    assert (r["status"], r["nextState"]) == ("CAUGHT_ERROR", "NotFound"), r
    assert r["error"] == "States.Http.StatusCode.404"
    assert r["inspectionData"]["response"]["statusCode"] == "404"


def test_state_does_not_stand_an_inner_http_task_for_a_whole_parallel(sfn, api):
    inner = http_task({"ApiEndpoint": url(api, "/inner"), "Method": "GET",
                       "Authentication": {"ConnectionArn": connection("apikey")}}, End=True)
    parallel = {"Type": "Parallel", "Branches": [{"StartAt": "Inner", "States": {"Inner": inner}}], "End": True}
    # As on AWS, TestState takes a Parallel (or Map) only with a mock: its inner HTTP
    # Task is not called in its place.
    before = len(api.requests)
    with pytest.raises(sfn.exceptions.InvalidDefinition, match="does not support Map or Parallel"):
        sfn.test_state(definition=json.dumps(parallel))
    assert len(api.requests) == before


def test_a_refused_oauth_token_fails_with_invalid_connection_state(sfn, api):
    before = len([r for r in api.requests if r["path"] != "/token"])
    states = {"Call": http_task({"ApiEndpoint": url(api, "/private"), "Method": "GET",
                                 "Authentication": {"ConnectionArn": connection("revoked")}}, End=True)}
    d = run(sfn, states)
    assert (d["status"], d["error"]) == ("FAILED", "Events.ConnectionResource.InvalidConnectionState")
    assert "answered 401" in d["cause"] and "invalid_client" in d["cause"]
    assert len([r for r in api.requests if r["path"] != "/token"]) == before


def _certificates(directory):
    """A CA and a certificate it signs for 127.0.0.1, written as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    def cert(subject, issuer, key, signer, ca):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
        return b.sign(signer, hashes.SHA256())
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oms test CA")])
    ca = cert(ca_name, ca_name, ca_key, ca_key, True)
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, leaf_key, ca_key, False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "leaf.key").write_bytes(leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"


def test_an_https_endpoint_is_called_over_tls(tmp_path):
    """ApiEndpoints are https:// on AWS: the call goes through the SDK's TLS connector,
    which trusts SSL_CERT_FILE's CA here."""
    import ssl

    ca, leaf, key = _certificates(tmp_path)
    api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    api.requests, api.tokens_issued = [], 0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, key)
    api.socket = context.wrap_socket(api.socket, server_side=True)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    config = tmp_path / "oms.toml"
    config.write_text(config_text(url(api)))
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data, config, env={**SECRETS, "SSL_CERT_FILE": str(ca)}).start()
    try:
        endpoint = f"https://127.0.0.1:{api.server_address[1]}/secure"
        states = {"Call": http_task({"ApiEndpoint": endpoint, "Method": "GET",
                                     "Authentication": {"ConnectionArn": connection("apikey")}}, End=True)}
        out = output(run(server.client(), states))
        assert out["ResponseBody"]["seen"]["path"] == "/secure"
        assert out["ResponseBody"]["seen"]["headers"]["x-api-key"] == "key-123"
    finally:
        server.kill()
        api.shutdown()
        api.server_close()
