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

#[cfg(test)]
mod tests {
    use super::*;

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
