//! Order events out of `oms up`: the relay that moves events from the order store's
//! outbox (`activities::events`) into the durable log, giving each its global sequence,
//! and the webhook workers that deliver the log to subscribers. The HTTP routes over
//! them are in `events_http`. On AWS the DynamoDB stream's Lambda is the relay
//! (infra-cdk), publishing to EventBridge instead.

pub mod log;
pub mod webhooks;

use activities::events::{events_in, into_events, outbox_prefix};
use activities::store::sqlite::SqliteStore;
use activities::store::{Cond, Item, Key, Store, StoreError, Write};
use log::EventLog;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use webhooks::{Backoff, Sender};

/// Where the relay finds the outbox.
#[derive(Clone)]
pub enum Outbox {
    /// The embedded order store, in the log's database: a round is one job, its events
    /// appended and its items deleted in one commit.
    Beside(Arc<SqliteStore>),
    /// Another store (DynamoDB, a SQLite file of its own): the events are appended
    /// durably, then the items deleted there.
    Elsewhere(Arc<dyn Store>),
}

impl Outbox {
    fn store(&self) -> &dyn Store {
        match self {
            Outbox::Beside(s) => &**s,
            Outbox::Elsewhere(s) => &**s,
        }
    }
}

/// What a relay round did.
#[derive(Debug, Default, PartialEq)]
pub struct Relayed {
    /// Events logged for the first time.
    pub added: usize,
    /// The log's last sequence after the round's append (0 when there was none).
    pub last_seq: u64,
    /// Outbox items left where they are because an event of theirs has no id or no
    /// type (the log could not take it): reported, never dropped, and they do not hold
    /// back the other items.
    pub malformed: Vec<Key>,
}

/// Publishes every outbox item there is: logs their events (skipping ones logged
/// before a crash) in one transaction, and deletes the items.
pub async fn relay_once(outbox: &Outbox, log: &EventLog) -> Result<Relayed, String> {
    // Sorted by partition then sort key: each order's items in sequence order.
    let scanned = outbox
        .store()
        .scan(outbox_prefix())
        .await
        .map_err(|e| e.to_string())?;
    let (items, malformed): (Vec<Item>, Vec<Item>) = scanned.into_iter().partition(|item| {
        events_in(item)
            .iter()
            .all(|e| log::id_and_type(e).is_some())
    });
    let malformed = malformed.into_iter().map(|item| item.key).collect();
    if items.is_empty() {
        return Ok(Relayed {
            added: 0,
            last_seq: 0,
            malformed,
        });
    }
    // Each delete its own batch: one lost to another relay (a second `oms up` on the
    // same store) must not undo the rest.
    let deletes: Vec<Write> = items
        .iter()
        .map(|item| Write::Delete {
            key: item.key.clone(),
            cond: Cond::Version(item.version),
        })
        .collect();
    let events: Vec<_> = items.into_iter().flat_map(into_events).collect();
    let appended = match outbox {
        Outbox::Beside(store) => relay_beside(store.clone(), log, events, deletes).await?,
        Outbox::Elsewhere(store) => relay_elsewhere(&**store, log, events, deletes).await?,
    };
    Ok(Relayed {
        added: appended.added,
        last_seq: appended.last_seq,
        malformed,
    })
}

/// One lazy job: the append, then the deletes. One WAL and one transaction: the items
/// cannot go without their events. Lazy: whoever tells the events to the world syncs
/// first (log.rs), one fsync for the round as before; a durable job made the lazy
/// steps queued behind it wait for its fsync, and cost a hand-off to the writer
/// thread (issue 16).
async fn relay_beside(
    store: Arc<SqliteStore>,
    log: &EventLog,
    events: Vec<serde_json::Value>,
    deletes: Vec<Write>,
) -> Result<log::Appended, String> {
    log.append_with(events, false, move |conn| {
        for delete in deletes {
            match store.apply_in(conn, vec![delete]) {
                Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    })
    .await
}

/// The append, fsynced, and only then the deletes, in the other store.
async fn relay_elsewhere(
    store: &dyn Store,
    log: &EventLog,
    events: Vec<serde_json::Value>,
    deletes: Vec<Write>,
) -> Result<log::Appended, String> {
    // Items lazily committed in a database of their own would have to be on disk
    // before their events are (a no-op for a store that commits durably).
    store.sync().await.map_err(|e| e.to_string())?;
    let appended = log.append_with(events, true, |_| Ok(())).await?;
    // Sent together, so that a store's group commit takes them in one fsync.
    let deletes = deletes
        .into_iter()
        .map(|delete| store.transact(vec![delete]));
    for deleted in futures_util::future::join_all(deletes).await {
        match deleted {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(appended)
}

/// The order store as `oms up` hands it out: a batch that adds to the outbox wakes the
/// relay, so an event reaches the log (and `GET /events`) a commit after the change,
/// not a polling interval after it.
pub struct WakingStore {
    inner: Arc<dyn Store>,
    outbox_written: Arc<Notify>,
}

impl WakingStore {
    pub fn new(inner: Arc<dyn Store>, outbox_written: Arc<Notify>) -> WakingStore {
        WakingStore {
            inner,
            outbox_written,
        }
    }
}

#[async_trait::async_trait]
impl Store for WakingStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.inner.query(pk, sk_prefix).await
    }
    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        self.inner.query_back(pk, before, limit).await
    }
    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.inner.scan(pk_prefix).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let adds = writes
            .iter()
            .any(|w| matches!(w, Write::Put { .. }) && w.key().pk.starts_with(outbox_prefix()));
        self.inner.transact(writes).await?;
        if adds {
            self.outbox_written.notify_one();
        }
        Ok(())
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
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

    /// Tells the streams the log has grown to `last_seq`, known without reading it.
    fn grown_to(&self, last_seq: u64) {
        self.grown.send_modify(|last| *last = (*last).max(last_seq));
    }

    /// Stops the delivery worker of a deleted subscription now, even in the middle of
    /// its retries (it would otherwise notice only after the event it is retrying).
    pub fn forget(&self, id: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.remove(id) {
            w.abort();
        }
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

    /// Relays the outbox whenever `outbox_written` is told (a [`WakingStore`]'s batch
    /// added to it), and every `every` for writers it does not see (another process on
    /// the same store), until the process ends. A failed round is reported and tried
    /// again: the outbox keeps what was not relayed. At most every `every` it also
    /// starts the webhook workers missing (a subscription another process made, a
    /// worker that stopped): not on each wake-up, where that read was one of a round's
    /// three (issue 16; a subscription made here starts its worker itself).
    pub async fn relay_forever(
        self: Arc<Self>,
        outbox: Outbox,
        outbox_written: Arc<Notify>,
        every: Duration,
    ) {
        let mut reported = false;
        let mut reported_malformed = std::collections::HashSet::new();
        // When to look for missing webhook workers next: a deadline, not the timer's
        // branch below, which a steady stream of wake-ups would never let fire.
        let mut look_for_workers = tokio::time::Instant::now();
        loop {
            match relay_once(&outbox, &self.log).await {
                Ok(round) => {
                    reported = false;
                    if round.added > 0 {
                        self.grown_to(round.last_seq);
                    }
                    for key in round.malformed {
                        if reported_malformed.insert(key.clone()) {
                            eprintln!(
                                "oms: event relay: outbox item {key} has an event without \
                                 id or type; it is kept and not published"
                            );
                        }
                    }
                }
                Err(e) if !reported => {
                    eprintln!("oms: event relay: {e} (retrying)");
                    reported = true;
                }
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= look_for_workers {
                if let Err(e) = self.start_workers() {
                    eprintln!("oms: webhook workers: {e}");
                }
                look_for_workers = tokio::time::Instant::now() + every;
            }
            tokio::select! {
                _ = outbox_written.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
            // Let the tasks already woken run first (the saga's next step, which may
            // add to the outbox too): a round then carries more events, and does not
            // delay the step that woke it.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use activities::events::{events_of, order_status, outbox_write};
    use activities::ledger::{order_key, to_doc, OrderRecord};
    use activities::store::sqlite::SqliteStore;
    use serde_json::json;

    fn order(id: &str) -> OrderRecord {
        serde_json::from_value(json!({
            "order_id": id, "customer_id": "c", "lines": [], "total_cents": 0,
            "currency": "USD", "payment_method": "pm", "status": "PENDING",
            "ship_to": {"name": "A", "line1": "1", "city": "B", "postal_code": "1", "country": "US"},
            "charged_cents": 0, "refunded_cents": 0, "cancel_requested": false,
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"
        }))
        .unwrap()
    }

    /// Emits one status event for each order, in its own batch with the order record.
    async fn emit(store: &dyn Store, record: &mut OrderRecord, version: Option<u64>) {
        let outbox = outbox_write(record, vec![order_status(record)]).unwrap();
        let put = activities::ledger::put(order_key(&record.order_id), to_doc(record), version);
        store.transact(vec![outbox, put]).await.unwrap();
    }

    #[tokio::test]
    async fn the_relay_logs_each_event_once_in_order_per_order_and_empties_the_outbox() {
        let store = SqliteStore::in_memory().unwrap();
        let log = EventLog::in_memory().await.unwrap();
        relays_each_event_once(Outbox::Elsewhere(Arc::new(store)), &log).await;
    }

    /// The order store and the log in one database, as `oms up` has them.
    async fn store_beside_log() -> (Arc<SqliteStore>, EventLog) {
        let db = groupcommit::Db::in_memory(&groupcommit::Options::default(), |_| {
            Ok::<_, groupcommit::Error>(())
        })
        .unwrap();
        let store = Arc::new(SqliteStore::within(db.clone()).await.unwrap());
        (store, EventLog::within(db).await.unwrap())
    }

    #[tokio::test]
    async fn the_relay_does_the_same_with_the_outbox_beside_the_log() {
        let (store, log) = store_beside_log().await;
        relays_each_event_once(Outbox::Beside(store), &log).await;
    }

    #[tokio::test]
    async fn an_item_with_an_event_the_log_cannot_take_is_kept_and_holds_back_nothing() {
        let (store, log) = store_beside_log().await;
        let bad = Key::new(format!("{}broken", outbox_prefix()), "1");
        let mut doc = serde_json::Map::new();
        doc.insert("events".into(), json!([{"type": "oms.order.pending"}]));
        store
            .transact(vec![Write::Put {
                key: bad.clone(),
                doc,
                cond: Cond::NotExists,
            }])
            .await
            .unwrap();
        emit(&*store, &mut order("a"), None).await;
        let outbox = Outbox::Beside(store.clone());
        let round = relay_once(&outbox, &log).await.unwrap();
        assert_eq!((round.added, round.malformed), (1, vec![bad.clone()]));
        let left: Vec<Key> = store
            .scan(outbox_prefix())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(left, [bad], "kept, not dropped; the good item went");
    }

    /// Records the ids of the events it is sent.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl Sender for Recorder {
        async fn send(&self, _: &log::Subscription, event: &log::Logged) -> Result<(), String> {
            self.0.lock().unwrap().push(event.id.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_relay_woken_without_pause_still_starts_the_worker_of_a_new_subscription() {
        let (store, log) = store_beside_log().await;
        let log = Arc::new(log);
        let recorder = Arc::new(Recorder::default());
        let ms = Duration::from_millis;
        let hub = Hub::new(
            log.clone(),
            recorder.clone(),
            Backoff::new(ms(10), ms(40), 3, Some(1)),
        );
        let woken = Arc::new(Notify::new());
        let outbox = Outbox::Beside(store.clone());
        let relay = tokio::spawn(hub.clone().relay_forever(outbox, woken.clone(), ms(20)));
        // Woken twenty times as often as its timer: the timer never wins the select.
        let waker = woken.clone();
        let busy = tokio::spawn(async move {
            loop {
                waker.notify_one();
                tokio::time::sleep(ms(1)).await;
            }
        });
        tokio::time::sleep(ms(50)).await;
        // Made as another process would make it: in the log, no worker started here.
        log.subscribe("http://127.0.0.1:9/", &["oms.*".into()])
            .await
            .unwrap();
        emit(&*store, &mut order("a"), None).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while recorder.0.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(ms(5)).await;
        }
        busy.abort();
        relay.abort();
        assert_eq!(
            recorder.0.lock().unwrap().len(),
            1,
            "the event reached the webhook"
        );
    }

    async fn relays_each_event_once(outbox: Outbox, log: &EventLog) {
        let store = outbox.store();
        let (mut a, mut b) = (order("a"), order("b"));
        emit(store, &mut a, None).await;
        emit(store, &mut b, None).await;
        emit(store, &mut a, Some(1)).await;
        // A relay that died after logging and before deleting: the items come again.
        let pending = store.scan(outbox_prefix()).await.unwrap();
        log.append(events_of(&pending[0]), false).await.unwrap();
        let round = relay_once(&outbox, log).await.unwrap();
        assert_eq!(round.added, 2, "one was logged before");
        // What the relay tells the streams without reading the log is what it holds.
        assert_eq!(round.last_seq, log.last_seq().unwrap());
        assert!(store.scan(outbox_prefix()).await.unwrap().is_empty());
        assert_eq!(relay_once(&outbox, log).await.unwrap(), Relayed::default());
        let logged = log.after(0, 10).unwrap();
        let seqs: Vec<u64> = logged.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let per_order: Vec<(String, u64)> = logged
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l.body).unwrap();
                (
                    v["subject"].as_str().unwrap().to_string(),
                    v["data"]["sequence"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            per_order,
            [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]
        );
        assert_eq!(log.after(1, 1).unwrap()[0].seq, 2);
    }
}
