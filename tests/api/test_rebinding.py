"""DNS rebinding: a page on evil.example, whose name the attacker points at 127.0.0.1,
reaches a loopback `oms up` as its own origin. Its requests say `Host: evil.example`,
and a loopback server refuses them on every route (403 Request.HostNotAllowed), while
boto3, the CLI and browsers on localhost / 127.0.0.1 keep working (docs/security.md).
"""

import http.client
import json
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import Server
from helpers import make_client

# Every kind of route: health, the Orders API, the console, the Step Functions API.
ROUTES = [
    ("GET", "/health", {}),
    ("GET", "/orders", {}),
    ("POST", "/orders", {"Content-Type": "application/json"}),
    ("GET", "/console", {}),
    ("GET", "/openapi.json", {}),
    ("GET", "/no/such/route", {}),
    ("POST", "/", {"X-Amz-Target": "AWSStepFunctions.ListStateMachines",
                   "Content-Type": "application/x-amz-json-1.0"}),
]


def send(server, method, path, host, headers=None, body=b"{}"):
    """One request to `server` (on 127.0.0.1) that says it is for `host`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        data = body if method in ("POST", "PUT") else b""
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def assert_refused(status, headers, body, host, sdk=False):
    """A 403 naming the rule: in AWS's shape for an SDK's request, else the Orders API's."""
    assert status == 403, (host, status, body)
    err = json.loads(body)
    if sdk:
        assert headers.get("content-type") == "application/x-amz-json-1.0", headers
        assert headers.get("x-amzn-errortype") == err["__type"] == "Request.HostNotAllowed", (headers, err)
    else:
        assert headers.get("content-type", "").startswith("application/json"), headers
        assert err["code"] == "Request.HostNotAllowed", err
    assert host in err["message"] and "rebinding" in err["message"], err


@pytest.mark.parametrize("method,path,headers", ROUTES)
def test_a_foreign_host_is_refused_on_every_route(server, method, path, headers):
    for host in (f"evil.example:{server.port}", "evil.example", f"127.0.0.1.evil.example:{server.port}"):
        assert_refused(*send(server, method, path, host, headers), host, sdk="X-Amz-Target" in headers)


def test_a_loopback_name_on_another_port_is_refused(server):
    # Another port is another origin: a page served there is not this server's.
    host = f"localhost:{server.port + 1 if server.port < 65535 else 1}"
    assert_refused(*send(server, "GET", "/orders", host), host)


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]", "app.localhost"])
def test_loopback_names_on_the_servers_port_are_served(server, name):
    host = f"{name}:{server.port}"
    status, _, body = send(server, "GET", "/orders?limit=1", host)
    assert status == 200, (host, status, body)
    status, _, body = send(server, "GET", "/console", host)
    assert status == 200 and b"<html" in body.lower(), (host, status)


def test_the_usual_clients_still_work(server, sfn):
    # boto3 sends Host: 127.0.0.1:PORT.
    assert "stateMachines" in sfn.list_state_machines()
    # So does the CLI.
    out = subprocess.run([server.bin, "orders", "list", "--endpoint", server.endpoint],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_boto3_called_by_a_foreign_name_gets_the_code(server):
    client = make_client(server.endpoint)

    def foreign_host(request, **_):
        if "Host" in request.headers:
            del request.headers["Host"]
        request.headers["Host"] = f"evil.example:{server.port}"

    client.meta.events.register("before-send.*", foreign_host)
    with pytest.raises(ClientError) as e:
        client.list_state_machines()
    assert e.value.response["Error"]["Code"] == "Request.HostNotAllowed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_names_given_by_flag_or_oms_toml_are_served(tmp_path):
    config = tmp_path / "oms.toml"
    config.write_text('[http]\nallowed_hosts = ["oms.toml.test"]\n')
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, config, extra_args=["--allowed-host", "oms.flag.test:8443"])
    try:
        s.start()
        for host in ("oms.toml.test", f"oms.toml.test:{s.port}", "oms.flag.test:8443"):
            status, _, body = send(s, "GET", "/orders?limit=1", host)
            assert status == 200, (host, status, body)
        # A name with a port is allowed on that port only.
        assert_refused(*send(s, "GET", "/orders", "oms.flag.test:9999"), "oms.flag.test:9999")
        assert_refused(*send(s, "GET", "/orders", "evil.example"), "evil.example")
    finally:
        s.kill()


def test_off_loopback_any_name_is_served_with_credentials(tmp_path):
    # Bound to every interface the server is reached by whatever name the network
    # gives it; credentials (which a rebinding page lacks) guard it instead.
    data = tmp_path / "data"
    data.mkdir()
    s = Server(data, listen_host="0.0.0.0")
    try:
        s.start()
        token = json.loads((data / "credentials.json").read_text())["token"]
        status, _, body = send(s, "GET", "/orders?limit=1", "oms.example.com")
        assert status == 401 and json.loads(body)["code"] == "Auth.Required", (status, body)
        status, _, body = send(s, "GET", "/orders?limit=1", "oms.example.com",
                               {"Authorization": f"Bearer {token}"})
        assert status == 200, (status, body)
    finally:
        s.kill()
