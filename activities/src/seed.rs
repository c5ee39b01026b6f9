//! The catalog, warehouses and stock: the demo set `oms up` seeds into a new data
//! directory, and the operations that put stock in.

use crate::ledger::*;
use crate::store::{Cond, Store, StoreError, Write};

#[derive(Debug, Clone)]
pub struct CatalogSeed {
    pub skus: Vec<SkuRecord>,
    pub warehouses: Vec<WarehouseRecord>,
    /// (sku, warehouse, units received)
    pub stock: Vec<(String, String, i64)>,
}

/// How many times the units of [`demo`]'s stock rows a served store receives
/// ([`demo_stocked`]): deep enough that `oms load` of thousands of one-unit orders,
/// spread over the five SKUs, does not run out (the scarcest SKU, the hoodie, holds
/// 14 x 250 = 3,500 units: about 17,500 orders of the load's round-robin).
pub const DEMO_DEPTH: i64 = 250;

/// The demo catalog, its warehouses and the shape of its stock (which warehouse holds
/// what, in small numbers that the cost model's orders and the tests reason about).
pub fn demo() -> CatalogSeed {
    let sku = |sku: &str, name: &str, price_cents| SkuRecord {
        sku: sku.into(),
        name: name.into(),
        price_cents,
    };
    let wh = |id: &str, name: &str, country: &str, lat, lon| WarehouseRecord {
        warehouse_id: id.into(),
        name: name.into(),
        country: country.into(),
        lat,
        lon,
    };
    let stock = [
        ("TSHIRT-BLK-M", "WH-NJ", 40),
        ("TSHIRT-BLK-M", "WH-NV", 25),
        ("TSHIRT-BLK-M", "WH-IE", 30),
        ("MUG-WHITE", "WH-NJ", 12),
        ("MUG-WHITE", "WH-DE", 20),
        ("HOODIE-GRY-L", "WH-NV", 8),
        ("HOODIE-GRY-L", "WH-DE", 6),
        ("SOCKS-3PK", "WH-NJ", 100),
        ("SOCKS-3PK", "WH-NV", 100),
        ("SOCKS-3PK", "WH-IE", 60),
        ("SOCKS-3PK", "WH-DE", 60),
        ("CAP-NAVY", "WH-IE", 15),
    ];
    CatalogSeed {
        skus: vec![
            sku("TSHIRT-BLK-M", "T-shirt, black, M", 1999),
            sku("MUG-WHITE", "Mug, white", 1250),
            sku("HOODIE-GRY-L", "Hoodie, grey, L", 4999),
            sku("SOCKS-3PK", "Socks, 3 pairs", 899),
            sku("CAP-NAVY", "Cap, navy", 1599),
        ],
        warehouses: vec![
            wh("WH-NJ", "Newark, New Jersey", "US", 40.73, -74.17),
            wh("WH-NV", "Reno, Nevada", "US", 39.53, -119.81),
            wh("WH-IE", "Dublin", "IE", 53.35, -6.26),
            wh("WH-DE", "Frankfurt", "DE", 50.11, 8.68),
        ],
        stock: stock
            .iter()
            .map(|(s, w, n)| (s.to_string(), w.to_string(), *n))
            .collect(),
    }
}

/// [`demo`] with each stock row [`DEMO_DEPTH`] times deeper: what `oms up`, the worker
/// and the Lambda functions seed into a new store.
pub fn demo_stocked() -> CatalogSeed {
    let mut seed = demo();
    for row in &mut seed.stock {
        row.2 *= DEMO_DEPTH;
    }
    seed
}

/// Writes the catalog and warehouses, and receives the stock. Stock already present is
/// topped up, never reset (resetting would break `on_hand + shipped == received`).
pub async fn seed(store: &dyn Store, seed: &CatalogSeed) -> Result<(), StoreError> {
    for s in &seed.skus {
        store
            .transact(vec![Write::Put {
                key: sku_key(&s.sku),
                doc: to_doc(s),
                cond: Cond::Always,
            }])
            .await?;
    }
    for w in &seed.warehouses {
        store
            .transact(vec![Write::Put {
                key: warehouse_key(&w.warehouse_id),
                doc: to_doc(w),
                cond: Cond::Always,
            }])
            .await?;
    }
    for (sku, wh, units) in &seed.stock {
        receive(store, sku, wh, *units).await?;
    }
    Ok(())
}

/// Seeds `seed` unless a seed named `name` was applied before: the first caller claims
/// the name with a conditional write, so processes starting together (several Lambda
/// functions' cold starts) do not receive the stock twice. Returns whether it seeded.
pub async fn seed_once(
    store: &dyn Store,
    name: &str,
    seed: &CatalogSeed,
) -> Result<bool, StoreError> {
    let claim = Write::Put {
        key: crate::store::Key::new(CATALOG, format!("SEED#{name}")),
        doc: to_doc(&serde_json::json!({"seeded_at": now()})),
        cond: Cond::NotExists,
    };
    match store.transact(vec![claim]).await {
        Ok(()) => {
            self::seed(store, seed).await?;
            Ok(true)
        }
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the store holds a catalog (so `oms up` seeds only a new store).
pub async fn is_seeded(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(!store.query(CATALOG, "SKU#").await?.is_empty())
}

/// Puts `units` of `sku` into `warehouse_id`'s stock.
pub async fn receive(
    store: &dyn Store,
    sku: &str,
    warehouse_id: &str,
    units: i64,
) -> Result<(), StoreError> {
    if units < 0 {
        return Err(StoreError::Invalid(format!(
            "units: cannot receive {units} units"
        )));
    }
    let empty = StockRecord {
        sku: sku.into(),
        warehouse_id: warehouse_id.into(),
        on_hand: 0,
        reserved: 0,
        available: 0,
        shipped: 0,
        received: 0,
    };
    let create = Write::Put {
        key: stock_key(sku, warehouse_id),
        doc: to_doc(&empty),
        cond: Cond::NotExists,
    };
    match store.transact(vec![create]).await {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
        Err(e) => return Err(e),
    }
    store
        .transact(vec![stock_move(
            sku,
            warehouse_id,
            &[
                ("on_hand", units),
                ("available", units),
                ("received", units),
            ],
        )])
        .await
}

/// Every SKU's stock at every warehouse, by SKU then warehouse.
pub async fn inventory(store: &dyn Store) -> Result<Vec<StockRecord>, StoreError> {
    let mut out = Vec::new();
    for item in store.scan("STOCK#").await? {
        if let Ok(s) = serde::Deserialize::deserialize(&*item.doc) {
            out.push(s);
        }
    }
    Ok(out)
}
