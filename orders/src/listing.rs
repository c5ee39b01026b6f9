//! `GET /orders`: orders by status, customer or SKU from the store's search index,
//! newest first, a page at a time, resumed by a cursor bound to the listing's filters.

use crate::problem::Problem;
use crate::service::Orders;
use activities::errors::{ActivityError, ErrorKind};
use activities::ledger::{self, from_item, IndexBy, OrderRecord};
use activities::model::OrderStatus;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How far back the unfiltered listing goes, in months; a search by customer or SKU
/// has no such bound.
const MONTHS_LISTED: usize = 24;
/// Index entries read per Query.
const INDEX_PAGE: usize = 100;
/// Index entries one listing request may look at before it answers with what it found
/// and a cursor (a rare status filter would otherwise read everything).
const MAX_EXAMINED: usize = 2_000;

/// `YYYY-MM` of `now`'s month and the `n - 1` months before it, newest first.
fn recent_months(now: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<String> {
    use chrono::Datelike;
    let (mut year, mut month) = (now.year(), now.month());
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(format!("{year:04}-{month:02}"));
        (year, month) = if month == 1 {
            (year - 1, 12)
        } else {
            (year, month - 1)
        };
    }
    out
}

/// What a listing's cursor is bound to: its filters (a cursor resumes only the
/// listing it came from; the page size may change between pages).
fn cursor_scope(filter: &BTreeMap<String, String>) -> String {
    let field = |k: &str| filter.get(k).cloned().unwrap_or_default();
    json!([field("customer_id"), field("sku"), field("status")]).to_string()
}

/// The check a cursor carries: a digest of its scope and sort key. It is not a secret
/// (the derivation is in this file), so it stops a mangled cursor or one from another
/// listing, not a determined forger, who could at most start a listing, with filters
/// they may use anyway, at an index key of their choosing.
fn cursor_check(scope: &str, sk: &str) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("oms-cursor\0{scope}\0{sk}").as_bytes());
    let mut check = [0; 8];
    check.copy_from_slice(&d[..8]);
    check
}

/// A cursor is its check and then the index sort key it resumes below, hex-encoded so
/// that it travels in a query string as it is.
fn encode_cursor(scope: &str, sk: &str) -> String {
    let check = cursor_check(scope, sk);
    check
        .iter()
        .chain(sk.as_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sort key a cursor resumes below, if this API issued it for a listing with the
/// same scope and it holds an index sort key (`{created_at}#{order_id}`).
fn decode_cursor(scope: &str, cursor: &str) -> Option<String> {
    if !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let (check, sk) = bytes.split_at_checked(8)?;
    let sk = String::from_utf8(sk.to_vec()).ok()?;
    let (created_at, order_id) = sk.split_once('#')?;
    let well_formed =
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok() && !order_id.is_empty();
    (well_formed && check == cursor_check(scope, &sk)).then_some(sk)
}

/// Where a listing resumes: below the sort key of its `cursor`, which must be a
/// next_cursor this API returned for the same filters.
fn resume_point(scope: &str, cursor: Option<&String>) -> Result<Option<String>, Problem> {
    let invalid =
        |rule: &str| Problem::invalid_field(ErrorKind::OrderInvalid.name(), "cursor", rule);
    match cursor.map(String::as_str) {
        None => Ok(None),
        Some("") => Err(invalid(
            "must not be empty: leave it out for the first page",
        )),
        Some(c) => decode_cursor(scope, c).map(Some).ok_or_else(|| {
            invalid(
                "is not valid: pass the next_cursor of the previous page, with the same filters",
            )
        }),
    }
}

/// The `limit` of a listing: 50 unless given, at most 500.
fn page_limit(filter: &BTreeMap<String, String>) -> Result<usize, Problem> {
    Ok(match filter.get("limit") {
        None => 50,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                Problem::new(
                    400,
                    ErrorKind::OrderInvalid.name(),
                    "limit: an integer from 1 to 500",
                )
            })?,
    })
}

/// The order status a listing keeps, if it filters by one.
fn status_wanted(filter: &BTreeMap<String, String>) -> Result<Option<OrderStatus>, Problem> {
    let Some(s) = filter.get("status") else {
        return Ok(None);
    };
    serde_json::from_value::<OrderStatus>(Value::String(s.clone()))
        .map(Some)
        .map_err(|_| {
            Problem::new(
                400,
                ErrorKind::OrderInvalid.name(),
                format!("status: '{s}' is not an order status"),
            )
        })
}

/// The narrowest index partitions that hold every match, newest first: the customer's,
/// else the SKU's, else the months listed.
fn partitions(customer: Option<&String>, sku: Option<&String>) -> Vec<String> {
    match (customer, sku) {
        (Some(c), _) => vec![ledger::index_pk(IndexBy::Customer, c)],
        (None, Some(k)) => vec![ledger::index_pk(IndexBy::Sku, k)],
        (None, None) => recent_months(chrono::Utc::now(), MONTHS_LISTED)
            .iter()
            .map(|m| ledger::index_pk(IndexBy::Month, m))
            .collect(),
    }
}

impl Orders {
    /// `GET /orders`: orders by status, customer or SKU, newest first, a page at a time.
    pub async fn list(&self, filter: &BTreeMap<String, String>) -> Result<Value, Problem> {
        let limit = page_limit(filter)?;
        let status_filter = status_wanted(filter)?;
        let scope = cursor_scope(filter);
        let mut before = resume_point(&scope, filter.get("cursor"))?;
        let (customer, sku) = (filter.get("customer_id"), filter.get("sku"));
        let partitions = partitions(customer, sku);
        let mut out = Vec::new();
        let mut next = None;
        let mut examined = 0;
        'partitions: for pk in partitions {
            loop {
                let page = self
                    .ctx
                    .store
                    .query_back(&pk, before.as_deref(), INDEX_PAGE)
                    .await
                    .map_err(ActivityError::from)?;
                for entry in &page {
                    // A filter that matches rarely must not read the whole history in
                    // one request: stop and hand back where to go on.
                    if examined == MAX_EXAMINED {
                        next = before.clone();
                        break 'partitions;
                    }
                    examined += 1;
                    let Some(order_id) = ledger::indexed_order_id(entry) else {
                        continue;
                    };
                    let Some(item) = self
                        .ctx
                        .store
                        .get(&ledger::order_key(order_id))
                        .await
                        .map_err(ActivityError::from)?
                    else {
                        continue;
                    };
                    let Ok(o) = from_item::<OrderRecord>(&item) else {
                        continue;
                    };
                    if customer.is_some_and(|c| *c != o.customer_id)
                        || sku.is_some_and(|s| !o.lines.iter().any(|l| l.sku == *s))
                    {
                        before = Some(entry.key.sk.clone());
                        continue;
                    }
                    let shown = self.summary(&o).await;
                    let wanted = status_filter.is_none_or(|want| {
                        serde_json::to_value(want).ok().as_ref() == Some(&shown["status"])
                    });
                    if wanted {
                        if out.len() == limit {
                            next = before.clone();
                            break 'partitions;
                        }
                        out.push(shown);
                    }
                    before = Some(entry.key.sk.clone());
                }
                if page.len() < INDEX_PAGE {
                    break;
                }
            }
        }
        let next_cursor = next.map(|sk| encode_cursor(&scope, &sk));
        Ok(json!({"orders": out, "next_cursor": next_cursor}))
    }

    async fn summary(&self, o: &OrderRecord) -> Value {
        // A compensation that stopped shows as COMPENSATION_FAILED, as in the view.
        let status = if o.status == OrderStatus::Compensating {
            match self.order_view(&o.order_id).await {
                Ok(v) => v.status(),
                Err(_) => o.status,
            }
        } else {
            o.status
        };
        json!({
            "order_id": o.order_id, "customer_id": o.customer_id, "status": status,
            "total_cents": o.total_cents, "skus": o.lines.iter().map(|l| &l.sku).collect::<Vec<_>>(),
            "created_at": o.created_at, "execution_arn": o.execution_arn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_months_cross_the_year() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-02-10T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            recent_months(at, 4),
            ["2026-02", "2026-01", "2025-12", "2025-11"]
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let scope = cursor_scope(&BTreeMap::from([(
            "sku".to_string(),
            "SOCKS-3PK".to_string(),
        )]));
        let sk = "2026-11-26T16:00:00.000Z#ord-1";
        let c = encode_cursor(&scope, sk);
        assert!(c.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode_cursor(&scope, &c).as_deref(), Some(sk));
        // Another listing's cursor, a forged one and garbage are all refused.
        let other = cursor_scope(&BTreeMap::new());
        assert_eq!(decode_cursor(&other, &c), None, "another listing's cursor");
        let bare: String = sk.bytes().map(|b| format!("{b:02x}")).collect();
        let mut flipped = c.clone();
        flipped.replace_range(c.len() - 2.., "33");
        for bad in ["", "abc", "zz", "ff", bare.as_str(), flipped.as_str()] {
            assert_eq!(decode_cursor(&scope, bad), None, "{bad}");
        }
        // Even a correct check does not make a sort key of something else.
        let not_a_key = encode_cursor(&scope, "ORDER");
        assert_eq!(decode_cursor(&scope, &not_a_key), None);
        assert!(resume_point(&scope, Some(&String::new())).is_err());
    }
}
