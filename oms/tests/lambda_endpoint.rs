//! Task resources routed by oms.toml to a server speaking the Lambda Invoke API (what
//! `cargo lambda watch` serves): the payload goes out, the result or the function's
//! typed error comes back.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fake function host: `charge` answers with the payload priced; `ship` fails with
/// a typed error as AWS answers it (200, X-Amz-Function-Error and an error payload);
/// `pick` fails as `cargo lambda watch` answers it (500 and the error payload).
async fn fake_lambda() -> String {
    async fn invoke(Path(name): Path<String>, body: String) -> (StatusCode, HeaderMap, String) {
        let payload: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let mut headers = HeaderMap::new();
        match name.as_str() {
            "charge" => {
                let cents = payload["quantity"].as_i64().unwrap_or(0) * 250;
                (
                    StatusCode::OK,
                    headers,
                    json!({"charged_cents": cents}).to_string(),
                )
            }
            "ship" => {
                headers.insert("x-amz-function-error", "Unhandled".parse().unwrap());
                let err =
                    json!({"errorType": "Ship.AddressRejected", "errorMessage": "no such street"});
                (StatusCode::OK, headers, err.to_string())
            }
            "pick" => {
                let err = json!({"errorType": "Pick.ItemDamaged", "errorMessage": "torn box"});
                (StatusCode::INTERNAL_SERVER_ERROR, headers, err.to_string())
            }
            _ => (StatusCode::NOT_FOUND, headers, "{}".into()),
        }
    }
    let app = Router::new().route("/2015-03-31/functions/{name}/invocations", post(invoke));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Oms {
    child: Child,
    url: String,
}

impl Drop for Oms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_oms(config: &str) -> Oms {
    let dir = std::env::temp_dir().join(format!("oms-lambda-endpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("oms.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oms"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "oms.toml",
            "--data-dir",
            "data",
        ])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("oms up starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let url = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| format!("http://{a}"))
        .unwrap_or_else(|| panic!("oms up did not print its address; it printed {first:?}"));
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Oms { child, url }
}

async fn call(client: &reqwest::Client, oms: &Oms, op: &str, body: Value) -> Value {
    let response = client
        .post(&oms.url)
        .header("x-amz-target", format!("AWSStepFunctions.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let v: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(status.is_success(), "{op} failed: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_tasks_reach_the_configured_endpoint() {
    let endpoint = fake_lambda().await;
    let oms = start_oms(&format!(
        "[[tasks]]\nresource = \"arn:aws:lambda:*:*:function:*\"\nlambda_endpoint = \"{endpoint}\"\n"
    ));
    let client = reqwest::Client::new();
    let definition = json!({"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:charge",
                   "ResultPath": "$.payment", "Next": "Pick"},
        "Pick": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:pick",
                 "Catch": [{"ErrorEquals": ["Pick.ItemDamaged"], "ResultPath": "$.picking", "Next": "Ship"}],
                 "Next": "Ship"},
        "Ship": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": "ship", "Payload.$": "$"},
                 "Catch": [{"ErrorEquals": ["Ship.AddressRejected"], "ResultPath": "$.shipping", "Next": "Rejected"}],
                 "End": true},
        "Rejected": {"Type": "Pass", "End": true}}});
    let sm = call(&client, &oms, "CreateStateMachine", json!({
        "name": "lambda-endpoint", "roleArn": "arn:aws:iam::000000000000:role/r", "definition": definition.to_string()
    }))
    .await;
    let exec = call(
        &client,
        &oms,
        "StartExecution",
        json!({
            "stateMachineArn": sm["stateMachineArn"], "input": json!({"quantity": 4}).to_string()
        }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let described = loop {
        let d = call(
            &client,
            &oms,
            "DescribeExecution",
            json!({"executionArn": exec["executionArn"]}),
        )
        .await;
        if d["status"] != "RUNNING" || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(described["status"], "SUCCEEDED", "{described}");
    let output: Value = serde_json::from_str(described["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["payment"], json!({"charged_cents": 1000}));
    assert_eq!(output["picking"]["Error"], "Pick.ItemDamaged", "{output}");
    assert_eq!(output["shipping"]["Error"], "Ship.AddressRejected");
    let cause: Value = serde_json::from_str(output["shipping"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["errorMessage"], "no such street");
}
