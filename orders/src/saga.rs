//! The order saga as `oms up` registers it: its definition (in either query language)
//! with the substitutions for local functions, its name, and the order the server
//! suggests first.

use serde::Deserialize;

/// The order saga's state machine name.
pub const MACHINE_NAME: &str = "order-saga";
/// The order saga's Express child (statemachines/order-prepare.asl.json): the forward
/// steps that do not wait, which the saga's Prepare state runs with
/// `states:startExecution.sync:2`.
pub const PREPARE_MACHINE_NAME: &str = "order-prepare";
/// The substitution in the saga's definition that names the child.
pub const PREPARE_SUBSTITUTION: &str = "${OrderPrepareStateMachineArn}";
/// The amendments' state machine name (statemachines/order-amend.asl.json).
pub const AMEND_MACHINE_NAME: &str = "order-amend";
/// The amendments' definition, with its `${...}` substitutions.
pub const AMEND_DEFINITION: &str = include_str!("../../statemachines/order-amend.asl.json");
/// The order `oms up` suggests on its first screen.
pub const DEMO_ORDER: &str = r#"{"customer_id":"c-1","lines":[{"sku":"TSHIRT-BLK-M","quantity":2}],"payment":{"token":"tok_visa"},"ship_to":{"name":"Ada Lovelace","line1":"1 Main St","city":"Boston","postal_code":"02101","country":"US"}}"#;

/// Local function names: `oms-` and the activity's function name.
pub const FUNCTION_PREFIX: &str = "oms-";

/// Which of the saga's two definitions runs: the same states, activities, retries,
/// catches, outputs and errors, written in JSONPath (the default, the one the CDK app
/// deploys) or in JSONata (its twin). Named as ASL's `QueryLanguage` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SagaLanguage {
    #[default]
    #[serde(rename = "JSONPath")]
    JsonPath,
    #[serde(rename = "JSONata")]
    Jsonata,
}

impl SagaLanguage {
    /// Both, in the order tests run them.
    pub const ALL: [SagaLanguage; 2] = [SagaLanguage::JsonPath, SagaLanguage::Jsonata];

    /// The name ASL's `QueryLanguage` gives it.
    pub fn name(self) -> &'static str {
        match self {
            SagaLanguage::JsonPath => "JSONPath",
            SagaLanguage::Jsonata => "JSONata",
        }
    }

    /// The definition's file, under statemachines/.
    pub fn file(self) -> &'static str {
        match self {
            SagaLanguage::JsonPath => "order-saga.asl.json",
            SagaLanguage::Jsonata => "order-saga.jsonata.asl.json",
        }
    }

    /// The child's definition file (the forward steps that do not wait), under
    /// statemachines/.
    pub fn prepare_file(self) -> &'static str {
        match self {
            SagaLanguage::JsonPath => "order-prepare.asl.json",
            SagaLanguage::Jsonata => "order-prepare.jsonata.asl.json",
        }
    }

    /// The child's definition as kept in statemachines/.
    pub fn prepare_definition(self) -> &'static str {
        match self {
            SagaLanguage::JsonPath => include_str!("../../statemachines/order-prepare.asl.json"),
            SagaLanguage::Jsonata => {
                include_str!("../../statemachines/order-prepare.jsonata.asl.json")
            }
        }
    }

    /// The definition as kept in statemachines/ (with its `${...}` substitutions).
    pub fn definition(self) -> &'static str {
        match self {
            SagaLanguage::JsonPath => include_str!("../../statemachines/order-saga.asl.json"),
            SagaLanguage::Jsonata => {
                include_str!("../../statemachines/order-saga.jsonata.asl.json")
            }
        }
    }
}

impl std::str::FromStr for SagaLanguage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        SagaLanguage::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("'{s}' is not a query language: JSONPath or JSONata"))
    }
}

/// The definition with its `${...}` substitutions filled in for local functions.
pub fn local_definition(
    region: &str,
    account: &str,
    language: SagaLanguage,
) -> Result<String, String> {
    substitute(language.definition(), region, account).map_err(|name| {
        format!(
            "statemachines/{}: no value for the substitution {name}",
            language.file()
        )
    })
}

/// The saga's Express child in `language`, with its substitutions filled in for local
/// functions.
pub fn local_prepare_definition(
    region: &str,
    account: &str,
    language: SagaLanguage,
) -> Result<String, String> {
    substitute(language.prepare_definition(), region, account).map_err(|name| {
        format!(
            "statemachines/{}: no value for the substitution {name}",
            language.prepare_file()
        )
    })
}

/// The amendments' definition with its substitutions filled in for local functions.
pub fn local_amend_definition(region: &str, account: &str) -> Result<String, String> {
    substitute(AMEND_DEFINITION, region, account).map_err(|name| {
        format!("statemachines/order-amend.asl.json: no value for the substitution {name}")
    })
}

/// Any definition with the substitutions `oms up` fills (`oms cost`'s baseline design).
pub fn with_local_substitutions(text: &str, region: &str, account: &str) -> Result<String, String> {
    substitute(text, region, account)
}

/// `text` with every `${<Name>FunctionArn}` replaced by its local function's ARN and
/// the child's `${OrderPrepareStateMachineArn}` by its local ARN; the first
/// substitution left over is the error.
fn substitute(text: &str, region: &str, account: &str) -> Result<String, String> {
    let mut text = text.replace(
        PREPARE_SUBSTITUTION,
        &format!("arn:aws:states:{region}:{account}:stateMachine:{PREPARE_MACHINE_NAME}"),
    );
    let every = activities::ACTIVITIES
        .iter()
        .chain(activities::amend::AMEND_ACTIVITIES);
    for a in every {
        let arn = format!(
            "arn:aws:lambda:{region}:{account}:function:{FUNCTION_PREFIX}{}",
            a.function()
        );
        text = text.replace(&format!("${{{}FunctionArn}}", a.name), &arn);
    }
    if let Some(at) = text.find("${") {
        let name: String = text[at..].chars().take_while(|c| *c != '}').collect();
        return Err(format!("{name}}}"));
    }
    Ok(text)
}
