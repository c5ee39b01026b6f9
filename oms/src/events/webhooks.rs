//! Webhook delivery: each subscription gets the events whose type it asked for, one at
//! a time in global order (so in order per order), each POSTed until the receiver
//! answers 2xx, waiting an exponential backoff with jitter between attempts; after the
//! last attempt the event is dead-lettered and delivery goes on. At least once: a
//! receiver deduplicates by the `X-Oms-Event-Id` header (the CloudEvent's id).

use super::log::{EventLog, Logged, Subscription};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The header holding `sha256=<hex HMAC-SHA256 of the body under the secret>`.
pub const SIGNATURE_HEADER: &str = "X-Oms-Signature";
pub const EVENT_ID_HEADER: &str = "X-Oms-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "X-Oms-Event-Type";

/// The signature header's value for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Whether `pattern` (an exact type, or a prefix ending in `*`, like `oms.order.*`)
/// takes events of type `kind`.
pub fn matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// What a subscription's `types` may hold: an `oms.` type or prefix, `*` only last.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    if !pattern.starts_with("oms.") || stem.contains('*') || stem.is_empty() {
        return Err(format!(
            "'{pattern}' is not an event type (oms.order.completed) or a prefix of types \
             ending in * (oms.order.*)"
        ));
    }
    Ok(())
}

/// How deliveries are retried: attempt n (from 1) failing waits a random time in
/// [d/2, d], d = min(max, base * 2^(n-1)); after `max_attempts` the event is dead.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
    seed: Option<u64>,
    rng: fastrand::Rng,
}

impl Backoff {
    /// `seed` makes the jitter repeatable (tests); None draws it from the OS.
    pub fn new(base: Duration, max: Duration, max_attempts: u32, seed: Option<u64>) -> Backoff {
        Backoff {
            base,
            max,
            max_attempts: max_attempts.max(1),
            seed,
            rng: seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
        }
    }

    /// A jitter stream of its own (one per worker), still repeatable under a seed.
    pub fn reseed(&mut self, salt: u64) {
        self.rng = match self.seed {
            Some(s) => fastrand::Rng::with_seed(s ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            None => fastrand::Rng::new(),
        };
    }

    /// The wait after failed attempt `attempt` (1 for the first).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.u64(ms / 2..=ms))
    }
}

/// Sends one event; Err says why the receiver did not take it.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, sub: &Subscription, event: &Logged) -> Result<(), String>;
}

/// POSTs over HTTP with the signature and id headers.
pub struct HttpSender {
    client: reqwest::Client,
}

impl HttpSender {
    pub fn new() -> HttpSender {
        HttpSender {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }
}

#[async_trait::async_trait]
impl Sender for HttpSender {
    async fn send(&self, sub: &Subscription, event: &Logged) -> Result<(), String> {
        let body = event.body.clone().into_bytes();
        let response = self
            .client
            .post(&sub.url)
            .header("Content-Type", "application/cloudevents+json")
            .header(SIGNATURE_HEADER, sign(&sub.secret, &body))
            .header(EVENT_ID_HEADER, &event.id)
            .header(EVENT_TYPE_HEADER, &event.kind)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {}: {e}", sub.url))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {} answered {status}", sub.url))
        }
    }
}

/// Delivers `event` with retries: Ok when delivered, Err(attempts, last error) when
/// every attempt failed.
pub async fn deliver(
    sender: &dyn Sender,
    backoff: &mut Backoff,
    sub: &Subscription,
    event: &Logged,
) -> Result<(), (u32, String)> {
    let mut attempt = 1;
    loop {
        match sender.send(sub, event).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= backoff.max_attempts => return Err((attempt, e)),
            Err(_) => {
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// How many events a worker reads from the log at a time.
const PAGE: usize = 200;

/// Delivers a subscription's events until it is deleted: first its dead letters asked
/// to be replayed, then every event after where it got to. Wakes when the log grows.
pub async fn run_subscription(
    log: Arc<EventLog>,
    sender: Arc<dyn Sender>,
    mut backoff: Backoff,
    id: String,
    mut grown: watch::Receiver<u64>,
) -> Result<(), String> {
    loop {
        let Some(sub) = log.subscription(&id)? else {
            return Ok(());
        };
        let mut worked = replay_dead(&log, &*sender, &mut backoff, &sub).await?;
        let page = log.after(sub.delivered_through, PAGE)?;
        for event in &page {
            if sub.types.iter().any(|t| matches(t, &event.kind)) {
                if let Err((attempts, e)) = deliver(&*sender, &mut backoff, &sub, event).await {
                    log.dead_letter(&id, event.seq, attempts, &e)?;
                }
            }
            log.delivered_through(&id, event.seq)?;
            worked = true;
        }
        if !worked {
            // Woken by new events or a replay; the timeout notices a deletion.
            let _ = tokio::time::timeout(Duration::from_secs(1), grown.changed()).await;
        }
    }
}

/// Tries once more (with the usual retries) each dead letter marked for replay.
async fn replay_dead(
    log: &EventLog,
    sender: &dyn Sender,
    backoff: &mut Backoff,
    sub: &Subscription,
) -> Result<bool, String> {
    let seqs = log.replaying(&sub.id)?;
    for seq in &seqs {
        let Some(event) = log.get(*seq)? else {
            log.revived(&sub.id, *seq)?;
            continue;
        };
        match deliver(sender, backoff, sub, &event).await {
            Ok(()) => log.revived(&sub.id, *seq)?,
            Err((attempts, e)) => log.dead_letter(&sub.id, *seq, attempts, &e)?,
        }
    }
    Ok(!seqs.is_empty())
}
