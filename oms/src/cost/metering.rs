//! The metering store: the activities' store wrapped so that every call is billed as
//! the DynamoDB store (`activities::store::dynamo`) would make it, by caller and by
//! partition, with DynamoDB's item sizes and request units.

use activities::store::{Cond, Item, Key, Store, StoreError, Write};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// DynamoDB stores 100 bytes of index overhead with every item.
pub const DYNAMO_ITEM_OVERHEAD: i64 = 100;

/// The size DynamoDB bills for an attribute value (its name counted by the caller).
fn value_size(v: &Value) -> u64 {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::String(s) => s.len() as u64,
        Value::Number(n) => number_size(&n.to_string()),
        Value::Array(a) => 3 + a.iter().map(|e| 1 + value_size(e)).sum::<u64>(),
        Value::Object(o) => {
            3 + o
                .iter()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
    }
}

/// A number: one byte per two significant digits, plus one.
fn number_size(text: &str) -> u64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) as u64 + 1
}

/// The size of an item as `DynamoStore` writes it: `pk`, `sk`, `version` and the
/// document's attributes.
pub fn item_size(key: &Key, version: u64, doc: &Map<String, Value>) -> u64 {
    let attr = |name: &str, v: &Value| name.len() as u64 + value_size(v);
    attr("pk", &json!(key.pk))
        + attr("sk", &json!(key.sk))
        + attr("version", &json!(version))
        + doc.iter().map(|(k, v)| attr(k, v)).sum::<u64>()
}

pub(super) fn stored_size(item: &Item) -> u64 {
    item_size(&item.key, item.version, &item.doc)
}

/// Strongly consistent read units for `bytes` read in one request (at least one).
fn read_units(bytes: u64) -> u64 {
    bytes.div_ceil(4096).max(1)
}

/// Transactional write units for one item of `bytes`.
fn transact_write_units(bytes: u64) -> u64 {
    2 * bytes.div_ceil(1024).max(1)
}

/// DynamoDB requests and the units they consume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub get_item: u64,
    pub query: u64,
    pub scan: u64,
    pub transact_write_items: u64,
    pub items_written: u64,
    pub transactions_cancelled: u64,
    pub rru: u64,
    pub wru: u64,
}

impl Units {
    pub(super) fn add(&mut self, o: &Units) {
        self.get_item += o.get_item;
        self.query += o.query;
        self.scan += o.scan;
        self.transact_write_items += o.transact_write_items;
        self.items_written += o.items_written;
        self.transactions_cancelled += o.transactions_cancelled;
        self.rru += o.rru;
        self.wru += o.wru;
    }
}

/// What the store was asked, by caller (the activity running) and by partition.
#[derive(Debug, Default)]
pub(super) struct Metering {
    /// Who is calling the store now: the activity running, or the warehouse's answer.
    pub(super) caller: String,
    pub(super) by_caller: BTreeMap<String, Units>,
    pub(super) by_partition: BTreeMap<&'static str, Units>,
}

fn partition_class(pk: &str) -> &'static str {
    match pk {
        "CATALOG" => "catalog",
        "GATEWAY" => "payment gateway ledger",
        "FAULTS" => "fault plans",
        _ if activities::ledger::order_id_of(pk).is_some() => "order",
        _ if pk.starts_with("STOCK#") => "stock",
        _ if pk.starts_with("INDEX#") => "search index",
        _ => "other",
    }
}

/// A store that meters every call as DynamoDB would bill it, and passes it on.
pub struct MeteredStore {
    pub(super) inner: Arc<dyn Store>,
    pub(super) metering: Arc<Mutex<Metering>>,
}

impl MeteredStore {
    fn charge(&self, partition: &'static str, f: impl Fn(&mut Units)) {
        let mut m = self.metering.lock().expect("metering lock");
        let caller = m.caller.clone();
        f(m.by_caller.entry(caller).or_default());
        f(m.by_partition.entry(partition).or_default());
    }

    /// The size of the item at `key` now, read without being billed.
    async fn size_now(&self, key: &Key) -> Result<u64, StoreError> {
        Ok(self.inner.get(key).await?.map_or(0, |i| stored_size(&i)))
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let item = self.inner.get(key).await?;
        let rru = read_units(item.as_ref().map_or(0, stored_size));
        self.charge(partition_class(&key.pk), |u| {
            u.get_item += 1;
            u.rru += rru;
        });
        Ok(item)
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let items = self.inner.query(pk, sk_prefix).await?;
        // One request while the result is under 1 MB; a Query sums the sizes it returns.
        let rru = read_units(items.iter().map(stored_size).sum());
        self.charge(partition_class(pk), |u| {
            u.query += 1;
            u.rru += rru;
        });
        Ok(items)
    }

    async fn query_back(
        &self,
        pk: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        // A Query with Limit: billed for the items it returns.
        let items = self.inner.query_back(pk, before, limit).await?;
        let rru = read_units(items.iter().map(stored_size).sum());
        self.charge(partition_class(pk), |u| {
            u.query += 1;
            u.rru += rru;
        });
        Ok(items)
    }

    async fn scan(&self, pk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        // A Scan reads every item of the table: the filter applies after the read.
        let all: u64 = self.inner.scan("").await?.iter().map(stored_size).sum();
        let rru = read_units(all);
        self.charge("scan (whole table)", |u| {
            u.scan += 1;
            u.rru += rru;
        });
        self.inner.scan(pk_prefix).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut before = Vec::with_capacity(writes.len());
        for w in &writes {
            before.push(self.size_now(w.key()).await?);
        }
        let result = self.inner.transact(writes.clone()).await;
        let applied = match &result {
            Ok(()) => true,
            // TransactionCanceledException: billed as if applied (a conservative guess).
            Err(StoreError::ConditionFailed { .. }) => false,
            // Refused before DynamoDB would have done anything.
            Err(_) => return result,
        };
        let mut per_item = Vec::with_capacity(writes.len());
        for (w, b) in writes.iter().zip(&before) {
            let after = match w {
                Write::Put { key, doc, cond } if !applied => {
                    let version = match cond {
                        Cond::Version(v) => v + 1,
                        _ => 1,
                    };
                    item_size(key, version, doc)
                }
                Write::Put { key, .. } | Write::Add { key, .. } if applied => {
                    self.size_now(key).await?
                }
                _ => 0,
            };
            per_item.push((partition_class(&w.key().pk), (*b).max(after)));
        }
        {
            let mut m = self.metering.lock().expect("metering lock");
            let caller = m.caller.clone();
            let total: u64 = per_item.iter().map(|(_, s)| transact_write_units(*s)).sum();
            let u = m.by_caller.entry(caller).or_default();
            u.transact_write_items += 1;
            u.items_written += writes.len() as u64;
            u.wru += total;
            if !applied {
                u.transactions_cancelled += 1;
            }
            for (class, size) in &per_item {
                let p = m.by_partition.entry(class).or_default();
                p.items_written += 1;
                p.wru += transact_write_units(*size);
            }
        }
        result
    }

    fn backend(&self) -> &'static str {
        "dynamodb (metered)"
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use activities::store::sqlite::SqliteStore;

    #[test]
    fn cost_item_sizes_follow_dynamodb_rules() {
        // Strings: name + UTF-8 bytes; numbers: name + 1 byte per 2 significant digits + 1.
        assert_eq!(value_size(&json!("Ada")), 3);
        assert_eq!(value_size(&json!("é")), 2);
        assert_eq!(number_size("1999"), 3);
        assert_eq!(number_size("100"), 2);
        assert_eq!(number_size("-74.17"), 3);
        assert_eq!(value_size(&json!(true)), 1);
        // Maps and lists: 3 bytes, and 1 byte per element.
        assert_eq!(value_size(&json!({})), 3);
        assert_eq!(value_size(&json!({"a": "xy"})), 3 + 1 + 1 + 2);
        assert_eq!(value_size(&json!(["x", 1])), 3 + (1 + 1) + (1 + 2));
        let key = activities::ledger::order_key("o");
        let doc: Map<String, Value> = serde_json::from_value(json!({"status": "PENDING"})).unwrap();
        // pk(2)+7, sk(2)+5, version(7)+2, status(6)+7
        assert_eq!(item_size(&key, 1, &doc), 9 + 7 + 9 + 13);
    }

    #[test]
    fn cost_request_units_follow_dynamodb_billing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let metering = Arc::new(Mutex::new(Metering::default()));
        let store = MeteredStore {
            inner: Arc::new(SqliteStore::in_memory().unwrap()),
            metering: metering.clone(),
        };
        let key = activities::ledger::order_key("o");
        let big: Map<String, Value> =
            serde_json::from_value(json!({"blob": "x".repeat(1500)})).unwrap();
        rt.block_on(async {
            // Not found: still 1 RRU (strongly consistent).
            assert!(store.get(&key).await.unwrap().is_none());
            // A 1.5 KB item in a transaction: 2 started KB x 2.
            store
                .transact(vec![Write::Put {
                    key: key.clone(),
                    doc: big.clone(),
                    cond: Cond::NotExists,
                }])
                .await
                .unwrap();
            // A ConditionCheck on it: 2 x 2; a Put of a small item over it: the larger
            // of before and after, 2 x 2.
            store
                .transact(vec![Write::Check {
                    key: key.clone(),
                    cond: Cond::Version(1),
                }])
                .await
                .unwrap();
            store
                .transact(vec![Write::Put {
                    key: key.clone(),
                    doc: Map::new(),
                    cond: Cond::Version(1),
                }])
                .await
                .unwrap();
            // Reading it now: a small item, 1 RRU.
            assert!(store.get(&key).await.unwrap().is_some());
        });
        let m = metering.lock().unwrap();
        let u = m.by_caller[""];
        assert_eq!(u.get_item, 2);
        assert_eq!(u.rru, 2);
        assert_eq!(u.transact_write_items, 3);
        assert_eq!(u.wru, 4 + 4 + 4);
    }
}
