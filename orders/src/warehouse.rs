//! The warehouses' side of picking: answers to pick requests, simulated or sent by a
//! warehouse, delivered to the waiting execution.

use activities::activity::{self, Ctx};
use activities::errors::{ActivityError, ErrorKind};
use activities::ledger::{self, from_item, OrderItem, ShipmentRecord};
use activities::model::{ShipmentRef, ShipmentStatus};
use saga_core::api::{SendTaskFailureInput, SendTaskSuccessInput, StepFunctions};
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The warehouses' side of picking. `oms up` simulates them by default: each pick
/// request is answered as picked after `delay`. With the simulation off, picks wait for
/// `POST /shipments/{id}/picked`.
pub struct Warehouse {
    ctx: Ctx,
    sfn: OnceLock<Arc<dyn StepFunctions>>,
    simulate: bool,
    delay: Duration,
}

impl Warehouse {
    pub fn new(ctx: Ctx, simulate: bool, delay: Duration) -> Warehouse {
        Warehouse {
            ctx,
            sfn: OnceLock::new(),
            simulate,
            delay,
        }
    }

    /// The Step Functions the answers go to (set once it exists: it needs the
    /// invoker, which needs this).
    pub fn connect(&self, sfn: Arc<dyn StepFunctions>) {
        let _ = self.sfn.set(sfn);
    }

    pub(crate) fn requested(self: &Arc<Self>, target: ShipmentRef, token: String) {
        if !self.simulate {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            // Not slept when zero: a tokio sleep ends on the timer's next tick, up to a
            // millisecond later, which was a tenth of an order's time at C=1.
            if !me.delay.is_zero() {
                tokio::time::sleep(me.delay).await;
            }
            // A warehouse answers again until its answer is taken: a full disk or a
            // busy store must not leave the saga waiting for the pick's timeout.
            let mut wait = Duration::from_millis(100);
            loop {
                match me.answer(&target, None).await {
                    Ok(_) => return,
                    Err(e) if e.retryable() => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    // A saga whose steps after the pick a power cut undid (its steps
                    // are synced lazily) asks for a pick its order store has shipped
                    // since: the answer would be refused as late, and the saga would
                    // wait for the pick's timeout. It is told the shipment as it is,
                    // with the token it asked with; its ship step finds the work done.
                    Err(_) if me.answer_shipped(&target, &token).await => return,
                    Err(e) => {
                        eprintln!(
                            "oms: simulated warehouse could not answer the pick of {}: {e}",
                            target.shipment_id
                        );
                        return;
                    }
                }
            }
        });
    }

    /// Answers a pick request: picks the shipment (or records `damaged`) and answers
    /// the waiting execution. Returns the shipment's state or the pick's error.
    pub async fn answer(
        &self,
        target: &ShipmentRef,
        damaged: Option<&str>,
    ) -> Result<Result<Value, ActivityError>, ActivityError> {
        let (token, outcome) = activity::confirm_pick(&self.ctx, target, damaged).await?;
        if let (Some(token), Some(sfn)) = (token, self.sfn.get()) {
            let sent = match &outcome {
                Ok(state) => sfn
                    .send_task_success(SendTaskSuccessInput {
                        task_token: token,
                        output: activities::model::to_json_text(state),
                    })
                    .await
                    .map(|_| ()),
                Err(e) => sfn
                    .send_task_failure(SendTaskFailureInput {
                        task_token: token,
                        error: Some(e.name().to_string()),
                        cause: Some(e.message.clone()),
                    })
                    .await
                    .map(|_| ()),
            };
            // A token that no longer waits (the task timed out, the execution ended)
            // is not an error of the warehouse's answer; a store that cannot take the
            // answer now is, and the warehouse answers again (it is idempotent).
            match sent {
                Err(e) if e.code.as_str() == "ServiceUnavailable" => {
                    return Err(ActivityError::new(ErrorKind::StoreUnavailable, e.message));
                }
                Err(e) => eprintln!(
                    "oms: pick answer for {} not delivered: {}",
                    target.shipment_id, e.message
                ),
                Ok(()) => {}
            }
        }
        Ok(outcome.map(|s| activities::model::to_json(&s)))
    }

    /// Answers `token` with the shipment's state if it has shipped; whether it did.
    async fn answer_shipped(&self, target: &ShipmentRef, token: &str) -> bool {
        let Ok(s) =
            ledger::load_shipment(&*self.ctx.store, &target.order_id, &target.shipment_id).await
        else {
            return false;
        };
        let Some(sfn) = self.sfn.get() else {
            return false;
        };
        if s.value.status != ShipmentStatus::Shipped {
            return false;
        }
        let state = activity::shipment_state(&s.value, &target.order_id);
        sfn.send_task_success(SendTaskSuccessInput {
            task_token: token.to_string(),
            output: activities::model::to_json_text(&state),
        })
        .await
        .is_ok()
    }

    /// Answers the pick requests left waiting by a previous run (they are stored with
    /// their tokens, the simulation's timers are not).
    pub async fn resume(self: &Arc<Self>) -> Result<usize, String> {
        if !self.simulate {
            return Ok(0);
        }
        let mut n = 0;
        for item in ledger::scan_orders(&*self.ctx.store)
            .await
            .map_err(|e| e.to_string())?
        {
            if OrderItem::of(&item.key) != Some(OrderItem::Shipment) {
                continue;
            }
            let Ok(s) = from_item::<ShipmentRecord>(&item) else {
                continue;
            };
            // Picked and shipped too: a crash after the pick was recorded but before the
            // saga took the answer (or its later steps were synced) would leave the saga
            // waiting for the pick's timeout (found by the power-loss campaign). Answering again is idempotent; a token that no
            // longer waits is refused and logged.
            if let (
                Some(token),
                ShipmentStatus::Reserved | ShipmentStatus::Picked | ShipmentStatus::Shipped,
            ) = (s.pick_token, s.status)
            {
                let order_id = ledger::order_id_of(&item.key.pk)
                    .unwrap_or_default()
                    .to_string();
                self.requested(
                    ShipmentRef {
                        order_id,
                        shipment_id: s.shipment_id,
                    },
                    token,
                );
                n += 1;
            }
        }
        Ok(n)
    }
}
