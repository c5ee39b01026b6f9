//! Order events out of `oms up`: the relay that moves events from the order store's
//! outbox (`activities::events`) into the durable log, giving each its global sequence,
//! and the webhook workers that deliver the log to subscribers. The HTTP routes over
//! them are in `events_http`. On AWS the DynamoDB stream's Lambda is the relay
//! (infra-cdk), publishing to EventBridge instead.

pub mod log;
pub mod webhooks;

use activities::events::{events_of, outbox_prefix};
use activities::store::{Cond, Store, StoreError, Write};
use log::EventLog;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use webhooks::{Backoff, Sender};

/// Publishes every outbox item there is: logs its events (skipping ones logged before
/// a crash), then deletes it. Answers how many events were new.
pub async fn relay_once(store: &dyn Store, log: &EventLog) -> Result<usize, String> {
    // Sorted by partition then sort key: each order's items in sequence order.
    let items = store
        .scan(outbox_prefix())
        .await
        .map_err(|e| e.to_string())?;
    let mut added = 0;
    for item in items {
        added += log.append(&events_of(&item))?;
        let delete = Write::Delete {
            key: item.key.clone(),
            cond: Cond::Version(item.version),
        };
        match store.transact(vec![delete]).await {
            // Another relay (a second `oms up` on the same store) deleted it first.
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(added)
}

/// The events side of `oms up`: the log, who is told when it grows, and how webhooks
/// are retried.
pub struct Hub {
    pub log: Arc<EventLog>,
    grown: watch::Sender<u64>,
    closing: watch::Sender<bool>,
    sender: Arc<dyn Sender>,
    backoff: Backoff,
    workers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Hub {
    pub fn new(log: Arc<EventLog>, sender: Arc<dyn Sender>, backoff: Backoff) -> Arc<Hub> {
        let last = log.last_seq().unwrap_or(0);
        Arc::new(Hub {
            log,
            grown: watch::Sender::new(last),
            closing: watch::Sender::new(false),
            sender,
            backoff,
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// Told the last global sequence whenever the log grows (or a replay is asked).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.grown.subscribe()
    }

    /// Told `true` when the server stops: open streams end.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn nudge(&self) {
        let last = self.log.last_seq().unwrap_or(0);
        self.grown.send_replace(last);
    }

    /// Starts a delivery worker for every subscription that has none.
    pub fn start_workers(&self) -> Result<(), String> {
        let subs = self.log.subscriptions()?;
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.retain(|_, w| !w.is_finished());
        for sub in subs {
            if workers.contains_key(&sub.id) {
                continue;
            }
            let (log, sender, grown) = (self.log.clone(), self.sender.clone(), self.watch());
            let mut backoff = self.backoff.clone();
            backoff.reseed(workers.len() as u64);
            let id = sub.id.clone();
            let task = tokio::spawn(async move {
                if let Err(e) =
                    webhooks::run_subscription(log, sender, backoff, id.clone(), grown).await
                {
                    eprintln!("oms: webhook delivery of subscription {id} stopped: {e}");
                }
            });
            workers.insert(sub.id, task);
        }
        Ok(())
    }

    /// Relays the outbox every `every` until the process ends. A failed round is
    /// reported and tried again: the outbox keeps what was not relayed.
    pub async fn relay_forever(self: Arc<Self>, store: Arc<dyn Store>, every: Duration) {
        let mut reported = false;
        loop {
            match relay_once(&*store, &self.log).await {
                Ok(n) => {
                    reported = false;
                    if n > 0 {
                        self.nudge();
                    }
                }
                Err(e) if !reported => {
                    eprintln!("oms: event relay: {e} (retrying)");
                    reported = true;
                }
                Err(_) => {}
            }
            if let Err(e) = self.start_workers() {
                eprintln!("oms: webhook workers: {e}");
            }
            tokio::time::sleep(every).await;
        }
    }
}
