//! Syntax errors worded as Jackson words them.
//!
//! AWS parses definitions with Jackson and returns its exception text verbatim as an
//! INVALID_JSON_DESCRIPTION diagnostic, so clients that match on it need Jackson's
//! wording, its `[Source: ...; line: L, column: C]` locations and its 1-based column
//! that points just past the offending character.

/// Jackson's ObjectMapper nests at most this deep before it gives up (2.15+); beyond it
/// the validator reports a nesting diagnostic instead of a syntax error.
const MAX_DEPTH: usize = 1000;
/// Jackson quotes at most this many characters of the source in a location.
const SOURCE_SNIPPET: usize = 500;
const VALID_VALUES: &str =
    "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')";

pub(super) struct SyntaxError {
    pub message: String,
    pub location: String,
}

/// The first syntax error in `text` as Jackson reports it, or `None` when Jackson would
/// read a value from it (trailing content after the first value is ignored, as
/// `ObjectMapper.readTree` does by default).
pub(super) fn first_error(text: &str) -> Option<SyntaxError> {
    let mut s = Scanner {
        c: text.chars().collect(),
        i: 0,
        line: 1,
        row_start: 0,
        source: source_desc(text),
    };
    s.skip_ws();
    s.value(0).err()
}

fn source_desc(text: &str) -> String {
    let n = text.chars().count();
    if n <= SOURCE_SNIPPET {
        format!("(String)\"{text}\"")
    } else {
        let head: String = text.chars().take(SOURCE_SNIPPET).collect();
        format!("(String)\"{head}\"[truncated {} chars]", n - SOURCE_SNIPPET)
    }
}

fn char_desc(ch: char) -> String {
    let code = ch as u32;
    if ch.is_control() {
        format!("(CTRL-CHAR, code {code})")
    } else if code > 255 {
        format!("'{ch}' (code {code} / 0x{code:x})")
    } else {
        format!("'{ch}' (code {code})")
    }
}

fn is_ident_start(ch: char) -> bool {
    ch.is_alphabetic() || ch == '_' || ch == '$'
}

fn is_ident_part(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_' || ch == '$'
}

struct Scanner {
    c: Vec<char>,
    i: usize,
    line: usize,
    row_start: usize,
    source: String,
}

type R = Result<(), SyntaxError>;

impl Scanner {
    fn location(&self, ptr: usize) -> String {
        format!(
            "[Source: {}; line: {}, column: {}]",
            self.source,
            self.line,
            ptr - self.row_start + 1
        )
    }

    fn fail_at(&self, ptr: usize, message: String) -> R {
        let location = self.location(ptr);
        Err(SyntaxError {
            message: format!("{message}\n at {location}"),
            location,
        })
    }

    /// Jackson has consumed the offending character when it reports it.
    fn unexpected(&self, comment: &str) -> R {
        let ch = self.c[self.i];
        self.fail_at(
            self.i + 1,
            format!("Unexpected character ({}): {comment}", char_desc(ch)),
        )
    }

    fn eof(&self, what: &str) -> R {
        self.fail_at(self.c.len(), format!("Unexpected end-of-input{what}"))
    }

    fn skip_ws(&mut self) {
        while let Some(&ch) = self.c.get(self.i) {
            match ch {
                ' ' | '\t' => {}
                '\n' => {
                    self.line += 1;
                    self.row_start = self.i + 1;
                }
                '\r' => {
                    if self.c.get(self.i + 1) != Some(&'\n') {
                        self.line += 1;
                        self.row_start = self.i + 1;
                    }
                }
                _ => return,
            }
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> R {
        if depth > MAX_DEPTH {
            // Not a syntax error: the caller reports excessive nesting itself.
            return Ok(());
        }
        let Some(ch) = self.peek() else {
            return self.eof(&format!(": expected a valid value {VALID_VALUES}"));
        };
        match ch {
            '{' => self.container(depth, '}', "Object"),
            '[' => self.container(depth, ']', "Array"),
            '"' => self.string(),
            '-' | '0'..='9' => self.number(),
            't' => self.literal("true"),
            'f' => self.literal("false"),
            'n' => self.literal("null"),
            '/' | '#' => self.unexpected(
                "maybe a (non-standard) comment? (not recognized as one since Feature 'ALLOW_COMMENTS' not enabled for parser)",
            ),
            c if is_ident_start(c) => self.bad_token(self.i),
            _ => self.unexpected(&format!("expected a valid value {VALID_VALUES}")),
        }
    }

    fn bad_token(&mut self, start: usize) -> R {
        let mut end = start;
        while end < self.c.len() && is_ident_part(self.c[end]) && end - start < 256 {
            end += 1;
        }
        let mut token: String = self.c[start..end].iter().collect();
        if end - start >= 256 {
            token.push_str("...");
        }
        self.fail_at(
            end,
            format!("Unrecognized token '{token}': was expecting {VALID_VALUES}"),
        )
    }

    fn literal(&mut self, word: &str) -> R {
        let start = self.i;
        let matched = word
            .chars()
            .enumerate()
            .all(|(k, w)| self.c.get(start + k) == Some(&w));
        let end = start + word.chars().count();
        if !matched || self.c.get(end).is_some_and(|&c| is_ident_part(c)) {
            return self.bad_token(start);
        }
        self.i = end;
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> R {
        if self.peek() == Some('-') {
            self.i += 1;
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {}
                Some(c) => {
                    return self.fail_at(
                        self.i + 1,
                        format!(
                            "Unexpected character ({}) in numeric value: expected digit (0-9) to follow minus sign, for valid numeric value",
                            char_desc(c)
                        ),
                    )
                }
                None => return self.eof(" in a Number value"),
            }
        }
        if self.peek() == Some('0') && self.c.get(self.i + 1).is_some_and(|c| c.is_ascii_digit()) {
            return self.fail_at(
                self.i + 2,
                "Invalid numeric value: Leading zeroes not allowed".into(),
            );
        }
        self.digits();
        if self.peek() == Some('.') {
            self.i += 1;
            if self.digits() == 0 {
                return match self.peek() {
                    Some(c) => self.fail_at(
                        self.i + 1,
                        format!("Unexpected character ({}) in numeric value: Decimal point not followed by a digit", char_desc(c)),
                    ),
                    None => self.eof(" in a Number value"),
                };
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.i += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return match self.peek() {
                    Some(c) => self.fail_at(
                        self.i + 1,
                        format!("Unexpected character ({}) in numeric value: Exponent indicator not followed by a digit", char_desc(c)),
                    ),
                    None => self.eof(" in a Number value"),
                };
            }
        }
        Ok(())
    }

    fn string(&mut self) -> R {
        self.i += 1;
        loop {
            let Some(ch) = self.peek() else {
                return self.eof(": was expecting closing quote for a string value");
            };
            match ch {
                '"' => {
                    self.i += 1;
                    return Ok(());
                }
                '\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return self.eof(" in character escape sequence");
                    };
                    match e {
                        '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' => self.i += 1,
                        'u' => {
                            self.i += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(h) if h.is_ascii_hexdigit() => self.i += 1,
                                    Some(_) => {
                                        return self.unexpected(
                                            "expected a hex-digit for character escape sequence",
                                        )
                                    }
                                    None => return self.eof(" in character escape sequence"),
                                }
                            }
                        }
                        other => {
                            return self.fail_at(
                                self.i + 1,
                                format!("Unrecognized character escape {}", char_desc(other)),
                            )
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return self.unexpected_unquoted(c);
                }
                _ => self.i += 1,
            }
        }
    }

    fn unexpected_unquoted(&self, c: char) -> R {
        self.fail_at(
            self.i + 1,
            format!(
                "Illegal unquoted character ({}): has to be escaped using backslash to be included in string value",
                char_desc(c)
            ),
        )
    }

    fn container(&mut self, depth: usize, close: char, kind: &str) -> R {
        let start_marker = self.location(self.i);
        let is_object = close == '}';
        self.i += 1;
        let eof_msg =
            format!(": expected close marker for {kind} (start marker at {start_marker})");
        self.skip_ws();
        match self.peek() {
            None => return self.eof(&eof_msg),
            Some(c) if c == close => {
                self.i += 1;
                return Ok(());
            }
            _ => {}
        }
        loop {
            if is_object {
                match self.peek() {
                    None => return self.eof(&eof_msg),
                    Some('"') => self.string()?,
                    Some(_) => {
                        return self.unexpected("was expecting double-quote to start field name")
                    }
                }
                self.skip_ws();
                match self.peek() {
                    None => return self.eof(&eof_msg),
                    Some(':') => self.i += 1,
                    Some(_) => {
                        return self
                            .unexpected("was expecting a colon to separate field name and value")
                    }
                }
                self.skip_ws();
            }
            if self.peek().is_none() {
                return self.eof(&eof_msg);
            }
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                None => return self.eof(&eof_msg),
                Some(',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(());
                }
                Some(_) => {
                    return self
                        .unexpected(&format!("was expecting comma to separate {kind} entries"))
                }
            }
            self.skip_ws();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: &str) -> (String, String) {
        let e = first_error(t).expect("an error");
        (e.message, e.location)
    }

    #[test]
    fn unrecognized_token_as_aws_reports_it() {
        let (m, l) = err("not a definition");
        assert_eq!(
            l,
            "[Source: (String)\"not a definition\"; line: 1, column: 4]"
        );
        assert_eq!(
            m,
            "Unrecognized token 'not': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')\n at [Source: (String)\"not a definition\"; line: 1, column: 4]"
        );
    }

    #[test]
    fn trailing_comma_points_past_the_brace() {
        let (m, l) = err("{\"a\":1,}");
        assert!(m.starts_with(
            "Unexpected character ('}' (code 125)): was expecting double-quote to start field name"
        ));
        assert!(l.ends_with("line: 1, column: 9]"), "{l}");
    }

    #[test]
    fn valid_json_has_no_error() {
        assert!(first_error("{\"a\": [1, -2.5e3, true, null, \"x\\u00e9\"]}").is_none());
        assert!(first_error("{} trailing").is_none());
    }

    #[test]
    fn unterminated_object_names_its_start() {
        let (m, _) = err("{\n  \"a\": 1");
        assert!(m.starts_with("Unexpected end-of-input: expected close marker for Object (start marker at [Source: (String)\"{\n  \"a\": 1\"; line: 1, column: 1])"), "{m}");
    }
}
