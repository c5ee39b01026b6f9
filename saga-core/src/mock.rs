//! Mocked service integrations, in the format Step Functions Local defined (its
//! `SFN_MOCK_CONFIG` file), so that a team's existing mock file and tests run on oms
//! unchanged.
//!
//! The file names test cases per state machine; a test case maps state names to
//! mocked responses; a mocked response answers each invocation of its state by number
//! (`"0"`, `"1-2"`, ...) with a `Return` (the task's result) or a `Throw` (its error
//! and cause). An execution runs a test case when it is started with the state
//! machine's ARN followed by `#TestCaseName`. Its mocked Task states never call their
//! resource; every other state runs as usual, so the history is a real run's.
//!
//! Invocations are counted per execution and state in memory: an execution resumed
//! after a restart counts from 0 again.

use crate::api::ApiError;
use asl::Failure;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// One answer of a mocked response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
enum Answer {
    Return(Value),
    Throw(Thrown),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Thrown {
    #[serde(rename = "Error")]
    error: String,
    #[serde(rename = "Cause", default)]
    cause: Option<String>,
}

/// A mocked response: answers by invocation number, as inclusive ranges from 0.
#[derive(Debug, Clone, PartialEq)]
struct Response {
    answers: Vec<(u32, u32, Answer)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineCases {
    #[serde(rename = "TestCases")]
    test_cases: HashMap<String, HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "StateMachines", default)]
    state_machines: HashMap<String, MachineCases>,
    #[serde(rename = "MockedResponses", default)]
    mocked_responses: HashMap<String, HashMap<String, Answer>>,
}

/// A mock configuration, checked: every test case names responses that exist, and
/// every response numbers its invocations from 0 without gaps.
#[derive(Debug)]
pub struct MockConfig {
    /// State machine name -> test case -> state name -> response name.
    cases: HashMap<String, HashMap<String, HashMap<String, String>>>,
    responses: HashMap<String, Response>,
    /// (execution ARN, state name) -> invocations so far.
    calls: Mutex<HashMap<(String, String), u32>>,
}

impl MockConfig {
    /// Parses and checks a mock configuration; the error names the place and the rule.
    pub fn parse(text: &str) -> Result<MockConfig, String> {
        let file: File =
            serde_json::from_str(text).map_err(|e| format!("not a mock configuration: {e}"))?;
        let mut responses = HashMap::new();
        for (name, answers) in file.mocked_responses {
            let response = numbered(&name, answers)?;
            responses.insert(name, response);
        }
        let mut cases = HashMap::new();
        for (machine, m) in file.state_machines {
            for (case, states) in &m.test_cases {
                for (state, response) in states {
                    if !responses.contains_key(response) {
                        return Err(format!(
                            "StateMachines.{machine}.TestCases.{case}.{state}: names the mocked \
                             response '{response}', which MockedResponses does not define"
                        ));
                    }
                }
            }
            cases.insert(machine, m.test_cases);
        }
        Ok(MockConfig {
            cases,
            responses,
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the file `path`.
    pub fn load(path: &std::path::Path) -> Result<MockConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("mock configuration {}: {e}", path.display()))?;
        MockConfig::parse(&text).map_err(|e| format!("mock configuration {}: {e}", path.display()))
    }

    /// Checks that `machine_name` has the test case `case`, as StartExecution with
    /// `ARN#case` needs.
    pub fn check_case(&self, machine_name: &str, case: &str) -> Result<(), ApiError> {
        let known = self
            .cases
            .get(machine_name)
            .is_some_and(|cases| cases.contains_key(case));
        if known {
            Ok(())
        } else {
            Err(ApiError::validation(format!(
                "Invalid test case: the mock configuration has no test case '{case}' for the \
                 state machine '{machine_name}'"
            )))
        }
    }

    /// The answer for the next invocation of `state` in an execution running the test
    /// case `case` of `machine_name`; None when the test case does not mock the state.
    pub fn answer(
        &self,
        execution_arn: &str,
        machine_name: &str,
        case: &str,
        state: &str,
    ) -> Option<Result<Value, Failure>> {
        let response_name = self.cases.get(machine_name)?.get(case)?.get(state)?;
        let response = self.responses.get(response_name)?;
        let n = {
            let mut calls = self.calls.lock().expect("mock calls lock");
            let count = calls
                .entry((execution_arn.to_string(), state.to_string()))
                .or_insert(0);
            let n = *count;
            *count += 1;
            n
        };
        let found = response
            .answers
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&n));
        Some(match found {
            Some((_, _, Answer::Return(v))) => Ok(v.clone()),
            Some((_, _, Answer::Throw(t))) => Err(Failure {
                error: t.error.clone(),
                cause: t.cause.clone(),
            }),
            // Not a task failure a Catch could hide: the test case is incomplete.
            None => Err(Failure::new(
                asl::error::names::RUNTIME,
                format!(
                    "the mocked response '{response_name}' has no answer for invocation {n} of \
                     state '{state}'"
                ),
            )),
        })
    }

    /// Forgets an execution's invocation counts (it has ended).
    pub fn forget(&self, execution_arn: &str) {
        self.calls
            .lock()
            .expect("mock calls lock")
            .retain(|(arn, _), _| arn != execution_arn);
    }
}

/// A response's answers in order, checked to number the invocations from 0 without
/// gaps or overlaps (`"0"`, `"1-2"`, `"3"`).
fn numbered(name: &str, answers: HashMap<String, Answer>) -> Result<Response, String> {
    let mut ranges = Vec::new();
    for (key, answer) in answers {
        let (lo, hi) = match key.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
            None => (key.trim().parse::<u32>(), key.trim().parse::<u32>()),
        };
        match (lo, hi) {
            (Ok(lo), Ok(hi)) if lo <= hi => ranges.push((lo, hi, answer)),
            _ => {
                return Err(format!(
                    "MockedResponses.{name}.{key}: an invocation number or range such as \"0\" \
                     or \"1-2\""
                ))
            }
        }
    }
    ranges.sort_by_key(|(lo, _, _)| *lo);
    let mut next = 0u32;
    for (lo, hi, _) in &ranges {
        if *lo != next {
            return Err(format!(
                "MockedResponses.{name}: invocations must be numbered from 0 without gaps or \
                 overlaps ({next} is {})",
                if *lo > next {
                    "missing"
                } else {
                    "numbered twice"
                }
            ));
        }
        next = hi.saturating_add(1);
    }
    if ranges.is_empty() {
        return Err(format!(
            "MockedResponses.{name}: at least one answer (\"0\")"
        ));
    }
    Ok(Response { answers: ranges })
}

/// A state machine ARN as StartExecution takes it for a test case: `ARN#Case`.
pub fn split_test_case(machine_arn: &str) -> (&str, Option<&str>) {
    match machine_arn.split_once('#') {
        Some((arn, case)) => (arn, Some(case)),
        None => (machine_arn, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:states:us-east-1:000000000000:execution:m:e";

    fn config() -> MockConfig {
        MockConfig::parse(
            &json!({
                "StateMachines": {"m": {"TestCases": {
                    "Happy": {"Call": "Ok"},
                    "Retry": {"Call": "FailsTwice"}}}},
                "MockedResponses": {
                    "Ok": {"0": {"Return": {"StatusCode": 200, "Payload": {"x": 1}}}},
                    "FailsTwice": {
                        "0-1": {"Throw": {"Error": "Lambda.ServiceException", "Cause": "down"}},
                        "2": {"Return": {"Payload": "up"}}}}
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn answers_follow_the_invocation_number_and_run_out_loudly() {
        let c = config();
        let answers: Vec<_> = (0..4)
            .map(|_| c.answer(ARN, "m", "Retry", "Call").unwrap())
            .collect();
        assert_eq!(
            answers[0].as_ref().unwrap_err().error,
            "Lambda.ServiceException"
        );
        assert_eq!(
            answers[1].as_ref().unwrap_err().cause.as_deref(),
            Some("down")
        );
        assert_eq!(answers[2], Ok(json!({"Payload": "up"})));
        assert_eq!(answers[3].as_ref().unwrap_err().error, "States.Runtime");
        assert!(
            c.answer(ARN, "m", "Happy", "Other").is_none(),
            "an unmocked state runs"
        );
        c.forget(ARN);
        assert!(
            c.answer(ARN, "m", "Retry", "Call").unwrap().is_err(),
            "counts restart"
        );
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_place() {
        let cases = [
            (
                json!({"StateMachines": {"m": {"TestCases": {"T": {"S": "Nope"}}}}}),
                "StateMachines.m.TestCases.T.S",
            ),
            (
                json!({"MockedResponses": {"R": {"1": {"Return": 1}}}}),
                "MockedResponses.R",
            ),
            (
                json!({"MockedResponses": {"R": {"0": {"Return": 1}, "0-1": {"Return": 2}}}}),
                "numbered twice",
            ),
            (
                json!({"MockedResponses": {"R": {"x": {"Return": 1}}}}),
                "MockedResponses.R.x",
            ),
            (
                json!({"MockedResponses": {"R": {"0": {"Return": 1, "Throw": {"Error": "E"}}}}}),
                "not a mock configuration",
            ),
        ];
        for (file, place) in cases {
            let err = MockConfig::parse(&file.to_string()).expect_err("refused");
            assert!(err.contains(place), "{file}: {err}");
        }
    }

    #[test]
    fn an_unknown_test_case_is_a_validation_error() {
        let c = config();
        assert!(c.check_case("m", "Happy").is_ok());
        let e = c.check_case("m", "Sad").unwrap_err();
        assert_eq!(e.code.as_str(), "ValidationException");
        assert_eq!(
            split_test_case("arn:x:stateMachine:m#Happy"),
            ("arn:x:stateMachine:m", Some("Happy"))
        );
    }
}
