//! Reading the few fields oms needs from XML answers (SNS, S3), with the AWS SDK's
//! own XML decoder.

use aws_smithy_xml::decode::{try_data, Document};

/// The text of the first element named `name`, anywhere in the document.
pub fn first_text(xml: &[u8], name: &str) -> Option<String> {
    let mut doc = Document::try_from(xml).ok()?;
    while let Some(el) = doc.next_start_element() {
        if el.local() == name {
            let mut scope = doc.scoped_to(el);
            return try_data(&mut scope).ok().map(|t| t.into_owned());
        }
    }
    None
}

/// Every element named `name` as its child elements' (name, text) pairs, in order
/// (ListObjectsV2's `Contents`).
pub fn records(xml: &[u8], name: &str) -> Option<Vec<Vec<(String, String)>>> {
    let mut doc = Document::try_from(xml).ok()?;
    let mut out = Vec::new();
    while let Some(el) = doc.next_start_element() {
        if el.local() != name {
            continue;
        }
        let mut record = Vec::new();
        let mut scope = doc.scoped_to(el);
        while let Some(mut child) = scope.next_tag() {
            let field = child.start_el().local().to_string();
            // A nested element (Owner, RestoreStatus) has no text of its own: skipped.
            if let Ok(text) = try_data(&mut child) {
                record.push((field, text.into_owned()));
            }
        }
        out.push(record);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_in_order_with_their_fields() {
        let xml = br#"<ListBucketResult><Name>b</Name><Contents><Key>a.json</Key><Size>3</Size>
            <Owner><ID>x</ID></Owner></Contents><Contents><Key>b &amp; c</Key><Size>5</Size></Contents>
            </ListBucketResult>"#;
        let r = records(xml, "Contents").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0][0], ("Key".to_string(), "a.json".to_string()));
        assert_eq!(r[1][0].1, "b & c");
        assert_eq!(r[1][1], ("Size".to_string(), "5".to_string()));
    }

    #[test]
    fn finds_nested_text_and_unescapes_it() {
        let xml = br#"<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type>
            <Code>NotFound</Code><Message>Topic &amp; all</Message></Error></ErrorResponse>"#;
        assert_eq!(first_text(xml, "Code").as_deref(), Some("NotFound"));
        assert_eq!(first_text(xml, "Message").as_deref(), Some("Topic & all"));
        assert_eq!(first_text(xml, "RequestId"), None);
        assert_eq!(first_text(b"not xml", "Code"), None);
    }
}
