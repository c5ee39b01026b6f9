//! The payment gateway seen by ChargePayment and RefundPayment, and the built-in one:
//! a ledger in the store that behaves like a card gateway with idempotency keys.
//!
//! Test tokens: `tok_visa` and any other well-formed token approve; `tok_declined`
//! declines; `tok_gateway_timeout` never answers; `tok_refund_rejected` charges but
//! refuses refunds.

use crate::store::{Cond, Key, Store, StoreError, Write};
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    Declined(String),
    Timeout(String),
    RefundRejected(String),
    /// The charge's key was voided by a refund that came first.
    Voided,
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
    /// Charges once per `key`: a second call with the same key returns the first charge.
    async fn charge(
        &self,
        key: &str,
        token: &str,
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

fn charge_key(key: &str) -> Key {
    Key::new(PARTITION, format!("CHARGE#{key}"))
}
fn refund_key(key: &str) -> Key {
    Key::new(PARTITION, format!("REFUND#{key}"))
}
fn void_key(key: &str) -> Key {
    Key::new(PARTITION, format!("VOID#{key}"))
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

#[async_trait::async_trait]
impl PaymentGateway for LedgerGateway {
    async fn charge(
        &self,
        key: &str,
        token: &str,
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
                    "charge_id": charge_id, "token": token, "amount_cents": amount_cents
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
                    if charge.str("token") == Some("tok_refund_rejected") {
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
        if item.key.sk.starts_with("CHARGE#") {
            t.charges += 1;
            t.charged_cents += item.i64("amount_cents");
        } else if item.key.sk.starts_with("REFUND#") {
            t.refunds += 1;
            t.refunded_cents += item.i64("amount_cents");
        }
    }
    Ok(t)
}
