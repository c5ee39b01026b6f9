//! `oms up`: the durable local Step Functions, serving the Step Functions API.

use crate::invoker::{Config, ConfiguredInvoker, TaskRule};
use crate::orders::{ActivitiesHandler, Orders, Warehouse};
use activities::activity::Ctx;
use activities::store::sqlite::SqliteStore;
use saga_core::runtime::Runtime;
use saga_core::service::LocalStepFunctions;
use saga_core::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub struct UpArgs {
    pub listen: String,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub simulate_warehouse: bool,
    pub pick_delay: std::time::Duration,
    /// The activities' store (`sqlite:PATH`, `dynamodb:TABLE`); orders.db by default.
    pub store: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    /// Serve over a deployed stack instead of this machine's runtime and store.
    pub aws: Option<crate::aws::AwsTarget>,
}

pub fn up(args: UpArgs) -> Result<ExitCode, String> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None if Path::new("oms.toml").exists() => Config::load(Path::new("oms.toml"))?,
        None => Config::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    if let Some(stack) = &args.aws {
        return runtime.block_on(up_aws(&args.listen, stack));
    }
    runtime.block_on(async move {
        let store = Store::open(&args.data_dir).map_err(|e| e.to_string())?;
        // The order activities' own store: beside the runtime's unless named.
        let order_store: Arc<dyn activities::store::Store> = match &args.store {
            Some(spec) => {
                activities::lambda::open_store(spec, args.dynamodb_endpoint.as_deref()).await?
            }
            None => Arc::new(
                SqliteStore::open(&args.data_dir.join("orders.db")).map_err(|e| e.to_string())?,
            ),
        };
        let ctx = Ctx::new(order_store);
        let seeded = activities::seed::seed_once(&*ctx.store, "demo", &activities::seed::demo())
            .await
            .map_err(|e| format!("cannot seed the demo catalog: {e}"))?;
        // Orders placed by an oms from before the search index: index them once.
        let indexed = activities::ledger::backfill_index(&*ctx.store)
            .await
            .map_err(|e| format!("cannot index the existing orders: {e}"))?;
        let warehouse = Arc::new(Warehouse::new(
            ctx.clone(),
            args.simulate_warehouse,
            args.pick_delay,
        ));
        let handler = Arc::new(ActivitiesHandler::new(ctx.clone(), warehouse.clone()));
        // oms.toml's rules first, so a user can send the activities elsewhere (say, to
        // `cargo lambda watch`); then the in-process activities.
        let mut rules = config.tasks.clone();
        rules.push(TaskRule {
            resource: format!("arn:aws:lambda:*:*:function:{}*", crate::orders::FUNCTION_PREFIX),
            builtin: Some("activities".into()),
            lambda_endpoint: None,
        });
        let invoker = ConfiguredInvoker::with_handlers(&rules, &[("activities", handler)])?
            .in_account(&config.server);
        let rt = Runtime::new(store.clone(), Arc::new(invoker));
        let resumed = rt
            .recover()
            .await
            .map_err(|e| format!("cannot resume executions: {e}"))?;
        let sfn: Arc<dyn saga_core::api::StepFunctions> = Arc::new(LocalStepFunctions::new(
            rt,
            &config.server.region,
            &config.server.account,
        ));
        warehouse.connect(sfn.clone());
        let orders = Orders::start(
            ctx,
            sfn.clone(),
            warehouse.clone(),
            &config.server.region,
            &config.server.account,
        )
        .await?;
        let machine_arn = orders.machine_arn.clone();
        let waiting_picks = warehouse.resume().await?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "oms: Step Functions API on http://{addr} (data in {})",
            args.data_dir.display()
        );
        if resumed > 0 {
            println!("oms: resumed {resumed} running execution(s)");
        }
        if indexed > 0 {
            println!("oms: indexed {indexed} order(s) for search");
        }
        if seeded {
            println!("oms: seeded the demo catalog (GET http://{addr}/inventory)");
        }
        if waiting_picks > 0 {
            println!("oms: the simulated warehouse resumes {waiting_picks} pick request(s)");
        }
        println!("oms: order saga {machine_arn}");
        println!("oms: console http://{addr}/console");
        println!(
            "oms: try  curl -s -X POST http://{addr}/orders -H 'content-type: application/json' -d '{}'",
            crate::orders::DEMO_ORDER
        );
        println!("oms: try  aws stepfunctions list-state-machines --endpoint-url http://{addr}");
        let extra = crate::orders_http::routes(Arc::new(orders));
        crate::server::serve_with(listener, sfn, extra, shutdown_signal())
            .await
            .map_err(|e| format!("the server failed: {e}"))?;
        // Work in flight resumes at the next start; what was acknowledged is committed.
        store.close();
        println!("oms: stopped");
        Ok::<_, String>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `oms up --backend aws`: the Orders API, the console and a Step Functions API that
/// passes calls on to the deployed stack. No runtime, no activities: Step Functions
/// and Lambda run the saga.
async fn up_aws(listen: &str, stack: &crate::aws::AwsTarget) -> Result<ExitCode, String> {
    let (sfn, orders) = crate::aws::orders(stack).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("oms: backend aws, order saga {}", orders.machine_arn);
    println!("oms: console http://{addr}/console");
    println!("oms: picks wait for the warehouses: POST http://{addr}/shipments/{{id}}/picked");
    let extra = crate::orders_http::routes(Arc::new(orders));
    crate::server::serve_with(listener, sfn, extra, shutdown_signal())
        .await
        .map_err(|e| format!("the server failed: {e}"))?;
    println!("oms: stopped");
    Ok(ExitCode::SUCCESS)
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
