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
        if let Some(last) = page.last() {
            // An event is told to a receiver only once it is on disk (log.rs).
            log.sync_through(last.seq).await?;
        }
        for event in &page {
            if sub.types.iter().any(|t| matches(t, &event.kind)) {
                if let Err((attempts, e)) = deliver(&*sender, &mut backoff, &sub, event).await {
                    log.dead_letter(&id, event.seq, attempts, &e).await?;
                }
            }
            log.delivered_through(&id, event.seq).await?;
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
            log.revived(&sub.id, *seq).await?;
            continue;
        };
        match deliver(sender, backoff, sub, &event).await {
            Ok(()) => log.revived(&sub.id, *seq).await?,
            Err((attempts, e)) => log.dead_letter(&sub.id, *seq, attempts, &e).await?,
        }
    }
    Ok(!seqs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_body_with_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            sign("Jefe", b"what do ya want for nothing!"),
            sign("Jefe", b"what do ya want for nothing?")
        );
    }

    #[test]
    fn patterns_take_exact_types_or_prefixes() {
        let cases = [
            ("oms.order.*", "oms.order.completed", true),
            ("oms.order.*", "oms.shipment.picked", false),
            ("oms.*", "oms.compensation.refund_payment", true),
            ("oms.order.completed", "oms.order.completed", true),
            ("oms.order.completed", "oms.order.completed_x", false),
        ];
        for (pattern, kind, want) in cases {
            assert_eq!(matches(pattern, kind), want, "{pattern} {kind}");
        }
        for bad in ["order.*", "oms.*.x", "*", "oms.order.**"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
        assert!(check_pattern("oms.order.*").is_ok());
    }

    #[test]
    fn backoff_doubles_to_its_bound_with_seeded_jitter() {
        let make = || {
            Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(2),
                5,
                Some(42),
            )
        };
        let (mut a, mut b) = (make(), make());
        for attempt in 1..=40 {
            let d = a.delay(attempt);
            let ceiling = (100u64 << (attempt - 1).min(20)).min(2000);
            let ms = d.as_millis() as u64;
            assert!(
                ms >= ceiling / 2 && ms <= ceiling,
                "attempt {attempt}: {ms} ms"
            );
            assert_eq!(d, b.delay(attempt), "the same seed, the same jitter");
        }
        let mut other = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            5,
            Some(43),
        );
        let draws = |bo: &mut Backoff| (1..=10).map(|n| bo.delay(n)).collect::<Vec<_>>();
        assert_ne!(
            draws(&mut make()),
            draws(&mut other),
            "another seed, other jitter"
        );
    }

    /// A receiver failing the first `fail` sends.
    struct Flaky {
        fail: u32,
        sent: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Sender for Flaky {
        async fn send(&self, _: &Subscription, event: &Logged) -> Result<(), String> {
            let mut sent = self.sent.lock().unwrap();
            sent.push(event.id.clone());
            if sent.len() as u32 <= self.fail {
                return Err(format!("refused {}", sent.len()));
            }
            Ok(())
        }
    }

    fn event(seq: u64) -> Logged {
        Logged {
            seq,
            id: format!("e{seq}"),
            kind: "oms.order.pending".into(),
            body: "{}".into(),
        }
    }

    #[tokio::test]
    async fn delivery_retries_then_gives_up_at_its_bound() {
        let log = EventLog::in_memory().await.unwrap();
        let sub = log
            .subscribe("http://127.0.0.1:9/", &["oms.*".into()])
            .await
            .unwrap();
        let ms = Duration::from_millis;
        let flaky = Flaky {
            fail: 2,
            sent: Default::default(),
        };
        let mut backoff = Backoff::new(ms(10), ms(40), 3, Some(1));
        assert_eq!(deliver(&flaky, &mut backoff, &sub, &event(1)).await, Ok(()));
        assert_eq!(
            flaky.sent.lock().unwrap().len(),
            3,
            "two failures, then delivered"
        );
        let dead = Flaky {
            fail: 99,
            sent: Default::default(),
        };
        let err = deliver(&dead, &mut backoff, &sub, &event(2))
            .await
            .unwrap_err();
        assert_eq!(err, (3, "refused 3".to_string()));
    }
}
