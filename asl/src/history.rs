//! The execution history, in the shapes GetExecutionHistory returns.

use crate::host::Host;
use crate::model::Kind;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// An object of `fields`, in their order, as a value (an event's details, a context
/// object). Interpolated into `json!`, a value is serialised into a new one
/// (`to_value`), every key of every map hashed again; these are moved in.
pub fn details<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// `{"truncated": false}`, made once: a payload recorded whole.
pub fn whole() -> &'static Value {
    static WHOLE: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| details([("truncated", Value::Bool(false))]));
    &WHOLE
}

/// An event's details object serialised from borrowed `fields`, in their order: what
/// the hot events (a state's input and output, a task's parameters and result) record.
/// Built as values, each payload was cloned into its event only for the runtime to
/// serialise the clone into its step rows (issue 16: about 6% of an order's
/// instructions).
pub fn details_text(fields: &[(&str, &Value)]) -> Details {
    struct Fields<'a>(&'a [(&'a str, &'a Value)]);
    impl serde::Serialize for Fields<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    // A map of JSON values always serialises; were it ever not to, a null is no lie.
    serde_json::to_string(&Fields(fields)).map_or(Details::Value(Value::Null), Details::Text)
}

/// An event's details: its object (`null` for events that have none), as a value or
/// as the JSON text of one ([`details_text`]). Equal, serialised and read as the value
/// either way.
#[derive(Debug, Clone)]
pub enum Details {
    Value(Value),
    Text(String),
}

impl Details {
    /// The details as a value (a text parsed: for readers off the hot path).
    pub fn value(&self) -> std::borrow::Cow<'_, Value> {
        match self {
            Details::Value(v) => std::borrow::Cow::Borrowed(v),
            // Written by `details_text` from values, so it parses.
            Details::Text(t) => {
                std::borrow::Cow::Owned(serde_json::from_str(t).unwrap_or_default())
            }
        }
    }

    /// The details as JSON text, None for events that have none.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Details::Value(Value::Null) => None,
            Details::Value(v) => Some(v.to_string()),
            Details::Text(t) => Some(t.clone()),
        }
    }
}

impl From<Value> for Details {
    fn from(v: Value) -> Details {
        Details::Value(v)
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Details) -> bool {
        *self.value() == *other.value()
    }
}

impl serde::Serialize for Details {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Details {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Details, D::Error> {
        Value::deserialize(d).map(Details::Value)
    }
}

/// Declares the event types with each variant named exactly as AWS names the type, so
/// the name written once is both the variant and the string the history shows.
macro_rules! event_kinds {
    ($($kind:ident),* $(,)?) => {
        /// The type of a history event, as GetExecutionHistory names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        pub enum HistoryEventKind {
            $($kind),*
        }

        impl HistoryEventKind {
            /// Every event type, for tests that check the names.
            pub const ALL: &'static [HistoryEventKind] = &[$(HistoryEventKind::$kind),*];

            /// The name AWS uses: `TaskStateEntered`, `ExecutionRedriven`, ...
            pub fn as_str(self) -> &'static str {
                match self {
                    $(HistoryEventKind::$kind => stringify!($kind)),*
                }
            }

            /// The event type AWS names `name`, if the engine records it.
            pub fn parse(name: &str) -> Option<HistoryEventKind> {
                match name {
                    $(stringify!($kind) => Some(HistoryEventKind::$kind),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    ExecutionStarted, ExecutionSucceeded, ExecutionFailed, ExecutionAborted, ExecutionTimedOut, ExecutionRedriven,
    PassStateEntered, PassStateExited, TaskStateEntered, TaskStateExited, ChoiceStateEntered, ChoiceStateExited,
    WaitStateEntered, WaitStateExited, SucceedStateEntered, SucceedStateExited, FailStateEntered, FailStateExited,
    ParallelStateEntered, ParallelStateExited, ParallelStateStarted, ParallelStateFailed,
    MapStateEntered, MapStateExited, MapStateStarted, MapStateSucceeded, MapStateFailed,
    MapIterationStarted, MapIterationSucceeded, MapIterationFailed, MapRunStarted, MapRunSucceeded, MapRunFailed,
    TaskScheduled, TaskStarted, TaskSucceeded, TaskFailed, TaskTimedOut,
    ActivityScheduled, ActivityStarted, ActivitySucceeded, ActivityFailed, ActivityTimedOut,
    LambdaFunctionScheduled, LambdaFunctionStarted, LambdaFunctionSucceeded, LambdaFunctionFailed, LambdaFunctionTimedOut,
    EvaluationFailed,
}

impl HistoryEventKind {
    /// The event that records entering a state of this kind.
    pub fn state_entered(kind: &Kind) -> HistoryEventKind {
        use HistoryEventKind as E;
        match kind {
            Kind::Pass { .. } => E::PassStateEntered,
            Kind::Task(_) => E::TaskStateEntered,
            Kind::Choice { .. } => E::ChoiceStateEntered,
            Kind::Wait(_) => E::WaitStateEntered,
            Kind::Succeed => E::SucceedStateEntered,
            Kind::Fail { .. } => E::FailStateEntered,
            Kind::Parallel { .. } => E::ParallelStateEntered,
            Kind::Map(_) => E::MapStateEntered,
        }
    }

    /// Whether the event records entering a state (of any kind).
    pub fn is_state_entered(self) -> bool {
        use HistoryEventKind as E;
        matches!(
            self,
            E::PassStateEntered
                | E::TaskStateEntered
                | E::ChoiceStateEntered
                | E::WaitStateEntered
                | E::SucceedStateEntered
                | E::FailStateEntered
                | E::ParallelStateEntered
                | E::MapStateEntered
        )
    }

    /// Whether the event records leaving a state (of any kind).
    pub fn is_state_exited(self) -> bool {
        use HistoryEventKind as E;
        matches!(
            self,
            E::PassStateExited
                | E::TaskStateExited
                | E::ChoiceStateExited
                | E::WaitStateExited
                | E::SucceedStateExited
                | E::FailStateExited
                | E::ParallelStateExited
                | E::MapStateExited
        )
    }

    /// Whether the event records a task's call failing or timing out (a Task state
    /// may retry or catch it).
    pub fn is_task_failure(self) -> bool {
        use HistoryEventKind as E;
        matches!(
            self,
            E::TaskFailed
                | E::TaskTimedOut
                | E::ActivityFailed
                | E::ActivityTimedOut
                | E::LambdaFunctionFailed
                | E::LambdaFunctionTimedOut
        )
    }

    /// The event that records leaving a state of this kind.
    pub fn state_exited(kind: &Kind) -> HistoryEventKind {
        use HistoryEventKind as E;
        match kind {
            Kind::Pass { .. } => E::PassStateExited,
            Kind::Task(_) => E::TaskStateExited,
            Kind::Choice { .. } => E::ChoiceStateExited,
            Kind::Wait(_) => E::WaitStateExited,
            Kind::Succeed => E::SucceedStateExited,
            Kind::Fail { .. } => E::FailStateExited,
            Kind::Parallel { .. } => E::ParallelStateExited,
            Kind::Map(_) => E::MapStateExited,
        }
    }
}

impl std::fmt::Display for HistoryEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    /// `ExecutionStarted`, `PassStateEntered`, ...: a [`HistoryEventKind`]'s name. A
    /// string, not the enum, because stored histories are read back as strings.
    pub kind: std::borrow::Cow<'static, str>,
    /// The event's details object (`null` for events that have none).
    pub details: Details,
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
        kind: HistoryEventKind,
        details: impl FnOnce() -> Value,
    ) -> u64 {
        self.record_details(host, kind, || Details::Value(details()))
    }

    /// [`EventLog::record`] with details of either form (the hot events': text).
    pub fn record_details(
        &mut self,
        host: &mut dyn Host,
        kind: HistoryEventKind,
        details: impl FnOnce() -> Details,
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
                kind: kind.as_str().into(),
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

#[cfg(test)]
mod tests {
    use super::{details, details_text, whole, Details, HistoryEventKind};
    use serde_json::json;

    #[test]
    fn details_as_text_read_serialise_and_compare_as_the_value() {
        let input = json!({"order": {"id": "o-1", "lines": [{"sku": "A", "qty": 2}]}, "n": 1.5});
        let name = json!("PlaceOrder");
        let text = details_text(&[
            ("input", &input),
            ("inputDetails", whole()),
            ("name", &name),
        ]);
        let value: Details = details([
            ("input", input.clone()),
            ("inputDetails", whole().clone()),
            ("name", name.clone()),
        ])
        .into();
        assert!(matches!(text, Details::Text(_)));
        // The text is what the value serialises to, key order included: the step rows
        // hold the same bytes either way.
        assert_eq!(text.to_text(), value.to_text());
        assert_eq!(text, value);
        assert_eq!(*text.value(), *value.value());
        assert_eq!(
            serde_json::to_string(&text).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(Details::from(serde_json::Value::Null).to_text(), None);
    }

    #[test]
    fn kinds_serialise_as_their_aws_names() {
        for kind in HistoryEventKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::String(kind.as_str().into()));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(format!("{kind:?}"), kind.as_str());
            assert_eq!(HistoryEventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(HistoryEventKind::parse("NoSuchEvent"), None);
    }

    /// The predicates agree with the names: every `...StateEntered` and only those.
    #[test]
    fn predicates_match_the_names() {
        for kind in HistoryEventKind::ALL {
            let name = kind.as_str();
            assert_eq!(
                kind.is_state_entered(),
                name.ends_with("StateEntered"),
                "{name}"
            );
            assert_eq!(
                kind.is_state_exited(),
                name.ends_with("StateExited"),
                "{name}"
            );
            let failure = !name.contains("State")
                && (name.ends_with("Failed") || name.ends_with("TimedOut"))
                && !name.starts_with("Execution")
                && !name.starts_with("Map")
                && !name.starts_with("Evaluation");
            assert_eq!(kind.is_task_failure(), failure, "{name}");
        }
    }
}
