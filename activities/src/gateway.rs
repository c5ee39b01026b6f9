//! The payment gateway seen by ChargePayment and RefundPayment, and the built-in one:
//! a ledger in the store that behaves like a card gateway with idempotency keys and a
//! vault: a token is exchanged for a payment-method reference once, and only the
//! gateway can tell which token a reference stands for.
//!
//! Test tokens: `tok_visa` and any other well-formed token approve; `tok_declined`
//! declines; `tok_gateway_timeout` never answers; `tok_refund_rejected` charges but
//! refuses refunds. A reference behaves as the token it was vaulted for.

use crate::model::{METHOD_HEX_DIGITS, METHOD_PREFIX};
use crate::store::{Cond, Item, Key, Store, StoreError, Write};
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    Declined(String),
    Timeout(String),
    RefundRejected(String),
    /// The charge's key was voided by a refund that came first.
    Voided,
    /// The gateway's own records could not be read or written: retry later.
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCharge {
    pub charge_id: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayRefund {
    Refunded {
        refund_id: String,
        amount_cents: i64,
    },
    /// Nothing was charged under the key, which is now void.
    Voided,
}

#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Exchanges an order's card token for a payment-method reference (`pm_` and 32
    /// hex digits, `model::METHOD_PATTERN`) and keeps the token, so that nothing else
    /// need hold it. The same order and token give the same reference.
    async fn vault(&self, order_id: &str, token: &str) -> Result<String, GatewayError>;
    /// The order a reference was vaulted for; None if this gateway never gave it out.
    async fn vaulted_for(&self, method: &str) -> Result<Option<String>, GatewayError>;
    /// Charges the payment method `method` (a reference from `vault`) once per `key`: a
    /// second call with the same key returns the first charge.
    async fn charge(
        &self,
        key: &str,
        method: &str,
        amount_cents: i64,
    ) -> Result<GatewayCharge, GatewayError>;
    /// Refunds the whole charge made under `charge_key`, once per `charge_key`. With no
    /// such charge it voids the key so that a charge arriving later is refused.
    async fn refund(&self, charge_key: &str) -> Result<GatewayRefund, GatewayError>;
}

pub const PARTITION: &str = "GATEWAY";

pub struct LedgerGateway {
    store: Arc<dyn Store>,
}

impl LedgerGateway {
    pub fn new(store: Arc<dyn Store>) -> LedgerGateway {
        LedgerGateway { store }
    }
}

const CHARGE: &str = "CHARGE#";
const REFUND: &str = "REFUND#";
const VOID: &str = "VOID#";
/// A vaulted token, under its reference: the one item that holds it.
const METHOD: &str = "METHOD#";

pub fn charge_key(key: &str) -> Key {
    Key::new(PARTITION, format!("{CHARGE}{key}"))
}
pub fn refund_key(key: &str) -> Key {
    Key::new(PARTITION, format!("{REFUND}{key}"))
}
fn void_key(key: &str) -> Key {
    Key::new(PARTITION, format!("{VOID}{key}"))
}
fn method_key(method: &str) -> Key {
    Key::new(PARTITION, format!("{METHOD}{method}"))
}

/// The reference of an order's token: derived, not drawn, so that vaulting again (a
/// resubmitted order, a retried PlaceOrder) gives the same one without a lookup by
/// token. The order id's length comes first so that no two pairs hash the same text.
fn method_for(order_id: &str, token: &str) -> String {
    use sha2::{Digest, Sha256};
    let text = format!("{}:{order_id}:{token}", order_id.len());
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..METHOD_HEX_DIGITS / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{METHOD_PREFIX}{hex}")
}

fn id_for(prefix: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

fn unavailable(e: StoreError) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}

fn doc(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl LedgerGateway {
    async fn vaulted(&self, method: &str) -> Result<Option<Item>, GatewayError> {
        self.store
            .get(&method_key(method))
            .await
            .map_err(unavailable)
    }

    /// The token a charge was made with: charges recorded before the vault hold it
    /// themselves.
    async fn charged_token(&self, charge: &Item) -> Result<Option<String>, GatewayError> {
        if let Some(token) = charge.str("token") {
            return Ok(Some(token.to_string()));
        }
        let Some(method) = charge.str("method") else {
            return Ok(None);
        };
        Ok(self
            .vaulted(method)
            .await?
            .and_then(|m| m.str("token").map(str::to_string)))
    }
}

#[async_trait::async_trait]
impl PaymentGateway for LedgerGateway {
    async fn vault(&self, order_id: &str, token: &str) -> Result<String, GatewayError> {
        let method = method_for(order_id, token);
        if self.vaulted(&method).await?.is_some() {
            return Ok(method);
        }
        let write = Write::Put {
            key: method_key(&method),
            doc: doc(json!({"order_id": order_id, "token": token})),
            cond: Cond::NotExists,
        };
        match self.store.transact(vec![write]).await {
            // A concurrent call vaulted the same order and token: the same item.
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(method),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn vaulted_for(&self, method: &str) -> Result<Option<String>, GatewayError> {
        Ok(self
            .vaulted(method)
            .await?
            .and_then(|m| m.str("order_id").map(str::to_string)))
    }

    async fn charge(
        &self,
        key: &str,
        method: &str,
        amount_cents: i64,
    ) -> Result<GatewayCharge, GatewayError> {
        if let Some(existing) = self
            .store
            .get(&charge_key(key))
            .await
            .map_err(unavailable)?
        {
            return Ok(GatewayCharge {
                charge_id: existing.str("charge_id").unwrap_or_default().to_string(),
                amount_cents: existing.i64("amount_cents"),
            });
        }
        let vaulted = self.vaulted(method).await?;
        let Some(token) = vaulted.as_ref().and_then(|m| m.str("token")) else {
            return Err(GatewayError::Declined(format!(
                "no payment method {method}"
            )));
        };
        match token {
            "tok_declined" => return Err(GatewayError::Declined("card declined".into())),
            "tok_gateway_timeout" => {
                return Err(GatewayError::Timeout(
                    "no answer from the card network".into(),
                ))
            }
            _ => {}
        }
        let charge_id = id_for("ch", key);
        let writes = vec![
            Write::Check {
                key: void_key(key),
                cond: Cond::NotExists,
            },
            Write::Put {
                key: charge_key(key),
                doc: doc(json!({
                    "charge_id": charge_id, "method": method, "amount_cents": amount_cents
                })),
                cond: Cond::NotExists,
            },
        ];
        match self.store.transact(writes).await {
            Ok(()) => Ok(GatewayCharge {
                charge_id,
                amount_cents,
            }),
            Err(StoreError::ConditionFailed { index: 0, .. }) => Err(GatewayError::Voided),
            // A concurrent call with the same key charged first: answer with its charge.
            Err(StoreError::ConditionFailed { .. }) => {
                let existing = self
                    .store
                    .get(&charge_key(key))
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| GatewayError::Unavailable("charge vanished".into()))?;
                Ok(GatewayCharge {
                    charge_id: existing.str("charge_id").unwrap_or_default().to_string(),
                    amount_cents: existing.i64("amount_cents"),
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn refund(&self, key: &str) -> Result<GatewayRefund, GatewayError> {
        for _ in 0..5 {
            if let Some(r) = self
                .store
                .get(&refund_key(key))
                .await
                .map_err(unavailable)?
            {
                return Ok(GatewayRefund::Refunded {
                    refund_id: r.str("refund_id").unwrap_or_default().to_string(),
                    amount_cents: r.i64("amount_cents"),
                });
            }
            if self
                .store
                .get(&void_key(key))
                .await
                .map_err(unavailable)?
                .is_some()
            {
                return Ok(GatewayRefund::Voided);
            }
            let writes = match self
                .store
                .get(&charge_key(key))
                .await
                .map_err(unavailable)?
            {
                None => vec![
                    Write::Check {
                        key: charge_key(key),
                        cond: Cond::NotExists,
                    },
                    Write::Put {
                        key: void_key(key),
                        doc: Map::new(),
                        cond: Cond::NotExists,
                    },
                ],
                Some(charge) => {
                    let token = self.charged_token(&charge).await?;
                    if token.as_deref() == Some("tok_refund_rejected") {
                        return Err(GatewayError::RefundRejected(
                            "the issuer refused the refund".into(),
                        ));
                    }
                    let refund_id = id_for("re", key);
                    vec![Write::Put {
                        key: refund_key(key),
                        doc: doc(json!({
                            "refund_id": refund_id,
                            "charge_id": charge.str("charge_id"),
                            "amount_cents": charge.i64("amount_cents"),
                        })),
                        cond: Cond::NotExists,
                    }]
                }
            };
            match self.store.transact(writes).await {
                Ok(()) => continue,
                // A charge or refund landed meanwhile: look again.
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(GatewayError::Unavailable(
            "refund kept racing with other calls".into(),
        ))
    }
}

/// What the gateway's ledger says in total, for audits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayTotals {
    pub charges: usize,
    pub charged_cents: i64,
    pub refunds: usize,
    pub refunded_cents: i64,
}

pub async fn totals(store: &dyn Store) -> Result<GatewayTotals, StoreError> {
    let mut t = GatewayTotals::default();
    for item in store.query(PARTITION, "").await? {
        if item.key.sk.starts_with(CHARGE) {
            t.charges += 1;
            t.charged_cents += item.i64("amount_cents");
        } else if item.key.sk.starts_with(REFUND) {
            t.refunds += 1;
            t.refunded_cents += item.i64("amount_cents");
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::is_method;

    #[test]
    fn references_are_well_formed_and_tell_orders_and_tokens_apart() {
        let a = method_for("o1", "tok_visa");
        assert!(is_method(&a), "{a}");
        assert_eq!(a, method_for("o1", "tok_visa"));
        assert_ne!(a, method_for("o2", "tok_visa"));
        assert_ne!(a, method_for("o1", "tok_visa2"));
        // The same text once the two are joined: only the length prefix tells them apart.
        assert_ne!(method_for("a:b", "c"), method_for("a", "b:c"));
    }
}
