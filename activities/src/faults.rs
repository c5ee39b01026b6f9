//! Fault injection, off by default and changed at run time: per activity, fail the next
//! N calls with a given error, fail a fraction of calls transiently, add latency. A
//! failure can be injected before the activity's effect (nothing happened) or after it
//! (the effect happened and the answer was lost, as when a Lambda times out after its
//! write): the second kind is what proves the activities idempotent.
//!
//! Plans live in the store (partition FAULTS), so every process running activities,
//! `oms up` or Lambda, sees the same plan, and "fail the next N" counts down atomically.

use crate::errors::{ActivityError, ErrorKind};
use crate::store::{Cond, Key, Store, StoreError, Write};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const PARTITION: &str = "FAULTS";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// Fail this many of the next calls with `error`.
    #[serde(default)]
    pub fail_next: i64,
    /// The error name for `fail_next` (any name in docs/errors.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The fraction of calls, 0 to 1, that fail with the activity's transient error.
    #[serde(default)]
    pub transient_rate: f64,
    /// Delay every call by this much.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fail after the effect instead of before it.
    #[serde(default)]
    pub after_effect: bool,
}

impl FaultPlan {
    /// The plan's rules, for the activity keyed `activity`, one of `activities`.
    pub fn check(&self, activity: &str, activities: &[&str]) -> Result<(), String> {
        if !activities.contains(&activity) {
            return Err(format!(
                "{activity}: not an activity (one of {})",
                activities.join(", ")
            ));
        }
        if self.fail_next < 0 {
            return Err(format!("{activity}.fail_next: must be 0 or more"));
        }
        if self.fail_next > 0 {
            match &self.error {
                None => return Err(format!("{activity}.error: required with fail_next")),
                Some(name) if ErrorKind::from_name(name).is_none() => {
                    return Err(format!(
                        "{activity}.error: '{name}' is not an activity error name"
                    ))
                }
                _ => {}
            }
        }
        if !(0.0..=1.0).contains(&self.transient_rate) {
            return Err(format!("{activity}.transient_rate: must be from 0 to 1"));
        }
        if self.latency_ms > 900_000 {
            return Err(format!("{activity}.latency_ms: at most 900000"));
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Faults {
    store: Arc<dyn Store>,
    /// Off in production (the Lambda functions and `oms worker` without
    /// `OMS_FAULT_INJECTION=1`): the plan lookups are two reads per activity call, four
    /// in ten of a happy order's reads (`oms cost`).
    enabled: bool,
    /// The keys of the activities a plan may name (given by `activity`, which uses this
    /// module: the list is passed in, not looked up, so the two do not import each other).
    activities: &'static [&'static str],
}

/// The variable that turns fault injection on where it is off by default.
pub const ENABLE_VAR: &str = "OMS_FAULT_INJECTION";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Before,
    After,
}

impl Faults {
    pub fn new(store: Arc<dyn Store>, activities: &'static [&'static str]) -> Faults {
        Faults {
            store,
            enabled: true,
            activities,
        }
    }

    /// Faults that never fire and never read the store.
    pub fn disabled(store: Arc<dyn Store>) -> Faults {
        Faults {
            store,
            enabled: false,
            activities: &[],
        }
    }

    /// On when `OMS_FAULT_INJECTION` is `1` or `true`.
    pub fn from_env(store: Arc<dyn Store>, activities: &'static [&'static str]) -> Faults {
        let on = std::env::var(ENABLE_VAR).is_ok_and(|v| v == "1" || v == "true");
        if on {
            Faults::new(store, activities)
        } else {
            Faults::disabled(store)
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Replaces every plan: activities not named have no faults afterwards.
    pub async fn set(&self, plans: &BTreeMap<String, FaultPlan>) -> Result<(), String> {
        for (k, p) in plans {
            p.check(k, self.activities)?;
        }
        self.clear().await.map_err(|e| e.to_string())?;
        for (k, p) in plans {
            let doc = match serde_json::to_value(p).expect("plans serialize") {
                Value::Object(m) => m,
                _ => unreachable!("a plan is an object"),
            };
            self.store
                .transact(vec![Write::Put {
                    key: Key::new(PARTITION, k.clone()),
                    doc,
                    cond: Cond::Always,
                }])
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    pub async fn get(&self) -> Result<BTreeMap<String, FaultPlan>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.store.query(PARTITION, "").await? {
            if let Ok(plan) = serde::Deserialize::deserialize(&*item.doc) {
                out.insert(item.key.sk, plan);
            }
        }
        Ok(out)
    }

    pub async fn clear(&self) -> Result<(), StoreError> {
        for item in self.store.query(PARTITION, "").await? {
            self.store
                .transact(vec![Write::Delete {
                    key: item.key,
                    cond: Cond::Always,
                }])
                .await?;
        }
        Ok(())
    }

    /// Called by an activity at `point`: sleeps and fails as the plan says.
    pub async fn inject(&self, activity: &str, point: Point) -> Result<(), ActivityError> {
        if !self.enabled {
            return Ok(());
        }
        let key = Key::new(PARTITION, activity);
        let Some(item) = self.store.get(&key).await? else {
            return Ok(());
        };
        let Ok(plan) = FaultPlan::deserialize(&*item.doc) else {
            return Ok(());
        };
        if point == Point::Before && plan.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(plan.latency_ms)).await;
        }
        if (point == Point::After) != plan.after_effect {
            return Ok(());
        }
        if plan.fail_next > 0 {
            let took = self
                .store
                .transact(vec![Write::Add {
                    key,
                    deltas: vec![("fail_next".into(), -1)],
                    min_after: vec![("fail_next".into(), 0)],
                }])
                .await;
            if took.is_ok() {
                let name = plan.error.as_deref().unwrap_or("Activity.Unavailable");
                let kind = ErrorKind::from_name(name).unwrap_or(ErrorKind::ActivityUnavailable);
                return Err(ActivityError::injected(kind, activity));
            }
        }
        if plan.transient_rate > 0.0 && fastrand::f64() < plan.transient_rate {
            let kind = match activity {
                "charge" | "refund" => ErrorKind::PaymentGatewayTimeout,
                _ => ErrorKind::ActivityUnavailable,
            };
            return Err(ActivityError::injected(kind, activity));
        }
        Ok(())
    }
}
