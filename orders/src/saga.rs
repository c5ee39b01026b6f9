//! The order saga as `oms up` registers it: its definition with the substitutions for
//! local functions, its name, and the order the server suggests first.

/// The order saga's state machine name.
pub const MACHINE_NAME: &str = "order-saga";
/// The saga, as kept in statemachines/ and deployed by the CDK app.
const DEFINITION: &str = include_str!("../../statemachines/order-saga.asl.json");
/// The order `oms up` suggests on its first screen.
pub const DEMO_ORDER: &str = r#"{"customer_id":"c-1","lines":[{"sku":"TSHIRT-BLK-M","quantity":2}],"payment":{"token":"tok_visa"},"ship_to":{"name":"Ada Lovelace","line1":"1 Main St","city":"Boston","postal_code":"02101","country":"US"}}"#;

/// Local function names: `oms-` and the activity's function name.
pub const FUNCTION_PREFIX: &str = "oms-";

/// The definition with its `${...}` substitutions filled in for local functions.
pub fn local_definition(region: &str, account: &str) -> Result<String, String> {
    let mut text = DEFINITION.to_string();
    for a in activities::ACTIVITIES {
        let arn = format!(
            "arn:aws:lambda:{region}:{account}:function:{FUNCTION_PREFIX}{}",
            a.function()
        );
        text = text.replace(&format!("${{{}FunctionArn}}", a.name), &arn);
    }
    if let Some(at) = text.find("${") {
        let name: String = text[at..].chars().take_while(|c| *c != '}').collect();
        return Err(format!(
            "statemachines/order-saga.asl.json: no value for the substitution {name}}}"
        ));
    }
    Ok(text)
}
