"""Real, published state machines (tests/samples/README.md): every one is accepted by
CreateStateMachine, and AWS's Step Functions Local mock-testing sample runs its
makefile's scenarios against `oms up` with its own mock file, unchanged, and gets the
histories its makefile checks for. The distributed-Map sample runs whole: its
ItemReader lists a bucket, its batches run as child executions with their Lambda
mocked, its ResultWriter exports the results, and its reducer sees them."""

import json
import re
from pathlib import Path

import pytest

from conftest import Server
from helpers import history, unique, wait_status

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
AWS = SAMPLES / "aws-stepfunctions-examples"
MOCK_SAMPLE = AWS / "sam" / "app-local-testing-mock-config"
DMAP_SAMPLE = (AWS / "sam" / "demo-distributed-map-data-processing" / "statemachines"
               / "dmap-temperatures.asl.json")
DEFINITIONS = sorted(SAMPLES.rglob("*.asl.json"))


def deployed(text):
    """A SAM template body as a deployment fills it: `${NameArn}` becomes a Lambda
    function ARN, any other `${Name}` its own name."""
    def fill(m):
        name = m.group(1)
        if "arn" in name.lower():
            return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        return name
    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", fill, text)


def test_the_samples_are_there():
    assert len(DEFINITIONS) >= 20, f"tests/samples holds {len(DEFINITIONS)} definitions"


# Published, yet not valid: refused, naming the field, for the reason given.
REFUSED = {
    "aws-stepfunctions-examples/sam/app-dataquality-using-lambda/statemachine/dataquality.asl.json": (
        "/States/FilterFailures/InputPath",
        # `[?(@.constraint_status==Failure)]`: an unquoted string in a filter, which
        # Jayway JsonPath, the implementation AWS uses, cannot read either (it takes
        # an unquoted literal for a number).
    ),
}


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_every_published_definition_is_accepted(sfn, path):
    definition = deployed(path.read_text())
    check = sfn.validate_state_machine_definition(definition=definition)
    refused = REFUSED.get(str(path.relative_to(SAMPLES)))
    if refused:
        assert [d["location"] for d in check["diagnostics"]] == list(refused), check
        return
    assert check["result"] == "OK", check["diagnostics"]
    sfn.create_state_machine(name=unique("sample"), definition=definition,
                             roleArn="arn:aws:iam::123456789012:role/DummyRole")


@pytest.fixture
def mock_sample(tmp_path, oms_config):
    data = tmp_path / "mock-sample"
    data.mkdir()
    mocks = MOCK_SAMPLE / "statemachine" / "test" / "MockConfigFile.json"
    server = Server(data, oms_config, env={"SFN_MOCK_CONFIG": str(mocks)})
    try:
        server.start()
        sfn = server.client()
        definition = (MOCK_SAMPLE / "statemachine" / "local_testing.asl.json").read_text()
        # As the makefile creates it: the definition as it is, placeholders and all.
        arn = sfn.create_state_machine(name="LocalTesting", definition=definition,
                                       roleArn="arn:aws:iam::123456789012:role/DummyRole")["stateMachineArn"]
        yield sfn, arn
    finally:
        server.kill()


def start(sfn, arn, case):
    payload = (MOCK_SAMPLE / "events" / "sfn_valid_input.json").read_text()
    execution = sfn.start_execution(stateMachineArn=f"{arn}#{case}", name=unique(case),
                                    input=payload)["executionArn"]
    done = wait_status(sfn, execution, timeout=30)
    return done, history(sfn, execution)


def entered_with(events, state, text):
    return [e for e in events if e["type"] == "TaskStateEntered"
            and e["stateEnteredEventDetails"]["name"] == state
            and text in e["stateEnteredEventDetails"]["input"]]


def test_the_happy_path_adds_the_customer_for_follow_up(mock_sample):
    done, events = start(*mock_sample, "HappyPathTest")
    assert done["status"] == "SUCCEEDED", done
    exited = [e for e in events if e["type"] == "TaskStateExited"
              and e["stateExitedEventDetails"]["name"] == "CustomerAddedToFollowup"]
    assert len(exited) == 1


def test_negative_sentiment_is_reported(mock_sample):
    done, events = start(*mock_sample, "NegativeSentimentTest")
    assert done["status"] == "SUCCEEDED", done
    assert entered_with(events, "NegativeSentimentDetected", "NEGATIVE")


def test_a_custom_validation_error_is_retried_then_caught(mock_sample):
    done, events = start(*mock_sample, "CustomValidationFailedCatchTest")
    assert done["status"] == "SUCCEEDED", done
    assert entered_with(events, "CustomValidationFailed", "Check Identity Validation Failed")
    failures = [e for e in events if e["type"] == "TaskFailed"]
    # The first attempt and its three retries, as the mock's "0-3" answers them.
    assert len(failures) == 4, [e["taskFailedEventDetails"]["error"] for e in failures]


def test_an_address_exception_is_caught_by_states_all(mock_sample):
    done, events = start(*mock_sample, "ValidationExceptionCatchTest")
    assert done["status"] == "SUCCEEDED", done
    assert entered_with(events, "ValidationException", "Address Validation Exception")


def test_detect_sentiment_is_retried_past_service_exceptions(mock_sample):
    done, events = start(*mock_sample, "RetryOnServiceExceptionTest")
    assert done["status"] == "SUCCEEDED", done
    failed = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    assert failed == ["InternalServerException"] * 3
    # The makefile's query names the resource as Step Functions Local recorded it
    # (`comprehend:detectSentiment`); AWS records the SDK integration's type and
    # action apart, as oms does.
    succeeded = [e["taskSucceededEventDetails"] for e in events if e["type"] == "TaskSucceeded"
                 and e["taskSucceededEventDetails"]["resource"] == "detectSentiment"]
    assert [s["resourceType"] for s in succeeded] == ["aws-sdk:comprehend"]
    assert json.loads(succeeded[0]["output"])["Sentiment"] == "POSITIVE"


# The sample's Lambda functions, mocked as a team would in its mock file: each batch's
# statistics, then the reducer's answer.
DMAP_MOCKS = {
    "StateMachines": {"Temperatures": {"TestCases": {"Stats": {
        "Lambda Invoke": "BatchStats", "Reducer": "Reduced"}}}},
    "MockedResponses": {
        "BatchStats": {"0": {"Return": {"StatusCode": 200, "Payload": {"stations": 3}}}},
        "Reduced": {"0": {"Return": {"StatusCode": 200, "Payload": {"reduced": True}}}},
    },
}


@pytest.fixture
def dmap_sample(tmp_path, oms_config):
    buckets = tmp_path / "buckets"
    for n in range(3):
        station = buckets / "noaa-input" / "csv" / f"station-{n}.csv"
        station.parent.mkdir(parents=True, exist_ok=True)
        station.write_text("DATE,TEMP\n2022-01-01,3.5\n")
    (buckets / "noaa-results").mkdir()
    config = tmp_path / "oms.toml"
    config.write_text(Path(oms_config).read_text() + f"""
[[tasks]]
resource = "arn:aws:states:::aws-sdk:s3:*"
s3_folder = "{buckets}"
""")
    mocks = tmp_path / "mocks.json"
    mocks.write_text(json.dumps(DMAP_MOCKS))
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data, config, env={"SFN_MOCK_CONFIG": str(mocks)}).start()
    try:
        yield server.client(), buckets
    finally:
        server.kill()


def test_the_distributed_map_sample_runs_whole(dmap_sample):
    sfn, buckets = dmap_sample
    text = DMAP_SAMPLE.read_text().replace("${InputBucket}", "noaa-input")
    text = text.replace("${ResultsBucket}", "noaa-results")
    arn = sfn.create_state_machine(name="Temperatures", definition=deployed(text),
                                   roleArn="arn:aws:iam::123456789012:role/DummyRole")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn + "#Stats", input="{}")["executionArn"]
    done = wait_status(sfn, execution, timeout=30)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    assert json.loads(done["output"]) == {"reduced": True}
    # The reducer got the ResultWriter's details, and the files are in the bucket.
    reducer_input = [e for e in history(sfn, execution) if e["type"] == "TaskScheduled"][-1]
    payload = json.loads(reducer_input["taskScheduledEventDetails"]["parameters"])["Payload"]
    manifest = json.loads((buckets / "noaa-results" / payload["ResultWriterDetails"]["Key"]).read_text())
    results = manifest["ResultFiles"]["SUCCEEDED"]
    assert len(results) == 1 and results[0]["Key"].startswith("results/")
    # 3 objects, batched by 500: one child, given the 3 listed objects as its Items.
    run = sfn.list_map_runs(executionArn=execution)["mapRuns"][0]["mapRunArn"]
    children = sfn.list_executions(mapRunArn=run)["executions"]
    assert len(children) == 1
    child_input = json.loads(sfn.describe_execution(executionArn=children[0]["executionArn"])["input"])
    assert sorted(i["Key"] for i in child_input["Items"]) == [f"csv/station-{n}.csv" for n in range(3)]
    assert children[0]["itemCount"] == 3
    described = sfn.describe_map_run(mapRunArn=run)
    assert (described["itemCounts"]["total"], described["executionCounts"]["total"]) == (3, 1)
