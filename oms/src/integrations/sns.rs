//! SNS `publish`, the one SNS action oms sends: SNS speaks the Query protocol (a form
//! POST answered in XML), so its Parameters are flattened into form fields here and
//! the answer's fields read back. Other SNS actions are refused, naming this limit.

use super::errors::{self, ServiceError};
use super::{signed, xml, Call};
use asl::Failure;
use serde_json::{json, Map, Value};

/// Publish's members that are plain strings.
const SCALARS: &[&str] = &[
    "TopicArn",
    "TargetArn",
    "PhoneNumber",
    "Message",
    "Subject",
    "MessageStructure",
    "MessageDeduplicationId",
    "MessageGroupId",
];
const API_VERSION: &str = "2010-03-31";

pub async fn call(client: &signed::Client, c: &Call<'_>, params: &Value) -> Result<Value, Failure> {
    if c.action != "publish" {
        return Err(c.bad_parameters(
            "oms sends only SNS publish (SNS speaks the Query protocol, which oms \
             implements for publish alone: docs/integrations.md)",
        ));
    }
    let fields = form_fields(params).map_err(|m| c.bad_parameters(m))?;
    let request = signed::Request {
        method: "POST",
        url: format!("{}/", c.base),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        )],
        body: form_body(&fields).into_bytes(),
        signing_name: c.service.signing_name,
        region: c.region.to_string(),
        s3: false,
    };
    let response = client.send(request).await.map_err(|e| c.send_failure(e))?;
    if !(200..300).contains(&response.status) {
        return Err(errors::failure(c.service, c.kind, &xml_error(&response)));
    }
    publish_result(&response.body).ok_or_else(|| {
        c.client_failure(format!(
            "{} answered Publish without a MessageId: {}",
            c.base,
            String::from_utf8_lossy(&response.body)
        ))
    })
}

/// The Publish request's form body.
fn form_body(fields: &[(String, String)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "Publish");
    form.append_pair("Version", API_VERSION);
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    form.finish()
}

/// The result as Step Functions shows it: `{"MessageId": ..., "SequenceNumber": ...}`
/// (the sequence number only for FIFO topics).
fn publish_result(body: &[u8]) -> Option<Value> {
    let id = xml::first_text(body, "MessageId")?;
    let mut out = json!({ "MessageId": id });
    if let Some(seq) = xml::first_text(body, "SequenceNumber") {
        out["SequenceNumber"] = Value::String(seq);
    }
    Some(out)
}

/// A Query-protocol error answer's code and message.
pub fn xml_error(response: &signed::Response) -> ServiceError {
    ServiceError {
        code: xml::first_text(&response.body, "Code"),
        message: xml::first_text(&response.body, "Message")
            .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned()),
        status: response.status,
        request_id: xml::first_text(&response.body, "RequestId")
            .unwrap_or_else(|| response.request_id()),
    }
}

/// Publish's Parameters as Query form fields; MessageAttributes become
/// `MessageAttributes.entry.N.{Name,Value.DataType,Value.StringValue,Value.BinaryValue}`.
fn form_fields(params: &Value) -> Result<Vec<(String, String)>, String> {
    let obj = params
        .as_object()
        .ok_or("Parameters must be an object with publish's members")?;
    let mut out = Vec::new();
    for (key, value) in obj {
        if key == "MessageAttributes" {
            message_attributes(value, &mut out)?;
        } else if SCALARS.contains(&key.as_str()) {
            let text = value
                .as_str()
                .ok_or_else(|| format!("{key} must be a string"))?;
            out.push((key.clone(), text.to_string()));
        } else {
            return Err(format!(
                "publish has no member {key} (it takes {} and MessageAttributes)",
                SCALARS.join(", ")
            ));
        }
    }
    Ok(out)
}

fn message_attributes(value: &Value, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let attrs = value
        .as_object()
        .ok_or("MessageAttributes must be an object of name to {DataType, StringValue}")?;
    for (i, (name, attr)) in attrs.iter().enumerate() {
        let prefix = format!("MessageAttributes.entry.{}", i + 1);
        out.push((format!("{prefix}.Name"), name.clone()));
        let attr: &Map<String, Value> = attr
            .as_object()
            .ok_or_else(|| format!("MessageAttributes.{name} must be an object"))?;
        for (field, v) in attr {
            if !matches!(field.as_str(), "DataType" | "StringValue" | "BinaryValue") {
                return Err(format!(
                    "MessageAttributes.{name} has no member {field} (DataType, StringValue, \
                     BinaryValue)"
                ));
            }
            let text = v
                .as_str()
                .ok_or_else(|| format!("MessageAttributes.{name}.{field} must be a string"))?;
            out.push((format!("{prefix}.Value.{field}"), text.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_publish_parameters_into_query_fields() {
        let p = json!({
            "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": "hi",
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "order"}}
        });
        let fields = form_fields(&p).unwrap();
        let has = |k: &str, v: &str| fields.iter().any(|(a, b)| a == k && b == v);
        assert!(has("TopicArn", "arn:aws:sns:us-east-1:1:t"));
        assert!(has("Message", "hi"));
        assert!(has("MessageAttributes.entry.1.Name", "kind"));
        assert!(has("MessageAttributes.entry.1.Value.DataType", "String"));
        assert!(has("MessageAttributes.entry.1.Value.StringValue", "order"));
    }

    #[test]
    fn refuses_members_publish_does_not_have() {
        let e = form_fields(&json!({"Mesage": "typo"})).unwrap_err();
        assert!(e.contains("no member Mesage"), "{e}");
        let e = form_fields(&json!({"Message": 3})).unwrap_err();
        assert!(e.contains("Message must be a string"), "{e}");
    }

    #[test]
    fn reads_the_publish_answer() {
        let body = br#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
          <PublishResult><MessageId>abc</MessageId></PublishResult>
          <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>"#;
        assert_eq!(publish_result(body), Some(json!({"MessageId": "abc"})));
    }
}
