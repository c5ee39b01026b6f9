//! `oms worker`: the activities as a Step Functions Activity worker, for teams that run
//! workers instead of Lambda functions. For each activity it long-polls
//! GetActivityTask on `<prefix><function>` (e.g. `...:activity:oms-reserve-inventory`),
//! runs the same handler the Lambda functions and `oms up` run, heartbeats while it
//! works, and answers with SendTaskSuccess, or SendTaskFailure carrying the activity's
//! error name. It talks to AWS (the standard credential chain and region) or, with
//! `--sfn-endpoint`, to any Step Functions API such as `oms up`.

use activities::activity::{self, Ctx};
use aws_sdk_sfn::error::DisplayErrorContext;
use aws_sdk_sfn::Client;
use std::process::ExitCode;
use std::time::Duration;

// The flags of `oms worker` (its help is the `Worker` subcommand's doc comment).
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Activity ARNs are this and the activity's function name.
    #[arg(
        long,
        default_value = "arn:aws:states:us-east-1:000000000000:activity:oms-"
    )]
    pub activity_arn_prefix: String,
    /// The activities' store: sqlite:PATH or dynamodb:TABLE.
    #[arg(long, env = "OMS_STORE")]
    pub store: String,
    /// The worker name GetActivityTask records.
    #[arg(long, default_value = "oms-worker")]
    pub name: String,
    /// Seconds between heartbeats while a task runs.
    #[arg(long, default_value_t = 20)]
    pub heartbeat_seconds: u64,
}

/// Polls every activity until a signal stops it or a poller fails for good;
/// `sfn_endpoint` and `dynamodb_endpoint` replace AWS's endpoints.
pub fn worker(
    args: WorkerArgs,
    sfn_endpoint: Option<String>,
    dynamodb_endpoint: Option<String>,
) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let store = activities::lambda::open_store(
            &args.store,
            dynamodb_endpoint.as_deref(),
            dbkey::from_env()?.as_ref(),
        )
        .await?;
        if std::env::var_os("OMS_SEED_DEMO").is_some() {
            activities::seed::seed_once(&*store, "demo", &activities::seed::demo_stocked())
                .await
                .map_err(|e| e.to_string())?;
        }
        let ctx = Ctx::for_production(store);
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = &sfn_endpoint {
            loader = loader.endpoint_url(url);
        }
        let client = Client::new(&loader.load().await);
        println!(
            "oms worker: polling {} activities at {}<function>",
            activities::ACTIVITIES.len(),
            args.activity_arn_prefix
        );
        let mut tasks = Vec::new();
        for def in activities::ACTIVITIES {
            let arn = format!("{}{}", args.activity_arn_prefix, def.function());
            let (client, ctx, name, heartbeat) = (
                client.clone(),
                ctx.clone(),
                args.name.clone(),
                Duration::from_secs(args.heartbeat_seconds),
            );
            tasks.push(tokio::spawn(async move {
                poll(client, ctx, arn, def.key, name, heartbeat).await
            }));
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
            r = futures_first(tasks) => r,
        }
    })
}

async fn futures_first(
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
) -> Result<ExitCode, String> {
    // The pollers run until the process stops; one ending means it failed for good.
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(ExitCode::SUCCESS)
}

async fn poll(
    client: Client,
    ctx: Ctx,
    arn: String,
    key: &'static str,
    worker_name: String,
    heartbeat: Duration,
) -> Result<(), String> {
    let mut failures = 0u32;
    loop {
        let task = match client
            .get_activity_task()
            .activity_arn(&arn)
            .worker_name(&worker_name)
            .send()
            .await
        {
            Ok(t) => {
                failures = 0;
                t
            }
            Err(e) => {
                failures += 1;
                let text = DisplayErrorContext(&e).to_string();
                if text.contains("ActivityDoesNotExist") {
                    return Err(format!("{arn}: no such activity (create it first): {text}"));
                }
                eprintln!("oms worker: GetActivityTask {arn}: {text}");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))).await;
                continue;
            }
        };
        let Some(token) = task
            .task_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
        else {
            continue; // the long poll ended with no work
        };
        let input: serde_json::Value =
            serde_json::from_str(task.input().unwrap_or("{}")).unwrap_or_default();
        let beat = heartbeats(client.clone(), token.clone(), heartbeat);
        let result = activity::invoke(&ctx, key, &input).await;
        beat.abort();
        answer(&client, &token, key, result).await;
    }
}

/// Sends the task's heartbeat every `heartbeat` until aborted.
fn heartbeats(client: Client, token: String, heartbeat: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(heartbeat).await;
            let _ = client.send_task_heartbeat().task_token(&token).send().await;
        }
    })
}

/// Sends a `key` task's result: its output, or its error.
async fn answer(
    client: &Client,
    token: &str,
    key: &str,
    result: Result<serde_json::Value, activities::errors::ActivityError>,
) {
    // An answer that fails to send means the task timed out or its execution
    // ended: it has nowhere to go.
    let unsent = match result {
        Ok(output) => client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .err()
            .map(|e| DisplayErrorContext(&e).to_string()),
        Err(e) => client
            .send_task_failure()
            .task_token(token)
            .error(e.name())
            .cause(e.message.clone())
            .send()
            .await
            .err()
            .map(|e| DisplayErrorContext(&e).to_string()),
    };
    if let Some(e) = unsent {
        eprintln!("oms worker: answering a {key} task: {e}");
    }
}
