//! The time limit, enforced by one watchdog thread instead of by the evaluation.
//!
//! jsonata-core's own `timeout_ms` reads the clock at every node it evaluates; on the
//! bench expressions that clock read was a fifth of the time (`perf`, docs/jsonata.md).
//! Its `CancelToken` is checked at the same places for the price of an atomic load, so
//! an evaluation with a time limit registers its deadline and a token here, and the
//! watchdog cancels the token once the deadline passes; the cancellation (U1003) is
//! then reported as the time limit (U1001).
//!
//! The watchdog sleeps until the earliest deadline it knows of, and no longer than
//! [`IDLE`] while it has none; after an idle wake with nothing registered it parks
//! until the next registration. A registration wakes it only when it is parked or
//! would sleep past the new deadline, so a steady stream of evaluations with the same
//! limit costs one clock read, one allocation and two uncontended locks each.

use jsonata_core::evaluator::CancelToken;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long the watchdog sleeps when nothing is registered before it parks.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    /// Registered evaluations by slot; `None` is a free slot.
    slots: Vec<Option<(Instant, CancelToken)>>,
    free: Vec<usize>,
    /// When the watchdog will wake next; `None` while it is parked.
    wakes_at: Option<Instant>,
}

struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

/// An evaluation's registration: the token to hand jsonata-core, removed on drop (also
/// when the evaluation panics).
pub(crate) struct Deadline {
    slot: usize,
    token: CancelToken,
}

impl Deadline {
    /// Registers an evaluation that must end within `limit_ms`; `None` when the
    /// watchdog thread cannot be started (the caller then falls back to jsonata-core's
    /// own clock checks).
    pub(crate) fn start(limit_ms: u64) -> Option<Deadline> {
        let dog = watchdog()?;
        let at = Instant::now()
            .checked_add(Duration::from_millis(limit_ms))
            .unwrap_or_else(far_future);
        let token = CancelToken::new();
        let mut state = dog.lock();
        let entry = Some((at, token.clone()));
        let slot = match state.free.pop() {
            Some(slot) => {
                state.slots[slot] = entry;
                slot
            }
            None => {
                state.slots.push(entry);
                state.slots.len() - 1
            }
        };
        if state.wakes_at.is_none_or(|w| at < w) {
            state.wakes_at = Some(at);
            dog.wake.notify_one();
        }
        Some(Deadline { slot, token })
    }

    pub(crate) fn token(&self) -> CancelToken {
        self.token.clone()
    }

    /// Whether the watchdog ended the evaluation.
    pub(crate) fn passed(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(dog) = WATCHDOG.get().and_then(Option::as_ref) {
            let mut state = dog.lock();
            state.slots[self.slot] = None;
            state.free.push(self.slot);
        }
    }
}

static WATCHDOG: OnceLock<Option<Watchdog>> = OnceLock::new();

fn watchdog() -> Option<&'static Watchdog> {
    WATCHDOG
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("jsonata-deadline".into())
                .spawn(|| watch(WATCHDOG.wait().as_ref().expect("set before spawning")))
                .ok()
                .map(|_| Watchdog {
                    state: Mutex::new(State::default()),
                    wake: Condvar::new(),
                })
        })
        .as_ref()
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (no user code runs under it),
        // and the state stays consistent either way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The watchdog thread: cancels every token whose deadline has passed, then sleeps
/// until the next deadline (at most [`IDLE`]), or parks when there is none.
fn watch(dog: &Watchdog) {
    let mut state = dog.lock();
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (at, token) in state.slots.iter().flatten() {
            if *at <= now {
                token.cancel();
            } else {
                next = Some(next.map_or(*at, |n| n.min(*at)));
            }
        }
        let idle = state.free.len() == state.slots.len();
        state = match next {
            Some(at) => sleep_until(dog, state, at.min(now + IDLE)),
            // Nothing registered at the last idle wake: park.
            None if idle && state.wakes_at.is_some_and(|w| w <= now) => {
                state.wakes_at = None;
                dog.wake.wait(state).unwrap_or_else(|p| p.into_inner())
            }
            None => sleep_until(dog, state, now + IDLE),
        };
    }
}

fn sleep_until<'a>(
    dog: &'a Watchdog,
    mut state: MutexGuard<'a, State>,
    at: Instant,
) -> MutexGuard<'a, State> {
    state.wakes_at = Some(at);
    let wait = at.saturating_duration_since(Instant::now());
    dog.wake
        .wait_timeout(state, wait)
        .map(|(s, _)| s)
        .unwrap_or_else(|p| p.into_inner().0)
}

/// A deadline no evaluation reaches, for a limit too large to add to the clock.
fn far_future() -> Instant {
    const YEAR_S: u64 = 365 * 24 * 3600;
    Instant::now() + Duration::from_secs(YEAR_S)
}
