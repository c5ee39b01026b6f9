//! The execution history, in the shapes GetExecutionHistory returns.

use crate::eval::Host;
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    /// `ExecutionStarted`, `PassStateEntered`, ...
    pub kind: std::borrow::Cow<'static, str>,
    /// The event's details object (`null` for events that have none).
    pub details: Value,
}

/// Numbers every event, and keeps them only when asked: ids are always needed (AWS
/// quotes them in causes), the events themselves only by callers that show history.
#[derive(Debug, Default)]
pub struct EventLog {
    count: u64,
    events: Option<Vec<HistoryEvent>>,
    /// While above zero, events are neither numbered nor kept: they belong to a child
    /// execution (a distributed Map's iteration), not to this history.
    muted: u32,
}

impl EventLog {
    pub fn new(record: bool) -> Self {
        EventLog {
            count: 0,
            events: record.then(Vec::new),
            muted: 0,
        }
    }

    pub fn recording(&self) -> bool {
        self.events.is_some()
    }

    /// Adds an event and returns its id; `details` runs only when recording.
    pub fn record(
        &mut self,
        host: &mut dyn Host,
        kind: &'static str,
        details: impl FnOnce() -> Value,
    ) -> u64 {
        if self.muted > 0 {
            return self.count;
        }
        self.count += 1;
        let id = self.count;
        if let Some(events) = &mut self.events {
            events.push(HistoryEvent {
                id,
                previous_event_id: id - 1,
                timestamp: host.now(),
                kind: kind.into(),
                details: details(),
            });
        }
        id
    }

    /// Starts (when `yes`) a stretch of events that belong to a child execution.
    pub fn mute(&mut self, yes: bool) {
        if yes {
            self.muted += 1;
        }
    }

    pub fn unmute(&mut self, yes: bool) {
        if yes {
            self.muted = self.muted.saturating_sub(1);
        }
    }

    /// How many events there have been, kept or not.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Counts events that are not kept.
    pub fn skip(&mut self, n: u64) {
        if self.muted == 0 {
            self.count += n;
        }
    }

    /// Takes the kept events, leaving the numbering as it is.
    pub fn take_events(&mut self) -> Vec<HistoryEvent> {
        match &mut self.events {
            Some(e) => std::mem::take(e),
            None => Vec::new(),
        }
    }

    pub fn into_events(self) -> Vec<HistoryEvent> {
        self.events.unwrap_or_default()
    }

    pub fn events(&self) -> &[HistoryEvent] {
        self.events.as_deref().unwrap_or(&[])
    }
}
