//! `oms up`: the durable local Step Functions, serving the Step Functions API.

use crate::invoker::{Config, ConfiguredInvoker, TaskRule};
use activities::activity::Ctx;
use activities::store::sqlite::{SqliteStore, OLDER_DATA_DIR_FILE};
use oms_orders::{ActivityFunctions, Orders, SagaLanguage, Warehouse};
use saga_core::runtime::Runtime;
use saga_core::service::LocalStepFunctions;
use saga_core::store::ExecutionStore;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

// The flags of `oms up` (its help is the `Up` subcommand's doc comment).
#[derive(clap::Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, env = "OMS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Where the SQLite database lives.
    #[arg(long, env = "OMS_DATA_DIR", default_value = ".oms")]
    pub data_dir: PathBuf,
    /// The configuration file (task routing); ./oms.toml when present.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Leave pick requests to the warehouses' callbacks (POST /shipments/{id}/picked)
    /// instead of simulating a warehouse that picks every shipment.
    #[arg(long, env = "OMS_MANUAL_PICKING")]
    pub manual_picking: bool,
    /// Fsync every step of every execution before acting on it, as oms did before
    /// issue 16, instead of only before an answer tells of it (docs/store.md): to
    /// measure what lazy steps save.
    #[arg(long, hide = true)]
    pub fsync_every_step: bool,
    /// How long the simulated warehouse takes to pick a shipment.
    #[arg(long, env = "OMS_PICK_DELAY_MS", default_value_t = 200)]
    pub pick_delay_ms: u64,
    /// The activities' store: sqlite:PATH or dynamodb:TABLE [default: the data dir's
    /// oms.sqlite3, beside the runtime's tables].
    #[arg(long, env = "OMS_STORE")]
    pub store: Option<String>,
    /// Require credentials on loopback too (they are always required off it):
    /// docs/security.md.
    #[arg(long, env = "OMS_REQUIRE_AUTH")]
    pub require_auth: bool,
    /// Serve /admin/faults and inject the faults it sets (tests, game days).
    #[arg(long, env = "OMS_FAULT_INJECTION")]
    pub fault_injection: bool,
    /// A Step Functions Local mock configuration: executions started on `ARN#TestCase`
    /// answer the Task states the test case names from it (docs/testing.md).
    #[arg(long, env = "SFN_MOCK_CONFIG")]
    pub mock_config: Option<PathBuf>,
    /// Encrypt the data dir's databases with the key in this file (64 hex
    /// characters; or the key itself in OMS_DB_KEY): docs/security.md.
    #[arg(long, env = "OMS_DB_KEY_FILE")]
    pub db_key_file: Option<PathBuf>,
    /// Run the SQLite stores on the power-loss VFS and cut the power at this sync of
    /// a database or WAL, losing what was not synced (tests: docs/store.md); 0
    /// only counts syncs.
    #[arg(long, hide = true, env = "OMS_POWER_LOSS_AT_SYNC")]
    pub power_loss_at_sync: Option<u64>,
    /// With --power-loss-at-sync: a part of the unsynced writes chosen by this seed
    /// lands on the disk at the cut, one of them torn.
    #[arg(long, hide = true, requires = "power_loss_at_sync")]
    pub power_loss_seed: Option<u64>,
    /// On loopback, a Host name to answer besides localhost, 127.0.0.1 and [::1]
    /// (`name` for any port, `name:port` for one); repeatable. Others get 403
    /// Request.HostNotAllowed (DNS rebinding): docs/security.md.
    #[arg(
        long = "allowed-host",
        env = "OMS_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Retention of closed executions in seconds, instead of oms.toml's
    /// retention_days (tests).
    #[arg(long, hide = true)]
    pub retention_seconds: Option<u64>,
    /// Seconds between retention prunes; one also runs at start.
    #[arg(long, hide = true, default_value_t = 3600)]
    pub prune_every_seconds: u64,
    /// The order saga's definition by its query language: JSONPath
    /// (statemachines/order-saga.asl.json, the default) or JSONata (its twin,
    /// order-saga.jsonata.asl.json); instead of oms.toml's `[saga] query_language`.
    #[arg(long, env = "OMS_SAGA_QUERY_LANGUAGE")]
    pub saga_query_language: Option<SagaLanguage>,
    /// Receive this many more units of every demo SKU at each demo warehouse, once
    /// per data dir (the soak benchmark's stock).
    #[arg(long, hide = true)]
    pub bench_stock: Option<u32>,
    /// Webhook deliveries: the wait after the first failed attempt; it doubles with
    /// each further one (with jitter) up to --webhook-retry-max-ms (docs/events.md).
    #[arg(long, env = "OMS_WEBHOOK_RETRY_BASE_MS", default_value_t = 500)]
    pub webhook_retry_base_ms: u64,
    /// Webhook deliveries: the longest wait between two attempts.
    #[arg(long, env = "OMS_WEBHOOK_RETRY_MAX_MS", default_value_t = 60_000)]
    pub webhook_retry_max_ms: u64,
    /// Webhook deliveries: attempts of one event before it is dead-lettered.
    #[arg(long, env = "OMS_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12)]
    pub webhook_max_attempts: u32,
    /// Seed the webhook retries' jitter (tests; random otherwise).
    #[arg(long, hide = true)]
    pub webhook_jitter_seed: Option<u64>,
    /// How often the relay moves events from the order store's outbox to the log.
    #[arg(long, hide = true, default_value_t = 100)]
    pub event_relay_every_ms: u64,
    /// Observe nothing (GET /metrics still answers, with zeros): to measure what the
    /// metrics cost (docs/benchmarks.md).
    #[arg(long, hide = true)]
    pub no_metrics: bool,
}

impl UpArgs {
    /// `--power-loss-at-sync` and its seed as the VFS's plan.
    fn power_loss(&self) -> Option<powerloss::Plan> {
        self.power_loss_at_sync.map(|at| powerloss::Plan {
            cut_at_sync: (at > 0).then_some(at),
            landed_seed: self.power_loss_seed,
        })
    }
}

/// `oms up`: on this machine, or over the deployed stack `aws`; `dynamodb_endpoint`
/// replaces AWS's for a `dynamodb:TABLE` store.
pub fn up(
    args: UpArgs,
    aws: Option<crate::aws::AwsTarget>,
    dynamodb_endpoint: Option<String>,
) -> Result<ExitCode, String> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None if Path::new("oms.toml").exists() => Config::load(Path::new("oms.toml"))?,
        None => Config::default(),
    };
    let retention = match args.retention_seconds {
        Some(s) => crate::invoker::retention_from_seconds(s)
            .map_err(|e| format!("--retention-seconds {s}: {e}"))?,
        None => config.server.retention()?,
    };
    if args.prune_every_seconds == 0 {
        return Err("--prune-every-seconds: at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    if let Some(stack) = &aws {
        if args.power_loss().is_some() {
            return Err("--power-loss-at-sync: the aws backend has no SQLite store".into());
        }
        return runtime.block_on(up_aws(&args, &config, stack));
    }
    // Before any store opens: connections opened earlier would keep the unix VFS.
    if let Some(plan) = args.power_loss() {
        powerloss::install(plan).map_err(|e| format!("--power-loss-at-sync: {e}"))?;
    }
    runtime.block_on(up_local(&args, &config, retention, dynamodb_endpoint))?;
    Ok(ExitCode::SUCCESS)
}

/// The store's encryption key: `--db-key-file`, else oms.toml's `storage.key_file`.
fn db_key(args: &UpArgs, config: &Config) -> Result<Option<dbkey::DbKey>, String> {
    let key_file = args
        .db_key_file
        .as_ref()
        .or(config.storage.key_file.as_ref());
    dbkey::configured(key_file.map(PathBuf::as_path))
}

/// `oms up` on this machine: the durable runtime, the order activities in-process and
/// the simulated warehouse, until a signal stops it.
async fn up_local(
    args: &UpArgs,
    config: &Config,
    retention: chrono::Duration,
    dynamodb_endpoint: Option<String>,
) -> Result<(), String> {
    private_dir(&args.data_dir)?;
    let key = db_key(args, config)?;
    let store =
        ExecutionStore::open_with_key(&args.data_dir, key.clone()).map_err(|e| e.to_string())?;
    let outbox_written = Arc::new(tokio::sync::Notify::new());
    let (ctx, ready, orders_db) = order_context(
        args,
        store.db(),
        dynamodb_endpoint.as_deref(),
        key.as_ref(),
        outbox_written.clone(),
    )
    .await?;
    let outbox = match &orders_db {
        Some(embedded) => crate::events::Outbox::Beside(embedded.clone()),
        None => crate::events::Outbox::Elsewhere(ctx.store.clone()),
    };
    let hub = start_events(args, store.db(), outbox, outbox_written, key.as_ref()).await?;
    let warehouse = Arc::new(Warehouse::new(
        ctx.clone(),
        !args.manual_picking,
        std::time::Duration::from_millis(args.pick_delay_ms),
    ));
    let mut handler: Arc<dyn crate::invoker::LocalFunction> =
        Arc::new(ActivityFunctions::new(ctx.clone(), warehouse.clone()));
    // The embedded order store is the runtime's database: the pick's token is written
    // there and told to a warehouse only by an answer or an event, synced first.
    if orders_db.is_some() {
        handler = Arc::new(crate::invoker::SharingTheWal(handler));
    }
    let invoker = activities_invoker(config, handler)?;
    let rt = Runtime::new(store.clone(), Arc::new(invoker));
    rt.set_durable_steps(args.fsync_every_step);
    let metrics = crate::metrics::Metrics::new();
    if !args.no_metrics {
        rt.observe(metrics.clone());
    }
    let scrape = crate::metrics::Scrape {
        metrics,
        runtime: rt.clone(),
        store: ctx.store.clone(),
        order_cache: orders_db.clone(),
    };
    if let Some(path) = &args.mock_config {
        let mocks = saga_core::mock::MockConfig::load(path)?;
        rt.set_mocks(Arc::new(mocks));
    }
    // The service first: executions resumed below may start nested ones through it.
    let local =
        LocalStepFunctions::shared(rt.clone(), &config.server.region, &config.server.account);
    let resumed = rt
        .recover()
        .await
        .map_err(|e| format!("cannot resume executions: {e}"))?;
    let prune_every = std::time::Duration::from_secs(args.prune_every_seconds);
    tokio::spawn(prune_forever(rt.clone(), retention, prune_every));
    let sfn: Arc<dyn saga_core::api::StepFunctions> = local.clone();
    warehouse.connect(sfn.clone());
    let language = args
        .saga_query_language
        .or(config.saga.query_language)
        .unwrap_or_default();
    let orders = Orders::start(
        ctx,
        sfn.clone(),
        warehouse.clone(),
        &config.server.region,
        &config.server.account,
        language,
    )
    .await?;
    let machine_arn = orders.machine_arn.clone();
    // The Orders API depends on its saga: changed or deleted through the API, new
    // orders would stay PENDING. Its definition changes with oms itself.
    local.reserve(
        &machine_arn,
        "the Orders API (oms up registers it at start)",
    );
    local.reserve(
        &machine_arn.replace(
            &format!(":stateMachine:{}", oms_orders::MACHINE_NAME),
            &format!(":stateMachine:{}", oms_orders::PREPARE_MACHINE_NAME),
        ),
        "the Orders API's saga, whose Prepare state runs it (oms up registers it at start)",
    );
    if let Some(amend_arn) = &orders.amend_machine_arn {
        local.reserve(
            amend_arn,
            "the Orders API's amendments (oms up registers it at start)",
        );
    }
    let waiting_picks = warehouse.resume().await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let started = Started {
        resumed,
        waiting_picks,
        machine_arn,
        language,
        ..ready
    };
    print_started(args, addr, &started);
    let metrics = crate::metrics::routes(scrape);
    // `serve` syncs `store` before every answer (server::durable_answers), and events
    // are synced before they are told: a start need not be fsynced by itself.
    rt.set_starts_synced_by_answers(true);
    let local = Local {
        events: hub,
        store: store.clone(),
    };
    serve(args, config, listener, sfn, orders, Some(local), metrics).await?;
    // Work in flight resumes at the next start; what was acknowledged is committed.
    store.close();
    if let Some(orders_db) = orders_db {
        orders_db.close();
    }
    if args.power_loss().is_some() {
        println!("oms: power-loss VFS: {} syncs", powerloss::syncs());
    }
    println!("oms: stopped");
    Ok(())
}

/// What `oms up` found and did at start, for its first screen.
#[derive(Default)]
struct Started {
    seeded: bool,
    indexed: usize,
    /// Items moved in from an older oms's order store file.
    adopted: usize,
    resumed: usize,
    waiting_picks: usize,
    machine_arn: String,
    language: SagaLanguage,
}

/// The order activities' context: their store (in the runtime's database unless
/// named, so that one WAL orders both: activities/src/store/sqlite.rs), private,
/// seeded with the demo catalog and indexed for search; fault plans read only with
/// `--fault-injection`. The embedded store is answered too, for `oms up` to close
/// at its stop.
async fn order_context(
    args: &UpArgs,
    runtime_db: groupcommit::Db,
    dynamodb_endpoint: Option<&str>,
    key: Option<&dbkey::DbKey>,
    outbox_written: Arc<tokio::sync::Notify>,
) -> Result<(Ctx, Started, Option<Arc<SqliteStore>>), String> {
    let mut adopted = 0;
    let (order_store, orders_db): (Arc<dyn activities::store::Store>, _) = match &args.store {
        Some(spec) => (
            activities::lambda::open_store(spec, dynamodb_endpoint, key).await?,
            None,
        ),
        None => {
            let db = Arc::new(
                SqliteStore::within(runtime_db)
                    .await
                    .map_err(|e| e.to_string())?
                    .transient(activities::events::outbox_prefix()),
            );
            // An older oms kept the order store in a file of its own.
            let old = args.data_dir.join(OLDER_DATA_DIR_FILE);
            adopted = db.adopt(&old, key).await.map_err(|e| {
                format!(
                    "cannot move the order store of {} into {}: {e}",
                    old.display(),
                    saga_core::store::DATABASE_FILE
                )
            })?;
            (db.clone() as Arc<dyn activities::store::Store>, Some(db))
        }
    };
    let order_store: Arc<dyn activities::store::Store> =
        Arc::new(crate::events::WakingStore::new(order_store, outbox_written));
    // SQLite creates its files 0644 and gives its WAL and shm files the database's
    // mode: tighten the databases once they exist.
    private_files(&args.data_dir)?;
    let ctx = if args.fault_injection {
        Ctx::new(order_store)
    } else {
        Ctx {
            faults: activities::faults::Faults::disabled(order_store.clone()),
            ..Ctx::new(order_store)
        }
    };
    let seeded =
        activities::seed::seed_once(&*ctx.store, "demo", &activities::seed::demo_stocked())
            .await
            .map_err(|e| format!("cannot seed the demo catalog: {e}"))?;
    if let Some(units) = args.bench_stock {
        seed_bench_stock(&*ctx.store, units).await?;
    }
    // Orders placed by an oms from before the search index: index them once.
    let indexed = activities::ledger::backfill_index(&*ctx.store)
        .await
        .map_err(|e| format!("cannot index the existing orders: {e}"))?;
    let started = Started {
        seeded,
        indexed,
        adopted,
        ..Started::default()
    };
    Ok((ctx, started, orders_db))
}

/// oms.toml's rules first, so a user can send the activities elsewhere (say, to
/// `cargo lambda watch`); then the in-process activities.
fn activities_invoker(
    config: &Config,
    handler: Arc<dyn crate::invoker::LocalFunction>,
) -> Result<ConfiguredInvoker, String> {
    let mut rules = config.tasks.clone();
    // Only the order saga (with its Express child) and the amendments' may call the order functions: another
    // state machine could refund a completed order. oms.toml may admit more (docs/oms-toml.md).
    rules.push(TaskRule {
        resource: format!(
            "arn:aws:lambda:*:*:function:{}*",
            oms_orders::FUNCTION_PREFIX
        ),
        builtin: Some("activities".into()),
        lambda_endpoint: None,
        aws_endpoint: None,
        aws_region: None,
        s3_folder: None,
        state_machines: Some(
            [
                oms_orders::MACHINE_NAME,
                oms_orders::PREPARE_MACHINE_NAME,
                oms_orders::AMEND_MACHINE_NAME,
            ]
            .iter()
            .map(|name| {
                format!(
                    "arn:aws:states:{}:{}:stateMachine:{name}",
                    config.server.region, config.server.account
                )
            })
            .collect(),
        ),
    });
    Ok(
        ConfiguredInvoker::with_handlers(&rules, &[("activities", handler)])?
            .with_connections(&config.connections)?
            .in_account(&config.server),
    )
}

/// The first screen: where the APIs are, what start found, what to try.
fn print_started(args: &UpArgs, addr: std::net::SocketAddr, s: &Started) {
    println!(
        "oms: Step Functions API on http://{addr} (data in {})",
        args.data_dir.display()
    );
    if let Some(plan) = args.power_loss() {
        // The power-loss campaign reads these to spread its cuts over a run.
        println!(
            "oms: power-loss VFS: {} syncs at start, {}",
            powerloss::syncs(),
            plan.cut_at_sync.map_or("no power cut".into(), |n| format!(
                "the power is cut at sync {n}"
            ))
        );
    }
    if s.resumed > 0 {
        println!("oms: resumed {} running execution(s)", s.resumed);
    }
    if s.adopted > 0 {
        println!(
            "oms: moved {} item(s) of {OLDER_DATA_DIR_FILE} into {}",
            s.adopted,
            saga_core::store::DATABASE_FILE
        );
    }
    if s.indexed > 0 {
        println!("oms: indexed {} order(s) for search", s.indexed);
    }
    if s.seeded {
        println!("oms: seeded the demo catalog (GET http://{addr}/inventory)");
    }
    if s.waiting_picks > 0 {
        println!(
            "oms: the simulated warehouse resumes {} pick request(s)",
            s.waiting_picks
        );
    }
    println!(
        "oms: order saga {} ({}, statemachines/{})",
        s.machine_arn,
        s.language.name(),
        s.language.file()
    );
    println!("oms: console http://{addr}/console");
    println!(
        "oms: try  curl -s -X POST http://{addr}/orders -H 'content-type: application/json' -d '{}'",
        oms_orders::DEMO_ORDER
    );
    // The AWS CLI wants a region and credentials before it sends anything; oms takes
    // any, so the hint carries them rather than failing on a fresh machine.
    let region = s.machine_arn.split(':').nth(3).unwrap_or("us-east-1");
    println!(
        "oms: try  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={region} \
         aws stepfunctions list-state-machines --endpoint-url http://{addr}"
    );
}

/// Deletes closed executions past `retention` now and every `every` (saga-core's
/// `retention.rs`: batches, the redrive window, RUNNING executions kept). The orders
/// themselves are business records and stay; their view shows a null execution_status.
async fn prune_forever(rt: Arc<Runtime>, retention: chrono::Duration, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let batch = saga_core::retention::DEFAULT_BATCH;
        match rt.prune(chrono::Utc::now(), retention, batch).await {
            Ok(p) if p.executions > 0 => println!(
                "oms: retention: deleted {} execution(s) closed more than {} s ago",
                p.executions,
                retention.num_seconds()
            ),
            Ok(_) => {}
            // A full or busy disk: the next round tries again.
            Err(e) => eprintln!("oms: retention: prune failed, will retry: {e}"),
        }
    }
}

/// `--bench-stock UNITS`: the demo catalog's stock rows, each receiving `units` more,
/// once per data dir (a seed of its own name), so a soak of 100,000 orders never runs
/// out.
async fn seed_bench_stock(store: &dyn activities::store::Store, units: u32) -> Result<(), String> {
    let mut bench = activities::seed::demo();
    for row in &mut bench.stock {
        row.2 = i64::from(units);
    }
    activities::seed::seed_once(store, "bench", &bench)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot seed the bench stock: {e}"))
}

/// `oms up --backend aws`: the Orders API, the console and a Step Functions API that
/// passes calls on to the deployed stack. No runtime, no activities: Step Functions
/// and Lambda run the saga.
async fn up_aws(
    args: &UpArgs,
    config: &Config,
    stack: &crate::aws::AwsTarget,
) -> Result<ExitCode, String> {
    let listen = &args.listen;
    if args.saga_query_language.is_some() || config.saga.query_language.is_some() {
        return Err(
            "--saga-query-language / [saga] query_language: with --backend aws the deployed \
                    stack's definition runs (infra-cdk deploys statemachines/order-saga.asl.json)"
                .into(),
        );
    }
    let (sfn, mut orders) = crate::aws::orders(stack).await?;
    if !args.fault_injection {
        orders.ctx.faults = activities::faults::Faults::disabled(orders.ctx.store.clone());
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("oms: backend aws, order saga {}", orders.machine_arn);
    match &orders.amend_machine_arn {
        Some(arn) => println!("oms: amendments {arn}"),
        None => println!(
            "oms: amendments unavailable: the stack outputs have no AmendStateMachineArn \
             (redeploy infra-cdk, or pass --amend-machine-arn)"
        ),
    }
    println!("oms: console http://{addr}/console");
    println!("oms: picks wait for the warehouses: POST http://{addr}/shipments/{{id}}/picked");
    // No runtime here: Step Functions and CloudWatch have the numbers (docs/deploy.md).
    serve(
        args,
        config,
        listener,
        sfn,
        orders,
        None,
        axum::Router::new(),
    )
    .await?;
    println!("oms: stopped");
    Ok(ExitCode::SUCCESS)
}

/// What only a local server has: its order events, and the store whose lazy commits
/// an answer waits for.
struct Local {
    events: Arc<crate::events::Hub>,
    store: ExecutionStore,
}

/// Serves the Step Functions API and the Orders API until a signal stops it, with the
/// credentials and Host names `args` and oms.toml require (credentials made into
/// `data_dir` if none are configured).
async fn serve(
    args: &UpArgs,
    config: &Config,
    listener: tokio::net::TcpListener,
    sfn: Arc<dyn saga_core::api::StepFunctions>,
    orders: Orders,
    local: Option<Local>,
    more_routes: axum::Router,
) -> Result<(), String> {
    let (events, durability) = match local {
        Some(l) => (Some(l.events), Some(l.store)),
        None => (None, None),
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Local servers keep credentials (and their events) in the data dir.
    let data_dir = events.as_ref().map(|_| args.data_dir.as_path());
    let auth = credentials(args, config, addr, data_dir)?;
    let hosts = allowed_hosts(args, config, addr);
    let more = events
        .clone()
        .map(crate::events_http::routes)
        .unwrap_or_default()
        .merge(more_routes);
    let extra = crate::orders_http::routes_with(Arc::new(orders), more);
    let shutdown = async move {
        shutdown_signal().await;
        // Open event streams end, or the graceful shutdown would wait for them.
        if let Some(hub) = events {
            hub.close();
        }
    };
    crate::server::serve_with(listener, sfn, extra, auth, hosts, durability, shutdown)
        .await
        .map_err(|e| format!("the server failed: {e}"))
}

/// The order events of a local `oms up`: the log in the runtime's database, the relay
/// from the order store's outbox, and webhook delivery (docs/events.md).
async fn start_events(
    args: &UpArgs,
    runtime_db: groupcommit::Db,
    outbox: crate::events::Outbox,
    outbox_written: Arc<tokio::sync::Notify>,
    key: Option<&dbkey::DbKey>,
) -> Result<Arc<crate::events::Hub>, String> {
    use crate::events::{log, webhooks, Hub};
    let log = Arc::new(log::EventLog::within(runtime_db).await?);
    // An older oms kept the log in a file of its own.
    let old = args.data_dir.join(log::OLDER_DATA_DIR_FILE);
    let adopted = log.adopt(&old, key).await.map_err(|e| {
        format!(
            "cannot move the event log of {} into {}: {e}",
            old.display(),
            saga_core::store::DATABASE_FILE
        )
    })?;
    if adopted > 0 {
        println!(
            "oms: moved the event log ({adopted} event(s)) of {} into {}",
            log::OLDER_DATA_DIR_FILE,
            saga_core::store::DATABASE_FILE
        );
    }
    let backoff = webhooks::Backoff::new(
        std::time::Duration::from_millis(args.webhook_retry_base_ms),
        std::time::Duration::from_millis(args.webhook_retry_max_ms),
        args.webhook_max_attempts,
        args.webhook_jitter_seed,
    );
    let hub = Hub::new(log, Arc::new(webhooks::HttpSender::new()), backoff);
    let every = std::time::Duration::from_millis(args.event_relay_every_ms.max(1));
    tokio::spawn(hub.clone().relay_forever(outbox, outbox_written, every));
    Ok(hub)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The data dir holds orders, addresses and payment references: only the user who runs
/// oms may enter it (0700), whether it is new or was made by an older oms.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make data dir {} private: {e}", dir.display()))
}

/// Every file in the data dir readable and writable by its owner alone (0600).
fn private_files(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The Host names a server bound to `addr` answers: on loopback, its own and those of
/// `--allowed-host` and oms.toml's `[http] allowed_hosts`; off loopback, any.
fn allowed_hosts(
    args: &UpArgs,
    config: &Config,
    addr: std::net::SocketAddr,
) -> Option<Arc<crate::hosts::AllowedHosts>> {
    let names: Vec<String> = (config.http.allowed_hosts.iter())
        .chain(&args.allowed_hosts)
        .cloned()
        .collect();
    crate::hosts::AllowedHosts::for_bound(addr, &names).map(Arc::new)
}

/// The credentials this server requires, if any: off loopback always, on loopback with
/// `--require-auth`. oms.toml's `[auth]`, else the data dir's (made and printed once).
fn credentials(
    args: &UpArgs,
    config: &Config,
    addr: std::net::SocketAddr,
    data_dir: Option<&Path>,
) -> Result<Option<Arc<crate::auth::Credentials>>, String> {
    if !args.require_auth && addr.ip().is_loopback() {
        return Ok(None);
    }
    let (creds, fresh) = match (config.auth.as_ref(), data_dir) {
        (Some(c), _) => (c.clone(), false),
        (None, Some(dir)) => crate::auth::Credentials::load_or_create(dir)?,
        (None, None) => {
            return Err(format!(
                "listening on {addr} needs credentials: give [auth] in oms.toml (docs/security.md)"
            ))
        }
    };
    println!("oms: credentials required on {addr} (docs/security.md)");
    if fresh {
        println!(
            "oms: generated, shown this once (kept in {}):",
            crate::auth::CREDENTIALS_FILE
        );
        println!("oms:   AWS_ACCESS_KEY_ID={}", creds.access_key_id);
        println!("oms:   AWS_SECRET_ACCESS_KEY={}", creds.secret_access_key);
        println!("oms:   OMS_TOKEN={}", creds.token);
    }
    Ok(Some(Arc::new(creds)))
}
