"""AWS service integrations in `oms up` (docs/integrations.md): Task states calling
DynamoDB (AWS's DynamoDB Local), SQS, SNS, EventBridge and S3 (moto's server), with
AWS's request and result shapes, and AWS's error names caught by Catch.

Each state machine is created with boto3 and run with StartExecution on a real
`oms up` whose oms.toml sends the integrations to those servers."""

import json
import time

import boto3
import pytest

from conftest import Server, _free_port
from dynamodb_local import CREDENTIALS, ROOT, DynamoDbLocal
from moto_server import moto_server
from helpers import REGION, create_machine, history, unique, wait_status

TABLE = "integrations"


def aws(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture(scope="module")
def dynamodb():
    try:
        ddb = DynamoDbLocal()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    aws("dynamodb", ddb.endpoint).create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    yield ddb.endpoint
    ddb.stop()


@pytest.fixture(scope="module")
def moto():
    with moto_server(lambda endpoint: aws("sqs", endpoint).list_queues()) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def sfn(tmp_path_factory, dynamodb, moto):
    """An `oms up` sending DynamoDB to DynamoDB Local, Kinesis to a closed port, and
    every other integration to moto."""
    closed = f"http://127.0.0.1:{_free_port()}"
    config = tmp_path_factory.mktemp("integrations") / "oms.toml"
    config.write_text(f"""
[[tasks]]
resource = "arn:aws:states:::dynamodb:*"
aws_endpoint = "{dynamodb}"

[[tasks]]
resource = "arn:aws:states:::aws-sdk:dynamodb:*"
aws_endpoint = "{dynamodb}"
aws_region = "{REGION}"

[[tasks]]
resource = "arn:aws:states:::aws-sdk:kinesis:*"
aws_endpoint = "{closed}"

[[tasks]]
resource = "arn:aws:states:::*"
aws_endpoint = "{moto}"
""")
    data = tmp_path_factory.mktemp("integrations-data")
    server = Server(data, config, env=CREDENTIALS).start()
    yield server.client()
    server.kill()


def run(sfn, states, start, input_=None):
    """Creates a machine of `states`, runs it to its end and returns the description."""
    arn = create_machine(sfn, {"StartAt": start, "States": states})
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(input_ or {}))
    return wait_status(sfn, execution["executionArn"])


def task(resource, parameters, **fields):
    return {"Type": "Task", "Resource": resource, "Parameters": parameters, **fields}


def caught(error, resource, parameters):
    """A machine whose one task must fail with `error`, caught into $.error."""
    return {
        "Call": task(resource, parameters, Catch=[{"ErrorEquals": [error], "ResultPath": "$.error",
                                                   "Next": "Caught"}], End=True),
        "Caught": {"Type": "Pass", "End": True},
    }


def output(d):
    assert d["status"] == "SUCCEEDED", d
    return json.loads(d["output"])


# ---- DynamoDB -----------------------------------------------------------------------

def test_dynamodb_items_round_trip_in_the_apis_shapes(sfn):
    key = {"pk": {"S.$": "$.id"}}
    states = {
        "Put": task("arn:aws:states:::dynamodb:putItem",
                    {"TableName": TABLE, "Item": {"pk": {"S.$": "$.id"}, "qty": {"N": "2"}}},
                    ResultPath="$.put", Next="Update"),
        "Update": task("arn:aws:states:::dynamodb:updateItem",
                       {"TableName": TABLE, "Key": key, "UpdateExpression": "SET qty = qty + :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}, "ReturnValues": "ALL_NEW"},
                       ResultPath="$.update", Next="Get"),
        "Get": task("arn:aws:states:::dynamodb:getItem", {"TableName": TABLE, "Key": key},
                    ResultPath="$.get", Next="Delete"),
        "Delete": task("arn:aws:states:::dynamodb:deleteItem",
                       {"TableName": TABLE, "Key": key, "ReturnValues": "ALL_OLD"},
                       ResultPath="$.delete", Next="GetAgain"),
        "GetAgain": task("arn:aws:states:::aws-sdk:dynamodb:getItem", {"TableName": TABLE, "Key": key},
                         ResultPath="$.gone", End=True),
    }
    out = output(run(sfn, states, "Put", {"id": unique("item")}))
    assert out["put"] == {}
    assert out["update"] == {"Attributes": {"pk": {"S": out["id"]}, "qty": {"N": "3"}}}
    assert out["get"] == {"Item": {"pk": {"S": out["id"]}, "qty": {"N": "3"}}}
    assert out["delete"] == {"Attributes": {"pk": {"S": out["id"]}, "qty": {"N": "3"}}}
    assert out["gone"] == {}


def test_a_failed_condition_is_caught_by_its_aws_name(sfn):
    item = {"TableName": TABLE, "Item": {"pk": {"S.$": "$.id"}},
            "ConditionExpression": "attribute_not_exists(pk)"}
    states = {
        "First": task("arn:aws:states:::dynamodb:putItem", item, ResultPath=None, Next="Again"),
        "Again": task("arn:aws:states:::dynamodb:putItem", item, ResultPath="$.again",
                      Catch=[{"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
                              "ResultPath": "$.error", "Next": "Taken"}], End=True),
        "Taken": {"Type": "Pass", "End": True},
    }
    out = output(run(sfn, states, "First", {"id": unique("once")}))
    assert out["error"]["Error"] == "DynamoDB.ConditionalCheckFailedException"
    assert out["error"]["Cause"].startswith("The conditional request failed (Service: AmazonDynamoDBv2;")
    assert "Error Code: ConditionalCheckFailedException" in out["error"]["Cause"]


def test_sdk_errors_take_the_sdk_service_name(sfn):
    states = caught("DynamoDb.ResourceNotFoundException", "arn:aws:states:::aws-sdk:dynamodb:getItem",
                    {"TableName": "no-such-table", "Key": {"pk": {"S": "x"}}})
    out = output(run(sfn, states, "Call"))
    assert out["error"]["Error"] == "DynamoDb.ResourceNotFoundException"
    assert "Service: DynamoDb" in out["error"]["Cause"]


def test_an_uncaught_error_fails_the_execution_with_it(sfn):
    d = run(sfn, {"Call": task("arn:aws:states:::dynamodb:getItem",
                               {"TableName": "no-such-table", "Key": {"pk": {"S": "x"}}}, End=True)},
            "Call")
    assert d["status"] == "FAILED"
    failed = [e for e in history(sfn, d["executionArn"]) if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["error"] == "DynamoDB.ResourceNotFoundException"


# ---- SQS ----------------------------------------------------------------------------

def test_sqs_send_message_sends_json_bodies_serialized(sfn, moto):
    sqs = aws("sqs", moto)
    url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    states = {"Send": task("arn:aws:states:::sqs:sendMessage",
                           {"QueueUrl": url, "MessageBody": {"order.$": "$.order"}}, End=True)}
    out = output(run(sfn, states, "Send", {"order": "o-1"}))
    assert set(out) >= {"MessageId", "MD5OfMessageBody"}, out
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["MessageId"] for m in got] == [out["MessageId"]]
    assert json.loads(got[0]["Body"]) == {"order": "o-1"}


def test_sqs_to_a_missing_queue_is_caught(sfn, moto):
    missing = f"{moto}/123456789012/{unique('gone')}"
    out = output(run(sfn, caught("SQS.QueueDoesNotExistException", "arn:aws:states:::sqs:sendMessage",
                                 {"QueueUrl": missing, "MessageBody": "m"}), "Call"))
    assert out["error"]["Error"] == "SQS.QueueDoesNotExistException"
    out = output(run(sfn, caught("Sqs.QueueDoesNotExistException", "arn:aws:states:::aws-sdk:sqs:getQueueUrl",
                                 {"QueueName": unique("gone")}), "Call"))
    assert out["error"]["Error"] == "Sqs.QueueDoesNotExistException"


def test_sqs_wait_for_task_token_sends_then_waits_for_the_callback(sfn, moto):
    sqs = aws("sqs", moto)
    url = sqs.create_queue(QueueName=unique("cb"))["QueueUrl"]
    states = {"Ask": task("arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                          {"QueueUrl": url, "MessageBody": {"token.$": "$$.Task.Token"}}, End=True)}
    arn = create_machine(sfn, {"StartAt": "Ask", "States": states})
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    deadline = time.monotonic() + 20
    messages = []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert messages, "the request half never reached the queue"
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=json.loads(messages[0]["Body"])["token"], output='{"ok": true}')
    assert output(wait_status(sfn, execution)) == {"ok": True}


# ---- SNS ----------------------------------------------------------------------------

def test_sns_publish_answers_the_message_id(sfn, moto):
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=unique("t"))["TopicArn"]
    states = {"Publish": task("arn:aws:states:::sns:publish",
                              {"TopicArn": topic, "Message": {"order": "o-2"}, "Subject": "s",
                               "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "x"}}},
                              End=True)}
    out = output(run(sfn, states, "Publish"))
    assert list(out) == ["MessageId"] and out["MessageId"], out


def test_sns_publish_to_a_missing_topic_is_caught(sfn):
    topic = f"arn:aws:sns:{REGION}:123456789012:{unique('none')}"
    out = output(run(sfn, caught("SNS.NotFoundException", "arn:aws:states:::sns:publish",
                                 {"TopicArn": topic, "Message": "m"}), "Call"))
    assert out["error"]["Error"] == "SNS.NotFoundException"
    assert "Service: AmazonSNS" in out["error"]["Cause"]


# ---- EventBridge --------------------------------------------------------------------

def test_put_events_tags_entries_with_the_machine_and_execution(sfn, moto):
    events, sqs = aws("events", moto), aws("sqs", moto)
    url = sqs.create_queue(QueueName=unique("ev"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    source = unique("oms.test")
    rule = unique("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    states = {"Emit": task("arn:aws:states:::events:putEvents",
                           {"Entries": [{"Source": source, "DetailType": "t", "Detail": {"n": 1}}]},
                           End=True)}
    d = run(sfn, states, "Emit")
    out = output(d)
    assert out["FailedEntryCount"] == 0 and len(out["Entries"]) == 1 and out["Entries"][0]["EventId"]
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    event = json.loads(got[0]["Body"])
    assert event["detail"] == {"n": 1}
    assert event["resources"] == [d["stateMachineArn"], d["executionArn"]]


def test_the_aws_sdk_reaches_an_awsjson_1_1_action(sfn):
    out = output(run(sfn, {"List": task("arn:aws:states:::aws-sdk:eventbridge:listEventBuses", {}, End=True)},
                     "List"))
    assert "default" in [b["Name"] for b in out["EventBuses"]]


# ---- S3 -----------------------------------------------------------------------------

def test_s3_objects_round_trip_as_text(sfn, moto):
    bucket = unique("bucket")
    aws("s3", moto).create_bucket(Bucket=bucket)
    states = {
        "Put": task("arn:aws:states:::aws-sdk:s3:putObject",
                    {"Bucket": bucket, "Key": "orders/o 1.json", "Body": {"order": "o-3"},
                     "ContentType": "application/json", "Metadata": {"origin": "oms"}},
                    ResultPath="$.put", Next="Get"),
        "Get": task("arn:aws:states:::aws-sdk:s3:getObject", {"Bucket": bucket, "Key": "orders/o 1.json"},
                    ResultPath="$.get", End=True),
    }
    out = output(run(sfn, states, "Put"))
    assert out["put"]["ETag"].startswith('"'), out
    assert json.loads(out["get"]["Body"]) == {"order": "o-3"}
    assert out["get"]["ContentType"] == "application/json"
    assert out["get"]["ContentLength"] == len(out["get"]["Body"])
    assert out["get"]["Metadata"] == {"origin": "oms"}
    assert out["get"]["ETag"] == out["put"]["ETag"]


def test_a_missing_s3_key_is_caught(sfn, moto):
    bucket = unique("bucket")
    aws("s3", moto).create_bucket(Bucket=bucket)
    out = output(run(sfn, caught("S3.NoSuchKeyException", "arn:aws:states:::aws-sdk:s3:getObject",
                                 {"Bucket": bucket, "Key": "nothing"}), "Call"))
    assert out["error"]["Error"] == "S3.NoSuchKeyException"


def test_an_object_too_large_for_a_result_is_refused_unread(sfn, moto):
    bucket = unique("bucket")
    s3 = aws("s3", moto)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=b"x" * (2 * 1024 * 1024))
    d = run(sfn, {"Get": task("arn:aws:states:::aws-sdk:s3:getObject", {"Bucket": bucket, "Key": "big"},
                              End=True)}, "Get")
    assert d["status"] == "FAILED"
    assert d["error"] == "States.DataLimitExceeded"
    assert "answered 2097152 bytes" in d["cause"]


# ---- What oms cannot do, said clearly ------------------------------------------------

def test_an_unreachable_endpoint_is_a_client_exception(sfn):
    out = output(run(sfn, caught("Kinesis.SdkClientException", "arn:aws:states:::aws-sdk:kinesis:listStreams",
                                 {}), "Call"))
    assert "cannot reach" in out["error"]["Cause"]


def test_a_service_oms_cannot_call_names_what_it_can(sfn):
    out = output(run(sfn, caught("States.TaskFailed", "arn:aws:states:::aws-sdk:glacier:listVaults", {}),
                     "Call"))
    assert "cannot call the service 'glacier'" in out["error"]["Cause"]
    assert "dynamodb" in out["error"]["Cause"]


def test_sync_jobs_are_refused_clearly(sfn):
    out = output(run(sfn, caught("States.TaskFailed", "arn:aws:states:::glue:startJobRun.sync",
                                 {"JobName": "j"}), "Call"))
    assert "oms does not run .sync jobs of glue" in out["error"]["Cause"]


def test_parameters_oms_cannot_send_fail_naming_the_member(sfn):
    # States.Runtime: no Catch or Retry can mend the definition's parameters.
    d = run(sfn, caught("States.ALL", "arn:aws:states:::aws-sdk:s3:getObject", {"Bucket": "b"}), "Call")
    assert d["status"] == "FAILED"
    assert d["error"] == "States.Runtime"
    assert "s3:getObject: Parameters need Key (a string)" in d["cause"]
    d = run(sfn, caught("States.ALL", "arn:aws:states:::sns:publish", {"Mesage": "typo"}), "Call")
    assert d["error"] == "States.Runtime"
    assert "publish has no member Mesage" in d["cause"]


def test_without_a_rule_the_error_names_the_rule_to_add(server):
    client = server.client()
    out = output(run(client, caught("States.TaskFailed", "arn:aws:states:::dynamodb:getItem",
                                    {"TableName": TABLE, "Key": {"pk": {"S": "x"}}}), "Call"))
    assert 'resource = "arn:aws:states:::dynamodb:*"' in out["error"]["Cause"]
    assert "aws_endpoint" in out["error"]["Cause"]


def test_a_bad_endpoint_stops_oms_up_at_start(tmp_path):
    config = tmp_path / "oms.toml"
    config.write_text('[[tasks]]\nresource = "arn:aws:states:::sqs:*"\naws_endpoint = "localhost:9324"\n')
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(pytest.fail.Exception) as e:
        Server(data, config).start()
    assert 'aws_endpoint = "localhost:9324" must be an http:// or https:// URL' in str(e.value)
