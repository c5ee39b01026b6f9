//! `oms up`: the durable local Step Functions, serving the Step Functions API.

use crate::invoker::{Config, ConfiguredInvoker};
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
}

pub fn up(args: UpArgs) -> Result<ExitCode, String> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None if Path::new("oms.toml").exists() => Config::load(Path::new("oms.toml"))?,
        None => Config::default(),
    };
    let invoker = ConfiguredInvoker::new(&config.tasks)?.in_account(&config.server);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let store = Store::open(&args.data_dir).map_err(|e| e.to_string())?;
        let rt = Runtime::new(store.clone(), Arc::new(invoker));
        let resumed = rt
            .recover()
            .await
            .map_err(|e| format!("cannot resume executions: {e}"))?;
        let sfn = Arc::new(LocalStepFunctions::new(
            rt,
            &config.server.region,
            &config.server.account,
        ));
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
        println!("oms: try  aws stepfunctions list-state-machines --endpoint-url http://{addr}");
        crate::server::serve(listener, sfn, shutdown_signal())
            .await
            .map_err(|e| format!("the server failed: {e}"))?;
        // Work in flight resumes at the next start; what was acknowledged is committed.
        store.close();
        println!("oms: stopped");
        Ok::<_, String>(())
    })?;
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
