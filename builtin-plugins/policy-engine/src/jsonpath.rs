//! GJSON-style paths over an attribute's JSON text (`sf.ke.message[items.0.namespace]`).
//!
//! Supported: dotted keys, numeric array indices, `\.` to escape a dot in a key, and `#`
//! (array length). The result text follows GJSON: strings unquoted, other values as JSON.

use serde_json::Value;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<String>,
}

impl JsonPath {
    /// Parses `a.b.0.c` (with `\.` escapes).
    pub fn parse(path: &str) -> JsonPath {
        let mut segments = Vec::new();
        let mut cur = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                '.' => segments.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        segments.push(cur);
        JsonPath { segments }
    }

    /// Applies the path to JSON `text`, writing the result text into `out` (`""` when the
    /// text is not JSON or the path does not exist).
    pub fn apply(&self, text: &str, out: &mut String) {
        out.clear();
        let Ok(root) = serde_json::from_str::<Value>(text) else { return };
        let mut v = &root;
        let mut len_holder;
        for seg in &self.segments {
            v = match v {
                Value::Object(m) => match m.get(seg.as_str()) {
                    Some(x) => x,
                    None => return,
                },
                Value::Array(a) => {
                    if seg == "#" {
                        len_holder = Value::from(a.len());
                        &len_holder
                    } else {
                        match seg.parse::<usize>().ok().and_then(|i| a.get(i)) {
                            Some(x) => x,
                            None => return,
                        }
                    }
                }
                _ => return,
            };
        }
        match v {
            Value::String(s) => out.push_str(s),
            Value::Null => out.push_str("null"),
            other => out.push_str(&other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gjson_like() {
        let j = r#"{"kind":"Pod","items":[{"namespace":"robot-shop","ports":[80,443]}]}"#;
        let mut out = String::new();
        JsonPath::parse("items.0.namespace").apply(j, &mut out);
        assert_eq!(out, "robot-shop");
        JsonPath::parse("items.0.ports").apply(j, &mut out);
        assert_eq!(out, "[80,443]");
        JsonPath::parse("items.0.ports.#").apply(j, &mut out);
        assert_eq!(out, "2");
        JsonPath::parse("items.1.namespace").apply(j, &mut out);
        assert_eq!(out, "");
        JsonPath::parse("2").apply("bash,sh", &mut out);
        assert_eq!(out, "");
    }
}
