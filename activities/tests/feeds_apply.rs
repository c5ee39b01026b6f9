//! Feeds applied to a store: idempotency by feed id, resuming, and stock rows that
//! would break a reservation refused, also while orders reserve at the same time.

use activities::feeds::{import, Format, Kind, Progress, Report};
use activities::ledger::{stock_key, stock_move, StockRecord};
use activities::store::{sqlite::SqliteStore, Store, StoreError};
use std::sync::Arc;

async fn seeded() -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    activities::seed::seed(&*store, &activities::seed::demo())
        .await
        .unwrap();
    store
}

async fn run(store: &Arc<dyn Store>, kind: Kind, text: &str, id: Option<&str>) -> Report {
    let file = tempfile_with(text);
    let report = import(
        store.clone(),
        kind,
        Format::Csv,
        &file,
        id,
        Arc::new(Progress::default()),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&file);
    report
}

fn tempfile_with(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("oms-feed-{}.csv", fastrand::u64(..)));
    std::fs::write(&path, text).unwrap();
    path
}

async fn stock(store: &Arc<dyn Store>, sku: &str, wh: &str) -> StockRecord {
    let item = store.get(&stock_key(sku, wh)).await.unwrap().unwrap();
    serde::Deserialize::deserialize(&*item.doc).unwrap()
}

/// Orders hold units as `reserve` does: available to reserved, guarded.
async fn reserve(store: &Arc<dyn Store>, sku: &str, wh: &str, units: i64) -> bool {
    let w = stock_move(sku, wh, &[("available", -units), ("reserved", units)]);
    match store.transact(vec![w]).await {
        Ok(()) => true,
        Err(StoreError::ConditionFailed { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

fn consistent(s: &StockRecord) {
    assert_eq!(s.available, s.on_hand - s.reserved, "{s:?}");
    assert_eq!(s.on_hand + s.shipped, s.received, "{s:?}");
    assert!(s.available >= 0 && s.reserved >= 0, "{s:?}");
}

#[tokio::test]
async fn the_same_feed_twice_applies_once() {
    let store = seeded().await;
    let feed = "warehouse_id,sku,delta\nWH-NJ,MUG-WHITE,5\n";
    let first = run(&store, Kind::Stock, feed, None).await;
    assert_eq!((first.status.as_str(), first.applied), ("applied", 1));
    let again = run(&store, Kind::Stock, feed, None).await;
    assert_eq!(
        (again.status.as_str(), again.applied),
        ("already_applied", 1)
    );
    assert_eq!(again.feed_id, first.feed_id);
    assert_eq!(stock(&store, "MUG-WHITE", "WH-NJ").await.on_hand, 12 + 5);
    // The same id with other contents is a conflict, not a silent no-op.
    let id = Some(first.feed_id.as_str());
    let file = tempfile_with("warehouse_id,sku,delta\nWH-NJ,MUG-WHITE,6\n");
    let err = import(
        store.clone(),
        Kind::Stock,
        Format::Csv,
        &file,
        id,
        Default::default(),
    )
    .await
    .unwrap_err();
    let _ = std::fs::remove_file(&file);
    assert!(err.to_string().contains("already names another"), "{err}");
}

#[tokio::test]
async fn a_bad_row_applies_nothing() {
    let store = seeded().await;
    let feed = "warehouse_id,sku,on_hand\nWH-NJ,MUG-WHITE,50\nWH-NJ,MUG-WHITE,-3\n";
    let report = run(&store, Kind::Stock, feed, None).await;
    assert_eq!((report.status.as_str(), report.error_count), ("invalid", 1));
    assert_eq!(stock(&store, "MUG-WHITE", "WH-NJ").await.on_hand, 12);
}

#[tokio::test]
async fn a_count_below_the_reserved_units_is_refused_and_the_rest_applies() {
    let store = seeded().await;
    assert!(reserve(&store, "MUG-WHITE", "WH-NJ", 10).await);
    let feed = "warehouse_id,sku,on_hand\nWH-NJ,MUG-WHITE,4\nWH-DE,MUG-WHITE,7\n";
    let report = run(&store, Kind::Stock, feed, None).await;
    assert_eq!((report.applied, report.refused), (1, 1), "{report:?}");
    assert_eq!(report.refusals[0].line, 2);
    assert!(report.refusals[0]
        .rule
        .contains("10 units orders hold reserved"));
    let nj = stock(&store, "MUG-WHITE", "WH-NJ").await;
    assert_eq!((nj.on_hand, nj.reserved), (12, 10));
    let de = stock(&store, "MUG-WHITE", "WH-DE").await;
    assert_eq!((de.on_hand, de.available, de.received), (7, 7, 7));
    consistent(&de);
    // A delta is guarded the same way; a count at the reserved units is fine.
    let feed = "warehouse_id,sku,delta\nWH-NJ,MUG-WHITE,-3\nWH-NJ,HOODIE-GRY-L,-1\n";
    let report = run(&store, Kind::Stock, feed, None).await;
    assert_eq!((report.applied, report.refused), (0, 2), "{report:?}");
    let report = run(
        &store,
        Kind::Stock,
        "warehouse_id,sku,on_hand\nWH-NJ,MUG-WHITE,10\n",
        None,
    )
    .await;
    assert_eq!(report.applied, 1);
    let nj = stock(&store, "MUG-WHITE", "WH-NJ").await;
    assert_eq!((nj.on_hand, nj.available), (10, 0));
    consistent(&nj);
}

/// Counts and deltas land while orders reserve the same stock: every reservation that
/// succeeded is still held, and the counters agree at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_feeds_during_reservations_never_break_one() {
    let store = seeded().await;
    let orders = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut held = 0;
            for _ in 0..400 {
                if reserve(&store, "SOCKS-3PK", "WH-NJ", 1).await {
                    held += 1;
                }
                tokio::task::yield_now().await;
            }
            held
        })
    };
    for round in 0..30 {
        let feed = if round % 2 == 0 {
            format!(
                "warehouse_id,sku,on_hand\nWH-NJ,SOCKS-3PK,{}\n",
                100 + round * 10
            )
        } else {
            "warehouse_id,sku,delta\nWH-NJ,SOCKS-3PK,-15\n".to_string()
        };
        run(&store, Kind::Stock, &feed, Some(&format!("round-{round}"))).await;
    }
    let held = orders.await.unwrap();
    let s = stock(&store, "SOCKS-3PK", "WH-NJ").await;
    assert_eq!(s.reserved, held, "a reservation was lost: {s:?}");
    consistent(&s);
}

#[tokio::test]
async fn catalog_and_warehouses_then_stock_naming_them() {
    let store = seeded().await;
    let catalog =
        "sku,name,price_cents\nBOOK-RUST,The Rust book,3999\nMUG-WHITE,\"Mug, white\",1250\n";
    let report = run(&store, Kind::Catalog, catalog, None).await;
    assert_eq!((report.applied, report.unchanged), (1, 1), "{report:?}");
    let whs = "warehouse_id,name,country,lat,lon\nWH-FR,Paris,FR,48.85,2.35\n";
    assert_eq!(run(&store, Kind::Warehouses, whs, None).await.applied, 1);
    let feed = "warehouse_id,sku,on_hand\nWH-FR,BOOK-RUST,30\n";
    assert_eq!(run(&store, Kind::Stock, feed, None).await.applied, 1);
    assert_eq!(stock(&store, "BOOK-RUST", "WH-FR").await.available, 30);
}
