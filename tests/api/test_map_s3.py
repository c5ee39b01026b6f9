"""A distributed Map's ItemReader and ResultWriter against real S3 stand-ins: moto's
server (through `aws_endpoint`, as a team's account would be reached) and a local
folder (`s3_folder`, no S3 server at all). Their requests go where the machine's own
`aws-sdk:s3` Tasks go, so a child can read the object its item names."""

import json

import boto3
import pytest

from conftest import Server
from dynamodb_local import CREDENTIALS
from moto_server import moto_server
from helpers import REGION, create_machine, wait_status

BUCKET = "orders-in"
LINES = "sku,qty\nA-1,2\nB-2,1\nC-3,5\n"


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture(scope="module")
def moto():
    with moto_server(lambda endpoint: s3_client(endpoint).list_buckets()) as endpoint:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="batches/lines.csv", Body=LINES)
        for n in range(3):
            s3.put_object(Bucket=BUCKET, Key=f"orders/o{n}.json",
                          Body=json.dumps({"order": n, "lines": [n, n + 1]}))
        yield endpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("buckets")
    (root / BUCKET / "batches").mkdir(parents=True)
    (root / BUCKET / "batches" / "lines.csv").write_text(LINES)
    (root / BUCKET / "feed.jsonl").write_text('{"sku": "A-1"}\n\n{"sku": "Z-9"}\n')
    return root


def oms_up(tmp_path_factory, rule):
    config = tmp_path_factory.mktemp("item-reader") / "oms.toml"
    config.write_text(f"""
[[tasks]]
resource = "arn:aws:states:::aws-sdk:s3:*"
{rule}
""")
    return Server(tmp_path_factory.mktemp("item-reader-data"), config, env=CREDENTIALS).start()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, moto, folder):
    """One `oms up` reaching S3 at moto, one with its buckets in a folder."""
    on_moto = oms_up(tmp_path_factory, f'aws_endpoint = "{moto}"')
    on_folder = oms_up(tmp_path_factory, f's3_folder = "{folder}"')
    yield {"moto": on_moto.client(), "folder": on_folder.client()}
    on_moto.kill()
    on_folder.kill()


def reader_map(reader, processor_states, start="P", **extra):
    return {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "ItemReader": reader, "End": True,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                          "StartAt": start, "States": processor_states},
        **extra}}}


ECHO = {"P": {"Type": "Pass", "End": True}}


def run(sfn, definition, input_=None):
    machine = create_machine(sfn, definition)
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(input_ or {}))["executionArn"]
    return wait_status(sfn, arn)


def csv_reader(key_path=None, **config):
    params = {"Bucket": BUCKET, "Key": "batches/lines.csv"}
    if key_path:
        params = {"Bucket": BUCKET, "Key.$": key_path}
    return {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", **config},
            "Parameters": params}


@pytest.mark.parametrize("where", ["moto", "folder"])
def test_a_csv_object_is_read_into_items(servers, where):
    done = run(servers[where], reader_map(csv_reader("$.key", MaxItems=2), ECHO),
               input_={"key": "batches/lines.csv"})
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"]) == [{"sku": "A-1", "qty": "2"}, {"sku": "B-2", "qty": "1"}]


def test_a_listing_gives_one_child_per_object_which_reads_it(servers):
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2",
              "Parameters": {"Bucket": BUCKET, "Prefix": "orders/"}}
    read_it = {"Get": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                       "Parameters": {"Bucket": BUCKET, "Key.$": "$.Key"},
                       "ResultSelector": {"order.$": "States.StringToJson($.Body)"},
                       "OutputPath": "$.order", "End": True}}
    done = run(servers["moto"], reader_map(reader, read_it, start="Get"))
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert [o["order"] for o in json.loads(done["output"])] == [0, 1, 2]


def test_jsonl_in_a_folder_bucket_skips_blank_lines(servers):
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSONL"},
              "Parameters": {"Bucket": BUCKET, "Key": "feed.jsonl"}}
    done = run(servers["folder"], reader_map(reader, ECHO))
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"]) == [{"sku": "A-1"}, {"sku": "Z-9"}]


@pytest.mark.parametrize("where", ["moto", "folder"])
def test_a_missing_object_is_item_reader_failed_and_catchable(servers, where):
    definition = reader_map(csv_reader("$.key"), ECHO)
    definition["States"]["Fan"]["Catch"] = [
        {"ErrorEquals": ["States.ItemReaderFailed"], "Next": "Caught"}]
    definition["States"]["Caught"] = {"Type": "Pass", "End": True}
    done = run(servers[where], definition, input_={"key": "batches/none.csv"})
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    caught = json.loads(done["output"])
    assert caught["Error"] == "States.ItemReaderFailed"
    assert "S3.NoSuchKeyException" in caught["Cause"]


def writer_map(**writer):
    writer = {"Resource": "arn:aws:states:::s3:putObject",
              "Parameters": {"Bucket": BUCKET, "Prefix": "results"}, **writer}
    definition = reader_map(csv_reader(), {"P": {"Type": "Choice", "Choices": [
        {"Variable": "$.sku", "StringEquals": "B-2", "Next": "Bad"}], "Default": "Ok"},
        "Bad": {"Type": "Fail", "Error": "Line.Bad", "Cause": "B-2"},
        "Ok": {"Type": "Pass", "Parameters": {"sku.$": "$.sku"}, "End": True}},
        ResultWriter=writer, ToleratedFailureCount=1)
    return definition


def test_results_are_exported_to_a_folder_bucket_with_a_manifest(servers, folder):
    done = run(servers["folder"], writer_map(WriterConfig={"Transformation": "COMPACT"}))
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    out = json.loads(done["output"])
    assert ":mapRun:" in out["MapRunArn"]
    details = out["ResultWriterDetails"]
    assert details["Bucket"] == BUCKET and details["Key"].startswith("results/")
    manifest = json.loads((folder / BUCKET / details["Key"]).read_text())
    assert manifest["MapRunArn"] == out["MapRunArn"]
    succeeded = manifest["ResultFiles"]["SUCCEEDED"][0]
    rows = json.loads((folder / BUCKET / succeeded["Key"]).read_text())
    assert rows == [{"sku": "A-1"}, {"sku": "C-3"}]
    failed = json.loads((folder / BUCKET / manifest["ResultFiles"]["FAILED"][0]["Key"]).read_text())
    assert [(f["Status"], f["Error"]) for f in failed] == [("FAILED", "Line.Bad")]
    assert json.loads(failed[0]["Input"]) == {"sku": "B-2", "qty": "1"}


def test_results_are_exported_to_s3_as_json_lines(servers, moto):
    done = run(servers["moto"], writer_map(WriterConfig={"OutputType": "JSONL"}))
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    key = json.loads(done["output"])["ResultWriterDetails"]["Key"]
    s3 = s3_client(moto)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    lines_key = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"]
    assert lines_key.endswith("SUCCEEDED_0.jsonl")
    lines = s3.get_object(Bucket=BUCKET, Key=lines_key)["Body"].read().decode().splitlines()
    records = [json.loads(line) for line in lines]
    # Exported without a Transformation, each line is the child's record.
    assert [json.loads(r["Output"]) for r in records] == [{"sku": "A-1"}, {"sku": "C-3"}]
    # The children are Express executions of the ItemProcessor (`<machine>/<label>`).
    assert all(r["Status"] == "SUCCEEDED" and ":express:" in r["ExecutionArn"] for r in records)
    assert all(r["StateMachineArn"].endswith("/Fan") for r in records)
