//! One contract, two backends: every case here runs against SQLite (in a file of its
//! own, and within another database as `oms up` has it, with its cache) and against
//! AWS's DynamoDB Local, each on a fresh store. The store cases pin the conditional-write
//! semantics; the domain cases pin what the activities promise (idempotency,
//! compensation of what never happened, typed errors, nothing half-written); the last
//! drives many concurrent sagas with faults injected everywhere and audits the result.

mod common;
#[path = "saga_driver.rs"]
mod saga_driver;

use activities::activity::{self, request_cancel, Ctx};
use activities::amend;
use activities::audit::audit;
use activities::faults::FaultPlan;
use activities::ledger::{load_order, Step, StepStatus};
use activities::model::*;
use activities::seed::{self, CatalogSeed};
use activities::store::{Cond, Key, Store, StoreError, Write};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Case = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        const CASES: &[(&str, Case)] = &[$((stringify!($name), |s| Box::pin($name(s)))),*];
    };
}

cases![
    put_conditions,
    batch_is_all_or_nothing,
    add_guards_counters,
    check_and_delete,
    query_and_scan_by_prefix,
    query_back_pages_newest_first,
    batch_rules,
    documents_round_trip,
    happy_path_ships_and_audits,
    the_last_shipment_shipped_completes_the_order,
    every_activity_is_idempotent,
    compensating_what_never_happened,
    compensations_run_twice_change_nothing,
    sourcing_fewest_shipments_then_nearest,
    out_of_stock_reserves_nothing,
    bad_orders_write_nothing,
    payment_test_tokens,
    payment_tokens_stay_with_the_gateway,
    cancel_request_stops_forward_steps,
    fault_injection,
    picks_wait_for_the_warehouse,
    concurrent_sagas_keep_every_invariant,
    store_failures_leave_nothing_half_written,
    events_follow_every_change,
    amendments_apply_and_balance_the_books,
    a_failed_amendment_is_compensated_and_releases_the_order,
    an_amendment_and_a_pick_never_both_win,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    for (name, case) in CASES {
        eprintln!("sqlite: {name}");
        case(common::sqlite()).await;
    }
}

/// As `oms up` keeps it: in the runtime's database, with its cache of decoded items.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_within_the_runtime_database() {
    for (name, case) in CASES {
        eprintln!("sqlite within: {name}");
        case(common::sqlite_within().await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb() {
    let local = common::DynamoLocal::start();
    for (name, case) in CASES {
        eprintln!("dynamodb: {name}");
        case(local.store().await).await;
    }
}

fn doc(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn put(pk: &str, sk: &str, v: Value, cond: Cond) -> Write {
    Write::Put {
        key: Key::new(pk, sk),
        doc: doc(v),
        cond,
    }
}

// ---- the store contract ----------------------------------------------------------

async fn put_conditions(s: Arc<dyn Store>) {
    let k = Key::new("P", "a");
    s.transact(vec![put("P", "a", json!({"n": 1}), Cond::NotExists)])
        .await
        .unwrap();
    let item = s.get(&k).await.unwrap().unwrap();
    assert_eq!((item.version, item.doc["n"].clone()), (1, json!(1)));
    let again = s
        .transact(vec![put("P", "a", json!({"n": 2}), Cond::NotExists)])
        .await;
    assert!(
        matches!(again, Err(StoreError::ConditionFailed { index: 0, .. })),
        "{again:?}"
    );
    s.transact(vec![put("P", "a", json!({"n": 2}), Cond::Version(1))])
        .await
        .unwrap();
    let stale = s
        .transact(vec![put("P", "a", json!({"n": 3}), Cond::Version(1))])
        .await;
    assert!(matches!(stale, Err(StoreError::ConditionFailed { .. })));
    let item = s.get(&k).await.unwrap().unwrap();
    assert_eq!((item.version, item.doc["n"].clone()), (2, json!(2)));
    // A Put replaces the whole document.
    s.transact(vec![put("P", "a", json!({"m": true}), Cond::Version(2))])
        .await
        .unwrap();
    let item = s.get(&k).await.unwrap().unwrap();
    assert_eq!(*item.doc, doc(json!({"m": true})));
    assert!(s.get(&Key::new("P", "zz")).await.unwrap().is_none());
}

async fn batch_is_all_or_nothing(s: Arc<dyn Store>) {
    s.transact(vec![put("B", "taken", json!({"v": 0}), Cond::NotExists)])
        .await
        .unwrap();
    let r = s
        .transact(vec![
            put("B", "new", json!({"v": 1}), Cond::NotExists),
            Write::Add {
                key: Key::new("B", "taken"),
                deltas: vec![("v".into(), 5)],
                min_after: vec![],
            },
            put("B", "taken2", json!({}), Cond::Version(7)),
        ])
        .await;
    assert!(
        matches!(r, Err(StoreError::ConditionFailed { index: 2, .. })),
        "{r:?}"
    );
    assert!(s.get(&Key::new("B", "new")).await.unwrap().is_none());
    assert_eq!(
        s.get(&Key::new("B", "taken"))
            .await
            .unwrap()
            .unwrap()
            .i64("v"),
        0
    );
}

async fn add_guards_counters(s: Arc<dyn Store>) {
    s.transact(vec![put(
        "S",
        "x",
        json!({"available": 10, "reserved": 0}),
        Cond::NotExists,
    )])
    .await
    .unwrap();
    let add = |d: i64| Write::Add {
        key: Key::new("S", "x"),
        deltas: vec![("available".into(), -d), ("reserved".into(), d)],
        min_after: vec![("available".into(), 0)],
    };
    assert!(matches!(
        s.transact(vec![add(11)]).await,
        Err(StoreError::ConditionFailed { index: 0, .. })
    ));
    s.transact(vec![add(10)]).await.unwrap();
    let item = s.get(&Key::new("S", "x")).await.unwrap().unwrap();
    assert_eq!(
        (item.i64("available"), item.i64("reserved"), item.version),
        (0, 10, 2)
    );
    assert!(s.transact(vec![add(1)]).await.is_err());
    // A missing counter counts from zero; Add on a missing item fails.
    s.transact(vec![Write::Add {
        key: Key::new("S", "x"),
        deltas: vec![("fresh".into(), 3)],
        min_after: vec![],
    }])
    .await
    .unwrap();
    assert_eq!(
        s.get(&Key::new("S", "x"))
            .await
            .unwrap()
            .unwrap()
            .i64("fresh"),
        3
    );
    let missing = s
        .transact(vec![Write::Add {
            key: Key::new("S", "nope"),
            deltas: vec![("n".into(), 1)],
            min_after: vec![],
        }])
        .await;
    assert!(matches!(missing, Err(StoreError::ConditionFailed { .. })));
}

async fn check_and_delete(s: Arc<dyn Store>) {
    s.transact(vec![put("C", "a", json!({}), Cond::NotExists)])
        .await
        .unwrap();
    let guarded = |cond| {
        vec![
            Write::Check {
                key: Key::new("C", "a"),
                cond,
            },
            put("C", "b", json!({}), Cond::Always),
        ]
    };
    assert!(s.transact(guarded(Cond::Version(2))).await.is_err());
    assert!(s.transact(guarded(Cond::NotExists)).await.is_err());
    assert!(s.get(&Key::new("C", "b")).await.unwrap().is_none());
    s.transact(guarded(Cond::Version(1))).await.unwrap();
    assert!(s.get(&Key::new("C", "b")).await.unwrap().is_some());
    assert!(s
        .transact(vec![Write::Delete {
            key: Key::new("C", "a"),
            cond: Cond::Version(9)
        }])
        .await
        .is_err());
    s.transact(vec![Write::Delete {
        key: Key::new("C", "a"),
        cond: Cond::Exists,
    }])
    .await
    .unwrap();
    assert!(s.get(&Key::new("C", "a")).await.unwrap().is_none());
}

async fn query_and_scan_by_prefix(s: Arc<dyn Store>) {
    let mut writes = Vec::new();
    for (pk, sk) in [
        ("Q#1", "b#2"),
        ("Q#1", "a#1"),
        ("Q#1", "b#1"),
        ("Q#2", "a"),
        ("R", "a"),
    ] {
        writes.push(put(
            pk,
            sk,
            json!({"at": format!("{pk}/{sk}")}),
            Cond::NotExists,
        ));
    }
    s.transact(writes).await.unwrap();
    let sks = |items: Vec<activities::store::Item>| -> Vec<String> {
        items.into_iter().map(|i| i.key.to_string()).collect()
    };
    assert_eq!(
        sks(s.query("Q#1", "b#").await.unwrap()),
        ["Q#1/b#1", "Q#1/b#2"]
    );
    assert_eq!(
        sks(s.query("Q#1", "").await.unwrap()),
        ["Q#1/a#1", "Q#1/b#1", "Q#1/b#2"]
    );
    assert_eq!(
        sks(s.scan("Q#").await.unwrap()),
        ["Q#1/a#1", "Q#1/b#1", "Q#1/b#2", "Q#2/a"]
    );
    assert!(s.query("Q#3", "").await.unwrap().is_empty());
}

async fn query_back_pages_newest_first(s: Arc<dyn Store>) {
    for chunk in (0..250).collect::<Vec<_>>().chunks(100) {
        let writes = chunk
            .iter()
            .map(|i| {
                put(
                    "BACK",
                    &format!("t{i:04}"),
                    json!({"i": i}),
                    Cond::NotExists,
                )
            })
            .collect();
        s.transact(writes).await.unwrap();
    }
    s.transact(vec![put("BACK2", "t9999", json!({}), Cond::NotExists)])
        .await
        .unwrap();
    let sks = |items: Vec<activities::store::Item>| -> Vec<String> {
        items.into_iter().map(|i| i.key.sk).collect()
    };
    assert_eq!(
        sks(s.query_back("BACK", None, 3).await.unwrap()),
        ["t0249", "t0248", "t0247"]
    );
    assert_eq!(
        sks(s.query_back("BACK", Some("t0247"), 2).await.unwrap()),
        ["t0246", "t0245"]
    );
    // Paging to the end reads every item once, in order.
    let (mut seen, mut before) = (Vec::new(), None::<String>);
    loop {
        let page = sks(s.query_back("BACK", before.as_deref(), 70).await.unwrap());
        if page.is_empty() {
            break;
        }
        before = page.last().cloned();
        seen.extend(page);
    }
    let want: Vec<String> = (0..250).rev().map(|i| format!("t{i:04}")).collect();
    assert_eq!(seen, want);
    assert!(s
        .query_back("BACK", Some("t0000"), 5)
        .await
        .unwrap()
        .is_empty());
    assert!(s.query_back("NONE", None, 5).await.unwrap().is_empty());
}

async fn batch_rules(s: Arc<dyn Store>) {
    let dup = s
        .transact(vec![
            put("D", "a", json!({}), Cond::Always),
            put("D", "a", json!({}), Cond::Always),
        ])
        .await;
    assert!(matches!(dup, Err(StoreError::Invalid(m)) if m.contains("only once")));
    let many: Vec<Write> = (0..101)
        .map(|i| put("D", &i.to_string(), json!({}), Cond::Always))
        .collect();
    assert!(
        matches!(s.transact(many).await, Err(StoreError::Invalid(m)) if m.contains("at most 100"))
    );
    let reserved = s
        .transact(vec![put("D", "a", json!({"version": 1}), Cond::Always)])
        .await;
    assert!(matches!(reserved, Err(StoreError::Invalid(m)) if m.contains("reserved")));
    assert!(s.transact(vec![]).await.is_err());
    assert!(s.query("D", "").await.unwrap().is_empty());
}

async fn documents_round_trip(s: Arc<dyn Store>) {
    let value = json!({
        "a_string": "x ü \"quoted\"", "empty": "", "int": -42, "big": 9007199254740993i64,
        "float": 12.5, "yes": true, "no": false, "nothing": null,
        "list": [1, "two", {"three": 3}, []], "map": {"inner": {"deep": [null]}}
    });
    s.transact(vec![put("J", "doc", value.clone(), Cond::NotExists)])
        .await
        .unwrap();
    let got = Value::Object(Map::clone(
        &s.get(&Key::new("J", "doc")).await.unwrap().unwrap().doc,
    ));
    assert_eq!(got, value);
}

// ---- the domain contract ---------------------------------------------------------

/// A small world: two US warehouses and one in Ireland.
fn world() -> CatalogSeed {
    let mut demo = seed::demo();
    demo.warehouses.retain(|w| w.warehouse_id != "WH-DE");
    demo.stock = vec![
        ("TSHIRT-BLK-M".into(), "WH-NJ".into(), 5),
        ("TSHIRT-BLK-M".into(), "WH-NV".into(), 5),
        ("TSHIRT-BLK-M".into(), "WH-IE".into(), 20),
        ("MUG-WHITE".into(), "WH-NV".into(), 3),
        ("SOCKS-3PK".into(), "WH-NJ".into(), 10),
    ];
    demo
}

async fn ctx_with(store: Arc<dyn Store>, world: &CatalogSeed) -> Ctx {
    seed::seed(&*store, world).await.unwrap();
    Ctx::new(store)
}

pub fn order(id: &str, lines: &[(&str, i64)]) -> Order {
    Order {
        order_id: id.into(),
        customer_id: "cust-1".into(),
        lines: lines
            .iter()
            .map(|(s, q)| OrderLine {
                sku: s.to_string(),
                quantity: *q,
            })
            .collect(),
        payment: Payment::token("tok_visa"),
        ship_to: Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Boston".into(),
            postal_code: "02101".into(),
            country: "US".into(),
        },
    }
}

fn r(id: &str) -> OrderRef {
    OrderRef {
        order_id: id.into(),
    }
}

fn pr(id: &str, sid: &str) -> PickRequest {
    PickRequest {
        order_id: id.into(),
        shipment_id: sid.into(),
        task_token: None,
    }
}

fn sr(id: &str, sid: &str) -> ShipmentRef {
    ShipmentRef {
        order_id: id.into(),
        shipment_id: sid.into(),
    }
}

async fn stock(store: &dyn Store) -> BTreeMap<(String, String), (i64, i64, i64)> {
    seed::inventory(store)
        .await
        .unwrap()
        .into_iter()
        .map(|s| ((s.sku, s.warehouse_id), (s.on_hand, s.reserved, s.shipped)))
        .collect()
}

async fn clean_audit(store: &dyn Store) -> activities::audit::Audit {
    let a = audit(store).await.unwrap();
    assert!(a.problems.is_empty(), "audit: {:#?}", a.problems);
    a
}

fn status(s: OrderStatus) -> StatusUpdate {
    StatusUpdate {
        order_id: String::new(),
        status: s,
        failure: None,
        execution_arn: None,
    }
}

async fn record(ctx: &Ctx, id: &str, s: OrderStatus) {
    let mut u = status(s);
    u.order_id = id.into();
    activity::record_order_status(ctx, u).await.unwrap();
}

async fn happy_path_ships_and_audits(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let placed = activity::place_order(&ctx, order("o1", &[("TSHIRT-BLK-M", 2), ("SOCKS-3PK", 1)]))
        .await
        .unwrap();
    assert_eq!(
        placed.total_cents,
        2 * 1999 + 899,
        "prices come from the catalog"
    );
    let res = activity::reserve_inventory(&ctx, r("o1")).await.unwrap();
    assert_eq!(res.shipments.len(), 1);
    assert_eq!(
        res.shipments[0].warehouse_id, "WH-NJ",
        "one US warehouse holds both"
    );
    let charge = activity::charge_payment(&ctx, r("o1")).await.unwrap();
    assert_eq!(charge.amount_cents, placed.total_cents);
    record(&ctx, "o1", OrderStatus::Fulfilling).await;
    let sid = &res.shipments[0].shipment_id;
    let picked = activity::pick_shipment(&ctx, pr("o1", sid)).await.unwrap();
    assert_eq!(picked.status, ShipmentStatus::Picked);
    let shipped = activity::ship_shipment(&ctx, sr("o1", sid)).await.unwrap();
    assert_eq!(shipped.status, ShipmentStatus::Shipped);
    assert!(shipped
        .tracking_number
        .as_deref()
        .is_some_and(|t| t.starts_with("1Z")));
    // Its only shipment shipped: ShipShipment completed the order (the saga has no
    // MarkCompleted); recording COMPLETED again changes nothing.
    let o = load_order(&*store, "o1").await.unwrap().value;
    assert_eq!(o.status, OrderStatus::Completed);
    record(&ctx, "o1", OrderStatus::Completed).await;
    let st = stock(&*store).await;
    assert_eq!(st[&("TSHIRT-BLK-M".into(), "WH-NJ".into())], (3, 0, 2));
    assert_eq!(st[&("SOCKS-3PK".into(), "WH-NJ".into())], (9, 0, 1));
    let a = clean_audit(&*store).await;
    assert_eq!(
        (a.charged_cents, a.completed_total_cents),
        (placed.total_cents, placed.total_cents)
    );
    let o = load_order(&*store, "o1").await.unwrap().value;
    assert_eq!(
        (o.status, o.charged_cents),
        (OrderStatus::Completed, placed.total_cents)
    );
    for step in ["reserve", "charge"] {
        let s = Step::load(&*store, "o1", step, None).await.unwrap();
        assert_eq!(s.status(), Some(StepStatus::Done), "{step}");
    }
    // A finished order cannot be moved back.
    let mut back = status(OrderStatus::Compensating);
    back.order_id = "o1".into();
    let err = activity::record_order_status(&ctx, back).await.unwrap_err();
    assert_eq!(err.name(), "Order.Conflict");
}

/// ShipShipment completes the order when it ships the last shipment: not before, and
/// also when two shipments of one order ship at the same moment (the order record's
/// version check makes the second batch read again and see the first SHIPPED).
async fn the_last_shipment_shipped_completes_the_order(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    for (id, parallel) in [("os1", false), ("os2", true)] {
        activity::place_order(&ctx, order(id, &[("MUG-WHITE", 1), ("SOCKS-3PK", 1)]))
            .await
            .unwrap();
        let res = activity::reserve_inventory(&ctx, r(id)).await.unwrap();
        assert_eq!(res.shipments.len(), 2, "mugs only in NV, socks only in NJ");
        activity::charge_payment(&ctx, r(id)).await.unwrap();
        record(&ctx, id, OrderStatus::Fulfilling).await;
        let sids: Vec<String> = res
            .shipments
            .iter()
            .map(|s| s.shipment_id.clone())
            .collect();
        for sid in &sids {
            activity::pick_shipment(&ctx, pr(id, sid)).await.unwrap();
        }
        if parallel {
            let (a, b) = tokio::join!(
                activity::ship_shipment(&ctx, sr(id, &sids[0])),
                activity::ship_shipment(&ctx, sr(id, &sids[1]))
            );
            a.unwrap();
            b.unwrap();
        } else {
            activity::ship_shipment(&ctx, sr(id, &sids[0]))
                .await
                .unwrap();
            let o = load_order(&*store, id).await.unwrap().value;
            assert_eq!(
                o.status,
                OrderStatus::Fulfilling,
                "one shipment still to ship"
            );
            activity::ship_shipment(&ctx, sr(id, &sids[1]))
                .await
                .unwrap();
        }
        let o = load_order(&*store, id).await.unwrap().value;
        assert_eq!(o.status, OrderStatus::Completed, "{id}");
        // Shipping again is idempotent and emits nothing more; so is a late run of the
        // saga's Express child (at-least-once): its status records do not take the
        // order back.
        activity::ship_shipment(&ctx, sr(id, &sids[1]))
            .await
            .unwrap();
        record(&ctx, id, OrderStatus::Pending).await;
        record(&ctx, id, OrderStatus::Fulfilling).await;
        let again = load_order(&*store, id).await.unwrap().value;
        assert_eq!(again.status, OrderStatus::Completed, "{id}");
        assert_eq!(again.event_seq, o.event_seq, "{id}");
    }
    let events = check_events(&*store).await;
    for id in ["os1", "os2"] {
        let completed = events[id]
            .iter()
            .filter(|e| e["type"] == "oms.order.completed")
            .count();
        assert_eq!(completed, 1, "{id}: one oms.order.completed");
    }
    clean_audit(&*store).await;
}

/// Runs every forward activity twice, and then every compensation twice: the second
/// call returns the first result and changes nothing.
async fn every_activity_is_idempotent(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let o = order("o2", &[("TSHIRT-BLK-M", 8)]);
    let a = activity::place_order(&ctx, o.clone()).await.unwrap();
    assert_eq!(activity::place_order(&ctx, o.clone()).await.unwrap(), a);
    let mut other = o.clone();
    other.lines[0].quantity = 1;
    assert_eq!(
        activity::place_order(&ctx, other).await.unwrap_err().name(),
        "Order.Conflict"
    );
    let res = activity::reserve_inventory(&ctx, r("o2")).await.unwrap();
    let before = stock(&*store).await;
    assert_eq!(
        activity::reserve_inventory(&ctx, r("o2")).await.unwrap(),
        res
    );
    assert_eq!(
        stock(&*store).await,
        before,
        "a repeated reservation reserves nothing more"
    );
    let c = activity::charge_payment(&ctx, r("o2")).await.unwrap();
    assert_eq!(activity::charge_payment(&ctx, r("o2")).await.unwrap(), c);
    for s in &res.shipments {
        let p = activity::pick_shipment(&ctx, pr("o2", &s.shipment_id))
            .await
            .unwrap();
        assert_eq!(
            activity::pick_shipment(&ctx, pr("o2", &s.shipment_id))
                .await
                .unwrap(),
            p
        );
        let sh = activity::ship_shipment(&ctx, sr("o2", &s.shipment_id))
            .await
            .unwrap();
        let after_ship = stock(&*store).await;
        assert_eq!(
            activity::ship_shipment(&ctx, sr("o2", &s.shipment_id))
                .await
                .unwrap(),
            sh
        );
        assert_eq!(
            stock(&*store).await,
            after_ship,
            "a repeated ship moves nothing"
        );
    }
    let totals = activities::gateway::totals(&*store).await.unwrap();
    assert_eq!(
        (totals.charges, totals.charged_cents),
        (1, a.total_cents),
        "one charge"
    );
    // Now undo it all, each compensation twice.
    for s in &res.shipments {
        let c1 = activity::cancel_shipment(&ctx, sr("o2", &s.shipment_id))
            .await
            .unwrap();
        assert_eq!(
            activity::cancel_shipment(&ctx, sr("o2", &s.shipment_id))
                .await
                .unwrap(),
            c1
        );
        let r1 = activity::restock_shipment(&ctx, sr("o2", &s.shipment_id))
            .await
            .unwrap();
        assert_eq!(
            activity::restock_shipment(&ctx, sr("o2", &s.shipment_id))
                .await
                .unwrap(),
            r1
        );
    }
    let f1 = activity::refund_payment(&ctx, r("o2")).await.unwrap();
    assert_eq!(f1.amount_cents, a.total_cents);
    assert_eq!(activity::refund_payment(&ctx, r("o2")).await.unwrap(), f1);
    let l1 = activity::release_inventory(&ctx, r("o2")).await.unwrap();
    assert_eq!(l1.released_shipments.len(), res.shipments.len());
    assert_eq!(
        activity::release_inventory(&ctx, r("o2")).await.unwrap(),
        l1
    );
    record(&ctx, "o2", OrderStatus::Cancelled).await;
    let audit = clean_audit(&*store).await;
    assert_eq!((audit.reserved_units, audit.shipped_units), (0, 0));
    assert_eq!(audit.charged_cents, audit.refunded_cents);
    // After compensation, a late forward call (a duplicate delivery) does nothing.
    for e in [
        activity::reserve_inventory(&ctx, r("o2"))
            .await
            .unwrap_err(),
        activity::charge_payment(&ctx, r("o2")).await.unwrap_err(),
        activity::ship_shipment(&ctx, sr("o2", &res.shipments[0].shipment_id))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.name(), "Order.Cancelled", "{e}");
    }
    clean_audit(&*store).await;
}

async fn compensating_what_never_happened(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    activity::place_order(&ctx, order("o3", &[("MUG-WHITE", 1)]))
        .await
        .unwrap();
    let before = stock(&*store).await;
    assert_eq!(
        activity::cancel_shipment(&ctx, sr("o3", "o3-1"))
            .await
            .unwrap()
            .status,
        ShipmentStatus::Released
    );
    activity::restock_shipment(&ctx, sr("o3", "o3-1"))
        .await
        .unwrap();
    let refund = activity::refund_payment(&ctx, r("o3")).await.unwrap();
    assert_eq!((refund.amount_cents, refund.refund_id), (0, None));
    let release = activity::release_inventory(&ctx, r("o3")).await.unwrap();
    assert!(release.released_shipments.is_empty());
    assert_eq!(stock(&*store).await, before);
    // The tombstones stop a forward call that arrives late, and the voided charge key
    // stops the gateway too.
    assert_eq!(
        activity::reserve_inventory(&ctx, r("o3"))
            .await
            .unwrap_err()
            .name(),
        "Order.Cancelled"
    );
    assert_eq!(
        activity::charge_payment(&ctx, r("o3"))
            .await
            .unwrap_err()
            .name(),
        "Order.Cancelled"
    );
    assert_eq!(stock(&*store).await, before);
    record(&ctx, "o3", OrderStatus::Cancelled).await;
    let a = clean_audit(&*store).await;
    assert_eq!(a.charged_cents, 0);
}

async fn compensations_run_twice_change_nothing(store: Arc<dyn Store>) {
    // Partway: reserved and charged, picked but not shipped.
    let ctx = ctx_with(store.clone(), &world()).await;
    activity::place_order(&ctx, order("o4", &[("TSHIRT-BLK-M", 12)]))
        .await
        .unwrap();
    let res = activity::reserve_inventory(&ctx, r("o4")).await.unwrap();
    activity::charge_payment(&ctx, r("o4")).await.unwrap();
    for s in &res.shipments {
        activity::pick_shipment(&ctx, pr("o4", &s.shipment_id))
            .await
            .unwrap();
    }
    for _ in 0..2 {
        for s in &res.shipments {
            activity::cancel_shipment(&ctx, sr("o4", &s.shipment_id))
                .await
                .unwrap();
            activity::restock_shipment(&ctx, sr("o4", &s.shipment_id))
                .await
                .unwrap();
        }
        activity::refund_payment(&ctx, r("o4")).await.unwrap();
        activity::release_inventory(&ctx, r("o4")).await.unwrap();
    }
    record(&ctx, "o4", OrderStatus::Cancelled).await;
    let a = clean_audit(&*store).await;
    assert_eq!(a.reserved_units, 0);
    assert_eq!(a.on_hand_units, a.received_units);
    check_events(&*store).await;
    assert_eq!(a.refunded_cents, a.charged_cents);
    assert!(a.charged_cents > 0);
}

async fn sourcing_fewest_shipments_then_nearest(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let mut ireland = order("o5", &[("TSHIRT-BLK-M", 3)]);
    ireland.ship_to.country = "IE".into();
    activity::place_order(&ctx, ireland).await.unwrap();
    let res = activity::reserve_inventory(&ctx, r("o5")).await.unwrap();
    let at: Vec<&str> = res
        .shipments
        .iter()
        .map(|s| s.warehouse_id.as_str())
        .collect();
    assert_eq!(at, ["WH-IE"], "the Irish warehouse is nearest to Ireland");
    // 8 shirts to the US: neither US warehouse has 8 (5 and 5) but Ireland has 17 left,
    // so the fewest shipments (one) beats nearness.
    activity::place_order(&ctx, order("o6", &[("TSHIRT-BLK-M", 8)]))
        .await
        .unwrap();
    let res = activity::reserve_inventory(&ctx, r("o6")).await.unwrap();
    let at: Vec<&str> = res
        .shipments
        .iter()
        .map(|s| s.warehouse_id.as_str())
        .collect();
    assert_eq!(at, ["WH-IE"]);
    // Shirts and mugs: only Reno has mugs and it has 5 shirts, one shipment.
    activity::place_order(&ctx, order("o7", &[("TSHIRT-BLK-M", 4), ("MUG-WHITE", 2)]))
        .await
        .unwrap();
    let res = activity::reserve_inventory(&ctx, r("o7")).await.unwrap();
    assert_eq!(res.shipments.len(), 1);
    assert_eq!(res.shipments[0].warehouse_id, "WH-NV");
    // 15 shirts, the last 15 (NJ 5, NV 1, IE 9): the line is split over all three.
    activity::place_order(&ctx, order("o8", &[("TSHIRT-BLK-M", 15)]))
        .await
        .unwrap();
    let res = activity::reserve_inventory(&ctx, r("o8")).await.unwrap();
    let units: i64 = res
        .shipments
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| l.quantity)
        .sum();
    assert_eq!(units, 15);
    assert_eq!(res.shipments.len(), 3, "{res:?}");
    assert_eq!(res.shipments[0].shipment_id, "o8-1");
    clean_audit(&*store).await;
}

async fn out_of_stock_reserves_nothing(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    activity::place_order(&ctx, order("o9", &[("SOCKS-3PK", 2), ("MUG-WHITE", 4)]))
        .await
        .unwrap();
    let before = stock(&*store).await;
    let err = activity::reserve_inventory(&ctx, r("o9"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Inventory.OutOfStock");
    assert!(
        err.message.contains("MUG-WHITE: 4 requested, 3 available"),
        "{err}"
    );
    assert_eq!(stock(&*store).await, before);
    let step = Step::load(&*store, "o9", "reserve", None).await.unwrap();
    assert_eq!(step.status(), Some(StepStatus::Failed));
    activity::release_inventory(&ctx, r("o9")).await.unwrap();
    record(&ctx, "o9", OrderStatus::Cancelled).await;
    clean_audit(&*store).await;
}

async fn bad_orders_write_nothing(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let before = store.scan("").await.unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"order_id": "b1"}), "customer_id"),
        (
            {
                let mut v = serde_json::to_value(order("b2", &[("SOCKS-3PK", -1)])).unwrap();
                v["lines"][0]["quantity"] = json!(-1);
                v
            },
            "lines[0].quantity",
        ),
        (
            serde_json::to_value(order("b3", &[("NOPE", 1)])).unwrap(),
            "lines[0].sku",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b4", &[("SOCKS-3PK", 1)])).unwrap();
                v["ship_to"]["country"] = json!("ZZ");
                v
            },
            "ship_to.country",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b5", &[("SOCKS-3PK", 1)])).unwrap();
                v["payment"]["token"] = json!("4111111111111111");
                v
            },
            "payment.token",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b6", &[("SOCKS-3PK", 1)])).unwrap();
                v["lines"][0]["quantity"] = json!("two");
                v
            },
            "lines[0].quantity",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b7", &[("SOCKS-3PK", 1)])).unwrap();
                v["extra"] = json!(1);
                v
            },
            "extra",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b10", &[("SOCKS-3PK", 1)])).unwrap();
                v["payment"]["method"] = json!(format!("pm_{}", "0".repeat(32)));
                v
            },
            "payment: exactly one of token",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b11", &[("SOCKS-3PK", 1)])).unwrap();
                v["payment"] = json!({});
                v
            },
            "payment: exactly one of token",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b12", &[("SOCKS-3PK", 1)])).unwrap();
                v["payment"] = json!({"method": "pm_visa"});
                v
            },
            "payment.method: 'pm_' then 32 lower-case hex digits",
        ),
        (
            {
                let mut v = serde_json::to_value(order("b13", &[("SOCKS-3PK", 1)])).unwrap();
                v["payment"] = json!({"token": null});
                v
            },
            "payment.token",
        ),
        (serde_json::to_value(order("b8", &[])).unwrap(), "lines"),
        (
            serde_json::to_value(order("b9", &[("SOCKS-3PK", 1), ("SOCKS-3PK", 2)])).unwrap(),
            "lines[1].sku",
        ),
        (
            serde_json::to_value(order("bad id!", &[("SOCKS-3PK", 1)])).unwrap(),
            "order_id",
        ),
    ];
    for (input, field) in cases {
        let err = activity::invoke(&ctx, "PlaceOrder", &input)
            .await
            .unwrap_err();
        assert_eq!(err.name(), "Order.Invalid", "{input}");
        assert!(err.message.contains(field), "{field} not named in: {err}");
    }
    for (name, input) in [
        ("ReserveInventory", json!({})),
        ("PickShipment", json!({"order_id": "x"})),
        ("ChargePayment", json!({"order_id": 7})),
    ] {
        let err = activity::invoke(&ctx, name, &input).await.unwrap_err();
        assert_eq!(err.name(), "Order.Invalid", "{name} {input}");
    }
    assert_eq!(
        activity::invoke(&ctx, "ReserveInventory", &json!({"order_id": "ghost"}))
            .await
            .unwrap_err()
            .name(),
        "Order.NotFound"
    );
    assert_eq!(store.scan("").await.unwrap(), before, "nothing was written");
}

async fn payment_test_tokens(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let with_token = |id: &str, token: &str| {
        let mut o = order(id, &[("SOCKS-3PK", 1)]);
        o.payment = Payment::token(token);
        o
    };
    for (id, token) in [
        ("p1", "tok_declined"),
        ("p2", "tok_gateway_timeout"),
        ("p3", "tok_refund_rejected"),
    ] {
        activity::place_order(&ctx, with_token(id, token))
            .await
            .unwrap();
        activity::reserve_inventory(&ctx, r(id)).await.unwrap();
    }
    let declined = activity::charge_payment(&ctx, r("p1")).await.unwrap_err();
    assert_eq!(
        (declined.name(), declined.retryable()),
        ("Payment.Declined", false)
    );
    let timeout = activity::charge_payment(&ctx, r("p2")).await.unwrap_err();
    assert_eq!(
        (timeout.name(), timeout.retryable()),
        ("Payment.GatewayTimeout", true)
    );
    activity::charge_payment(&ctx, r("p3")).await.unwrap();
    let rejected = activity::refund_payment(&ctx, r("p3")).await.unwrap_err();
    assert_eq!(
        (rejected.name(), rejected.retryable()),
        ("Payment.RefundRejected", false)
    );
    let step = Step::load(&*store, "p3", "charge", None).await.unwrap();
    assert_eq!(step.status(), Some(StepStatus::CompensationFailed));
    assert_eq!(
        activities::gateway::totals(&*store).await.unwrap().charges,
        1
    );
    for id in ["p1", "p2"] {
        activity::refund_payment(&ctx, r(id)).await.unwrap();
        activity::release_inventory(&ctx, r(id)).await.unwrap();
        record(&ctx, id, OrderStatus::Cancelled).await;
    }
    let mut failed = status(OrderStatus::CompensationFailed);
    failed.order_id = "p3".into();
    failed.failure = Some(Failure {
        step: Some("RefundPayment".into()),
        error: rejected.name().into(),
        cause: Some(rejected.message.clone()),
    });
    activity::record_order_status(&ctx, failed).await.unwrap();
    let o = load_order(&*store, "p3").await.unwrap().value;
    assert_eq!(o.status, OrderStatus::CompensationFailed);
    assert_eq!(o.failure.unwrap().error, "Payment.RefundRejected");
    assert!(audit(&*store).await.unwrap().problems.is_empty());
}

/// The items of the whole store whose document holds `needle`, as `pk sk`.
async fn items_holding(store: &dyn Store, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for item in store.scan("").await.unwrap() {
        if serde_json::to_string(&item.doc).unwrap().contains(needle) {
            found.push(format!("{} {}", item.key.pk, item.key.sk));
        }
    }
    found
}

/// The order record as stored, for what an old oms wrote: its payment as the token.
async fn make_legacy(store: &dyn Store, id: &str, token: &str) {
    let key = Key::new(format!("ORDER#{id}"), "ORDER");
    let item = store.get(&key).await.unwrap().unwrap();
    let mut doc = Map::clone(&item.doc);
    doc.remove("payment_method");
    doc.insert("payment_token".into(), json!(token));
    let cond = Cond::Version(item.version);
    store
        .transact(vec![Write::Put { key, doc, cond }])
        .await
        .unwrap();
}

/// The order record and every step's result hold a payment-method reference, never
/// the token, which only the gateway's vault item holds; a reference behaves as its
/// token at the gateway, and old records that hold the token still work.
async fn payment_tokens_stay_with_the_gateway(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let paid_with = |id: &str, payment: Payment| {
        let mut o = order(id, &[("SOCKS-3PK", 1)]);
        o.payment = payment;
        o
    };
    let secret = "tok_contract_secret_v1";
    let placed = activity::invoke(
        &ctx,
        "PlaceOrder",
        &json!(paid_with("v1", Payment::token(secret))),
    )
    .await
    .unwrap();
    assert!(!placed.to_string().contains("tok_"), "{placed}");
    let record = load_order(&*store, "v1").await.unwrap().value;
    assert!(
        is_method(&record.payment_method),
        "{}",
        record.payment_method
    );
    // The same order again, by token or by its reference, is the same order.
    let method = Payment::method(&record.payment_method);
    for again in [Payment::token(secret), method.clone()] {
        let input = json!(paid_with("v1", again));
        let out = activity::invoke(&ctx, "PlaceOrder", &input).await;
        assert_eq!(out.unwrap(), placed);
    }
    let other = paid_with("v1", Payment::token("tok_visa"));
    let err = activity::place_order(&ctx, other).await.unwrap_err();
    assert_eq!(err.name(), "Order.Conflict");
    // A reference seen in one order's history cannot pay for another order.
    let err = activity::place_order(&ctx, paid_with("v9", method))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Order.Invalid");
    assert!(err.message.contains("payment.method"), "{err}");
    activity::reserve_inventory(&ctx, r("v1")).await.unwrap();
    let charged = activity::invoke(&ctx, "ChargePayment", &json!(r("v1"))).await;
    assert!(!charged.unwrap().to_string().contains("tok_"));

    // The test tokens still decide, through their references.
    activity::place_order(&ctx, paid_with("v2", Payment::token("tok_declined")))
        .await
        .unwrap();
    activity::reserve_inventory(&ctx, r("v2")).await.unwrap();
    let declined = activity::charge_payment(&ctx, r("v2")).await.unwrap_err();
    assert_eq!(declined.name(), "Payment.Declined");
    activity::place_order(&ctx, paid_with("v3", Payment::token("tok_refund_rejected")))
        .await
        .unwrap();
    activity::reserve_inventory(&ctx, r("v3")).await.unwrap();
    activity::charge_payment(&ctx, r("v3")).await.unwrap();
    let rejected = activity::refund_payment(&ctx, r("v3")).await.unwrap_err();
    assert_eq!(rejected.name(), "Payment.RefundRejected");
    let vaulted = items_holding(&*store, secret).await;
    assert_eq!(vaulted.len(), 1, "{vaulted:?}");
    for held in items_holding(&*store, "tok_").await {
        assert!(
            held.starts_with("GATEWAY METHOD#pm_"),
            "{held} holds a token"
        );
    }

    // Records an older oms wrote hold the token; they are placed again, charged and
    // declined as before, and charging leaves the reference in the token's place.
    for (id, token) in [("v4", "tok_visa"), ("v5", "tok_declined")] {
        let o = paid_with(id, Payment::token(token));
        activity::place_order(&ctx, o.clone()).await.unwrap();
        activity::reserve_inventory(&ctx, r(id)).await.unwrap();
        make_legacy(&*store, id, token).await;
        activity::place_order(&ctx, o).await.unwrap();
    }
    activity::charge_payment(&ctx, r("v4")).await.unwrap();
    let record = load_order(&*store, "v4").await.unwrap().value;
    assert!(
        is_method(&record.payment_method),
        "{}",
        record.payment_method
    );
    let declined = activity::charge_payment(&ctx, r("v5")).await.unwrap_err();
    assert_eq!(declined.name(), "Payment.Declined");
}

async fn cancel_request_stops_forward_steps(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    activity::place_order(&ctx, order("c1", &[("SOCKS-3PK", 1)]))
        .await
        .unwrap();
    let res = activity::reserve_inventory(&ctx, r("c1")).await.unwrap();
    let o = request_cancel(&*store, "c1").await.unwrap();
    assert!(o.cancel_requested);
    let err = activity::charge_payment(&ctx, r("c1")).await.unwrap_err();
    assert_eq!(err.name(), "Order.Cancelled");
    let err = activity::pick_shipment(&ctx, pr("c1", &res.shipments[0].shipment_id))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Order.Cancelled");
    // Work already done stays done (the saga compensates it); a repeat still answers.
    assert_eq!(
        activity::reserve_inventory(&ctx, r("c1")).await.unwrap(),
        res
    );
    activity::refund_payment(&ctx, r("c1")).await.unwrap();
    activity::release_inventory(&ctx, r("c1")).await.unwrap();
    record(&ctx, "c1", OrderStatus::Cancelled).await;
    let a = clean_audit(&*store).await;
    assert_eq!((a.reserved_units, a.charged_cents), (0, 0));
}

async fn fault_injection(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let plans = |v: Value| -> BTreeMap<String, FaultPlan> { serde_json::from_value(v).unwrap() };
    assert!(ctx
        .faults
        .set(&plans(
            json!({"teleport": {"fail_next": 1, "error": "Pick.ItemDamaged"}})
        ))
        .await
        .unwrap_err()
        .contains("teleport"));
    assert!(ctx
        .faults
        .set(&plans(
            json!({"pick": {"fail_next": 1, "error": "Nope.Nope"}})
        ))
        .await
        .unwrap_err()
        .contains("pick.error"));
    assert!(ctx
        .faults
        .set(&plans(json!({"pick": {"transient_rate": 2.0}})))
        .await
        .unwrap_err()
        .contains("transient_rate"));
    ctx.faults
        .set(&plans(json!({
            "pick": {"fail_next": 2, "error": "Pick.ItemDamaged"},
            "reserve": {"fail_next": 1, "error": "Activity.Unavailable", "after_effect": true},
            "charge": {"transient_rate": 1.0}
        })))
        .await
        .unwrap();
    assert_eq!(ctx.faults.get().await.unwrap().len(), 3);
    activity::place_order(&ctx, order("f1", &[("SOCKS-3PK", 2)]))
        .await
        .unwrap();
    // After the effect: the reservation happened, the answer was lost...
    let lost = activity::reserve_inventory(&ctx, r("f1"))
        .await
        .unwrap_err();
    assert_eq!(lost.name(), "Activity.Unavailable");
    let reserved = clean_audit(&*store).await.reserved_units;
    assert_eq!(reserved, 2);
    // ...and the retry returns it without reserving again.
    let res = activity::reserve_inventory(&ctx, r("f1")).await.unwrap();
    assert_eq!(clean_audit(&*store).await.reserved_units, 2);
    let e = activity::charge_payment(&ctx, r("f1")).await.unwrap_err();
    assert_eq!((e.name(), e.retryable()), ("Payment.GatewayTimeout", true));
    let sid = &res.shipments[0].shipment_id;
    for _ in 0..2 {
        let e = activity::pick_shipment(&ctx, pr("f1", sid))
            .await
            .unwrap_err();
        assert_eq!(e.name(), "Pick.ItemDamaged");
    }
    activity::pick_shipment(&ctx, pr("f1", sid)).await.unwrap();
    ctx.faults.clear().await.unwrap();
    assert!(ctx.faults.get().await.unwrap().is_empty());
    activity::charge_payment(&ctx, r("f1")).await.unwrap();
    // Latency is added before the call.
    ctx.faults
        .set(&plans(json!({"ship": {"latency_ms": 300}})))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    activity::ship_shipment(&ctx, sr("f1", sid)).await.unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    record(&ctx, "f1", OrderStatus::Completed).await;
    clean_audit(&*store).await;
}

async fn concurrent_sagas_keep_every_invariant(store: Arc<dyn Store>) {
    let mut w = world();
    w.stock = vec![
        ("CAP-NAVY".into(), "WH-NJ".into(), 6),
        ("CAP-NAVY".into(), "WH-IE".into(), 4),
    ];
    let ctx = ctx_with(store.clone(), &w).await;
    let report = saga_driver::run_many(&ctx, 64, "CAP-NAVY", true).await;
    let a = clean_audit(&*store).await;
    eprintln!("  {report:?}; audit {:?}", a.by_status);
    assert_eq!(a.orders, 64);
    let finished = a.by_status.get("COMPLETED").copied().unwrap_or(0)
        + a.by_status.get("CANCELLED").copied().unwrap_or(0);
    assert_eq!(finished, 64, "every order ended: {:?}", a.by_status);
    assert_eq!(a.reserved_units, 0, "no stock left reserved");
    assert_eq!(a.on_hand_units + a.shipped_units, 10);
    assert!(a.shipped_units <= 10);
    assert_eq!(
        a.shipped_units,
        a.by_status.get("COMPLETED").copied().unwrap_or(0) as i64,
        "one cap per completed order"
    );
    // How many complete depends on the race (an order that takes stock and then fails
    // releases it after others were already refused); some always must.
    assert!(a.shipped_units >= 1, "nothing shipped: {a:?}");
    check_events(&*store).await;
    assert_eq!(a.charged_cents - a.refunded_cents, a.completed_total_cents);
    assert!(
        report.duplicate_calls > 0 && report.injected_failures > 0,
        "{report:?}"
    );
}

/// A store that fails some batches before applying them and, worse, some after (the
/// write happened, the answer was lost), and fails some reads.
struct Flaky {
    inner: Arc<dyn Store>,
    failures: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn get(&self, key: &Key) -> Result<Option<activities::store::Item>, StoreError> {
        if fastrand::f64() < 0.03 {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(StoreError::Unavailable("injected read failure".into()));
        }
        self.inner.get(key).await
    }
    async fn query(&self, pk: &str, p: &str) -> Result<Vec<activities::store::Item>, StoreError> {
        self.inner.query(pk, p).await
    }
    async fn scan(&self, p: &str) -> Result<Vec<activities::store::Item>, StoreError> {
        self.inner.scan(p).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let roll = fastrand::f64();
        if roll < 0.08 {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(StoreError::Unavailable("injected: nothing applied".into()));
        }
        let result = self.inner.transact(writes).await;
        if roll < 0.16 && result.is_ok() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(StoreError::Unavailable(
                "injected: applied, answer lost".into(),
            ));
        }
        result
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

async fn store_failures_leave_nothing_half_written(store: Arc<dyn Store>) {
    let mut w = world();
    w.stock = vec![
        ("CAP-NAVY".into(), "WH-NJ".into(), 5),
        ("CAP-NAVY".into(), "WH-IE".into(), 5),
    ];
    seed::seed(&*store, &w).await.unwrap();
    let flaky = Arc::new(Flaky {
        inner: store.clone(),
        failures: Default::default(),
    });
    let ctx = Ctx::new(flaky.clone());
    let report = saga_driver::run_many(&ctx, 24, "CAP-NAVY", false).await;
    let failures = flaky.failures.load(std::sync::atomic::Ordering::Relaxed);
    assert!(failures > 10, "the store failed only {failures} times");
    let a = clean_audit(&*store).await;
    eprintln!(
        "  {report:?}; {failures} store failures; audit {:?}",
        a.by_status
    );
    assert_eq!(a.orders, 24);
    assert_eq!(a.reserved_units, 0);
    assert_eq!(a.on_hand_units + a.shipped_units, 10);
    check_events(&*store).await;
    assert_eq!(a.charged_cents - a.refunded_cents, a.completed_total_cents);
}

async fn picks_wait_for_the_warehouse(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    activity::place_order(&ctx, order("w1", &[("SOCKS-3PK", 1)]))
        .await
        .unwrap();
    activity::place_order(&ctx, order("w2", &[("TSHIRT-BLK-M", 1)]))
        .await
        .unwrap();
    for id in ["w1", "w2"] {
        activity::reserve_inventory(&ctx, r(id)).await.unwrap();
        activity::charge_payment(&ctx, r(id)).await.unwrap();
    }
    let request = |id: &str, token: &str| PickRequest {
        order_id: id.into(),
        shipment_id: format!("{id}-1"),
        task_token: Some(token.into()),
    };
    // An answer before the request picks nothing: no one would hear of it.
    let early = activity::confirm_pick(&ctx, &sr("w1", "w1-1"), None).await;
    assert_eq!(
        early.map(|_| ()).unwrap_err().kind,
        activities::errors::ErrorKind::OrderConflict
    );
    let asked = activity::pick_shipment(&ctx, request("w1", "token-a"))
        .await
        .unwrap();
    assert_eq!(
        asked.status,
        ShipmentStatus::Reserved,
        "asking is not picking"
    );
    // A retried request replaces the token: the newest one is answered.
    activity::pick_shipment(&ctx, request("w1", "token-b"))
        .await
        .unwrap();
    let (token, outcome) = activity::confirm_pick(&ctx, &sr("w1", "w1-1"), None)
        .await
        .unwrap();
    assert_eq!(token.as_deref(), Some("token-b"));
    let picked = outcome.unwrap();
    assert_eq!(picked.status, ShipmentStatus::Picked);
    // The warehouse answering twice gets the same outcome and changes nothing.
    let (_, again) = activity::confirm_pick(&ctx, &sr("w1", "w1-1"), None)
        .await
        .unwrap();
    assert_eq!(again.unwrap(), picked);
    assert_eq!(order_of_shipment("w1-1"), Some("w1"));
    assert_eq!(order_of_shipment("a-b-12"), Some("a-b"));
    assert_eq!(order_of_shipment("nodash"), None);
    // A damaged pick fails the step with its typed error.
    activity::pick_shipment(&ctx, request("w2", "token-c"))
        .await
        .unwrap();
    let (token, outcome) = activity::confirm_pick(&ctx, &sr("w2", "w2-1"), Some("torn box"))
        .await
        .unwrap();
    assert_eq!(token.as_deref(), Some("token-c"));
    assert_eq!(outcome.unwrap_err().name(), "Pick.ItemDamaged");
    let step = Step::load(&*store, "w2", "pick", Some("w2-1"))
        .await
        .unwrap();
    assert_eq!(step.status(), Some(StepStatus::Failed));
    clean_audit(&*store).await;
}

/// What the outbox must hold after any run, however many calls were repeated or lost
/// their answers (`activities::events`): each order's events numbered 1..=event_seq
/// with no gap and no repeat, every one valid against the one event schema, the last
/// status event of the order and of each shipment naming its status now, no status
/// emitted twice in a row (a replayed activity emits nothing), and each compensation
/// at most once. Answers the events of every order.
async fn check_events(store: &dyn Store) -> BTreeMap<String, Vec<Value>> {
    use activities::events::{events_of, outbox_prefix, SCHEMA};
    use activities::ledger::{scan_orders, OrderItem, OrderRecord, ShipmentRecord};
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut by_order: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in store.scan(outbox_prefix()).await.unwrap() {
        for e in events_of(&item) {
            let errors: Vec<String> = validator.iter_errors(&e).map(|x| x.to_string()).collect();
            assert!(errors.is_empty(), "{e}: {errors:?}");
            let order = e["subject"].as_str().unwrap().to_string();
            by_order.entry(order).or_default().push(e);
        }
    }
    for item in scan_orders(store).await.unwrap() {
        let order_id = activities::ledger::order_id_of(&item.key.pk)
            .unwrap()
            .to_string();
        let events = by_order.get(&order_id).cloned().unwrap_or_default();
        match OrderItem::of(&item.key) {
            Some(OrderItem::Order) => {
                let record: OrderRecord = activities::ledger::from_item(&item).unwrap();
                let seqs: Vec<u64> = events
                    .iter()
                    .map(|e| e["data"]["sequence"].as_u64().unwrap())
                    .collect();
                let want: Vec<u64> = (1..=record.event_seq).collect();
                assert_eq!(seqs, want, "{order_id}: sequences");
                let statuses = statuses(&events, "oms.order.", None);
                assert_eq!(
                    statuses.last(),
                    Some(&json!(record.status)),
                    "{order_id}: {statuses:?}"
                );
                let mut comps: Vec<(Value, Value)> = events
                    .iter()
                    .filter(|e| e["type"].as_str().unwrap().starts_with("oms.compensation."))
                    .map(|e| (e["type"].clone(), e["data"]["shipment_id"].clone()))
                    .collect();
                let n = comps.len();
                comps.sort_by_key(|c| c.0.to_string() + &c.1.to_string());
                comps.dedup();
                assert_eq!(comps.len(), n, "{order_id}: a compensation emitted twice");
            }
            Some(OrderItem::Shipment) => {
                let record: ShipmentRecord = activities::ledger::from_item(&item).unwrap();
                let statuses = statuses(&events, "oms.shipment.", Some(&record.shipment_id));
                assert_eq!(
                    statuses.last(),
                    Some(&json!(record.status)),
                    "{order_id}: {statuses:?}"
                );
            }
            _ => {}
        }
    }
    by_order
}

/// The statuses `events` of one kind report, asserting none repeats the one before.
fn statuses(events: &[Value], prefix: &str, shipment: Option<&str>) -> Vec<Value> {
    let out: Vec<Value> = events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with(prefix))
        // An amendment is not a change of status (it repeats the order's).
        .filter(|e| e["type"] != "oms.order.amended")
        .filter(|e| shipment.is_none_or(|s| e["data"]["shipment_id"] == s))
        .map(|e| e["data"]["status"].clone())
        .collect();
    for pair in out.windows(2) {
        assert_ne!(pair[0], pair[1], "a status emitted twice in a row: {out:?}");
    }
    out
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Every change emits its event, in order, and a run repeated emits nothing more.
async fn events_follow_every_change(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let id = "ev1";
    activity::place_order(&ctx, order(id, &[("SOCKS-3PK", 1)]))
        .await
        .unwrap();
    let res = activity::reserve_inventory(&ctx, r(id)).await.unwrap();
    let sid = res.shipments[0].shipment_id.clone();
    activity::charge_payment(&ctx, r(id)).await.unwrap();
    record(&ctx, id, OrderStatus::Fulfilling).await;
    activity::pick_shipment(&ctx, pr(id, &sid)).await.unwrap();
    activity::ship_shipment(&ctx, sr(id, &sid)).await.unwrap();
    record(&ctx, id, OrderStatus::Completed).await;
    let first = check_events(&*store).await;
    assert_eq!(
        types(&first[id]),
        [
            "oms.order.pending",
            "oms.shipment.reserved",
            "oms.order.reserved",
            "oms.order.charged",
            "oms.order.fulfilling",
            "oms.shipment.picked",
            "oms.shipment.shipped",
            "oms.order.completed"
        ]
    );
    assert_eq!(
        first[id][6]["data"]["tracking_number"]
            .as_str()
            .map(|t| &t[..2]),
        Some("1Z")
    );
    // Every step again: all replays, so no event.
    activity::place_order(&ctx, order(id, &[("SOCKS-3PK", 1)]))
        .await
        .unwrap();
    activity::reserve_inventory(&ctx, r(id)).await.unwrap();
    activity::charge_payment(&ctx, r(id)).await.unwrap();
    activity::pick_shipment(&ctx, pr(id, &sid)).await.unwrap();
    activity::ship_shipment(&ctx, sr(id, &sid)).await.unwrap();
    record(&ctx, id, OrderStatus::Completed).await;
    assert_eq!(check_events(&*store).await, first, "a replay emitted again");
    // A compensation emits its event and the shipment's, once however often it runs.
    let id = "ev2";
    activity::place_order(&ctx, order(id, &[("SOCKS-3PK", 1)]))
        .await
        .unwrap();
    activity::reserve_inventory(&ctx, r(id)).await.unwrap();
    for _ in 0..2 {
        activity::release_inventory(&ctx, r(id)).await.unwrap();
    }
    let events = check_events(&*store).await;
    assert_eq!(
        types(&events[id]),
        [
            "oms.order.pending",
            "oms.shipment.reserved",
            "oms.order.reserved",
            "oms.shipment.released",
            "oms.compensation.release_inventory"
        ]
    );
    // A batch whose condition fails (the order changed under it) writes no event.
    let o = load_order(&*store, id).await.unwrap();
    let mut rec = o.value.clone();
    let outbox = activities::events::outbox_write(
        &mut rec,
        vec![activities::events::order_status(&o.value)],
    )
    .unwrap();
    let stale = Write::Check {
        key: activities::ledger::order_key(id),
        cond: Cond::Version(o.version + 1),
    };
    let err = store.transact(vec![outbox, stale]).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { .. }), "{err}");
    assert_eq!(check_events(&*store).await, events);
}

#[test]
fn the_schema_lists_every_event_type() {
    let schema: Value = serde_json::from_str(activities::events::SCHEMA).unwrap();
    let listed: Vec<&str> = schema["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut emitted = activities::events::status_types();
    emitted.push("oms.order.amended".into());
    let mut want: Vec<&str> = emitted.iter().map(String::as_str).collect();
    want.sort_unstable();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort_unstable();
    assert_eq!(
        listed_sorted, want,
        "schemas/order-event.schema.json's type enum"
    );
}

// ---- amendments (activities::amend) ------------------------------------------------

/// An order waiting for picking (FULFILLING), and its version.
async fn fulfilling(ctx: &Ctx, id: &str, lines: &[(&str, i64)]) -> u64 {
    activity::place_order(ctx, order(id, lines)).await.unwrap();
    activity::reserve_inventory(ctx, r(id)).await.unwrap();
    activity::charge_payment(ctx, r(id)).await.unwrap();
    record(ctx, id, OrderStatus::Fulfilling).await;
    load_order(&*ctx.store, id).await.unwrap().version
}

fn priced(lines: &[(&str, i64, i64)]) -> Vec<PricedLine> {
    lines
        .iter()
        .map(|(sku, q, price)| PricedLine {
            sku: sku.to_string(),
            quantity: *q,
            unit_price_cents: *price,
            line_total_cents: q * price,
        })
        .collect()
}

fn amend_req(
    version: u64,
    lines: Option<Vec<PricedLine>>,
    postal: Option<&str>,
) -> amend::AmendRequest {
    amend::AmendRequest {
        version,
        by: "assoc-1".into(),
        ship_to: postal.map(|p| Address {
            postal_code: p.into(),
            ..order("x", &[]).ship_to
        }),
        lines,
    }
}

fn ar(id: &str, aid: &str) -> amend::AmendRef {
    amend::AmendRef {
        order_id: id.into(),
        amendment_id: aid.into(),
    }
}

async fn amendments_apply_and_balance_the_books(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let v = fulfilling(&ctx, "m1", &[("TSHIRT-BLK-M", 1), ("SOCKS-3PK", 2)]).await;
    // Quantity up, a line removed: 3 T-shirts, no socks.
    let lines = priced(&[("TSHIRT-BLK-M", 3, 1999)]);
    let a = amend::begin(&*store, "m1", &amend_req(v, Some(lines), None))
        .await
        .unwrap();
    assert_eq!(a.amendment_id, "amd-1");
    let a_changes = a.changes.clone();
    assert_eq!(
        a.changes["lines"],
        json!([{"sku": "SOCKS-3PK", "from": 2, "to": 0}, {"sku": "TSHIRT-BLK-M", "from": 1, "to": 3}])
    );
    // Each step twice: the second returns the first's result and changes nothing.
    for _ in 0..2 {
        amend::reserve_amendment(&ctx, ar("m1", "amd-1"))
            .await
            .unwrap();
    }
    assert_eq!(
        stock(&*store).await[&("TSHIRT-BLK-M".into(), "WH-NJ".into())],
        (5, 3, 0)
    );
    for _ in 0..2 {
        let c = amend::charge_amendment(&ctx, ar("m1", "amd-1"))
            .await
            .unwrap();
        assert_eq!(c.amount_cents, 3 * 1999);
    }
    for _ in 0..2 {
        let applied = amend::apply_amendment(&ctx, ar("m1", "amd-1"))
            .await
            .unwrap();
        assert_eq!(
            applied.units.len(),
            1,
            "the socks are released: {applied:?}"
        );
    }
    let st = stock(&*store).await;
    assert_eq!(st[&("SOCKS-3PK".into(), "WH-NJ".into())], (10, 0, 0));
    let o = load_order(&*store, "m1").await.unwrap().value;
    assert_eq!((o.total_cents, o.amending.as_deref()), (3 * 1999, None));
    assert_eq!(
        o.amendments[0].status,
        activities::ledger::AmendmentStatus::Applied
    );
    assert_eq!(
        (o.charged_cents, o.refunded_cents),
        (1999 + 2 * 899 + 3 * 1999, 1999 + 2 * 899)
    );
    clean_audit(&*store).await;
    // A version from before the amendment is stale.
    let stale = amend::begin(&*store, "m1", &amend_req(v, None, Some("02139"))).await;
    assert!(
        matches!(stale, Err(amend::Refusal::Stale { .. })),
        "{stale:?}"
    );
    // The order ships as amended and the audit holds for a completed order too.
    activity::pick_shipment(&ctx, pr("m1", "m1-1"))
        .await
        .unwrap();
    activity::ship_shipment(&ctx, sr("m1", "m1-1"))
        .await
        .unwrap();
    record(&ctx, "m1", OrderStatus::Completed).await;
    let a = clean_audit(&*store).await;
    assert_eq!(a.completed_total_cents, 3 * 1999);
    // The amendment, applied twice, is one event, between the order's status events.
    let events = check_events(&*store).await;
    let amended: Vec<&Value> = events["m1"]
        .iter()
        .filter(|e| e["type"] == "oms.order.amended")
        .collect();
    assert_eq!(amended.len(), 1, "{:?}", types(&events["m1"]));
    assert_eq!(amended[0]["data"]["amendment_id"], "amd-1");
    assert_eq!(amended[0]["data"]["changes"], a_changes);
    assert_eq!(
        stock(&*store).await[&("TSHIRT-BLK-M".into(), "WH-NJ".into())],
        (2, 0, 3)
    );
    // A finished order is refused, saying why, whatever version is sent.
    let now = load_order(&*store, "m1").await.unwrap().version;
    let done = amend::begin(&*store, "m1", &amend_req(now, None, Some("02139"))).await;
    assert!(
        matches!(done, Err(amend::Refusal::NotAmendable(ref m)) if m.contains("COMPLETED")),
        "{done:?}"
    );
}

async fn a_failed_amendment_is_compensated_and_releases_the_order(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    let v = fulfilling(&ctx, "m2", &[("TSHIRT-BLK-M", 1)]).await;
    let before = stock(&*store).await;
    let lines = priced(&[("TSHIRT-BLK-M", 2, 1999)]);
    amend::begin(
        &*store,
        "m2",
        &amend_req(v, Some(lines), Some(activity::UNDELIVERABLE_POSTAL_CODE)),
    )
    .await
    .unwrap();
    // While the amendment holds the order, the saga's steps that would change it wait.
    let waits = activity::release_inventory(&ctx, r("m2"))
        .await
        .unwrap_err();
    assert!(
        waits.retryable() && waits.message.contains("being amended"),
        "{waits:?}"
    );
    amend::reserve_amendment(&ctx, ar("m2", "amd-1"))
        .await
        .unwrap();
    amend::charge_amendment(&ctx, ar("m2", "amd-1"))
        .await
        .unwrap();
    let err = amend::apply_amendment(&ctx, ar("m2", "amd-1"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Ship.AddressRejected");
    // The compensations, in reverse, each twice.
    for _ in 0..2 {
        let refund = amend::refund_amendment(&ctx, ar("m2", "amd-1"))
            .await
            .unwrap();
        assert_eq!(refund.amount_cents, 2 * 1999);
        amend::release_amendment(&ctx, ar("m2", "amd-1"))
            .await
            .unwrap();
    }
    let failed = amend::AmendFailed {
        order_id: "m2".into(),
        amendment_id: "amd-1".into(),
        error: err.name().into(),
        cause: json!({"errorType": err.name(), "errorMessage": err.message}).to_string(),
    };
    amend::abandon_amendment(&ctx, failed).await.unwrap();
    assert_eq!(stock(&*store).await, before);
    let o = load_order(&*store, "m2").await.unwrap().value;
    assert_eq!((o.amending.as_deref(), o.total_cents), (None, 1999));
    let a = &o.amendments[0];
    assert_eq!(a.status, activities::ledger::AmendmentStatus::Failed);
    assert!(
        a.reason
            .as_deref()
            .unwrap()
            .starts_with("Ship.AddressRejected: ship_to.postal_code"),
        "{a:?}"
    );
    clean_audit(&*store).await;
    // A step run after the amendment ended does nothing.
    let late = amend::reserve_amendment(&ctx, ar("m2", "amd-1"))
        .await
        .unwrap_err();
    assert_eq!(late.name(), "Order.Cancelled");
}

async fn an_amendment_and_a_pick_never_both_win(store: Arc<dyn Store>) {
    let ctx = ctx_with(store.clone(), &world()).await;
    for n in 0..8 {
        let id = format!("race{n}");
        let v = fulfilling(&ctx, &id, &[("SOCKS-3PK", 1)]).await;
        let sid = format!("{id}-1");
        activity::pick_shipment(
            &ctx,
            PickRequest {
                task_token: Some("t".into()),
                ..pr(&id, &sid)
            },
        )
        .await
        .unwrap();
        let lines = priced(&[("SOCKS-3PK", 2, 899)]);
        let req = amend_req(v, Some(lines), None);
        let target = sr(&id, &sid);
        let (amended, picked) = tokio::join!(
            amend::begin(&*store, &id, &req),
            activity::confirm_pick(&ctx, &target, None)
        );
        let picked = picked.map(|(_, outcome)| outcome.is_ok()).unwrap_or(false);
        let shipment = activities::ledger::load_shipment(&*store, &id, &sid)
            .await
            .unwrap();
        match amended {
            // The lock landed first: the pick waits (retryable) and nothing moved.
            Ok(_) => {
                assert!(!picked, "{id}: amended and picked");
                assert_eq!(shipment.value.status, ShipmentStatus::Reserved, "{id}");
            }
            // The pick landed first: the amendment is refused, saying why.
            Err(amend::Refusal::NotAmendable(why)) => {
                assert!(picked && why.contains("is PICKED"), "{id}: {why}");
            }
            Err(other) => panic!("{id}: {other:?}"),
        }
    }
}
