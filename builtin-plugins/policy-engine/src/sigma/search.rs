//! Lowering of Sigma searches (field matchers with modifiers) to [`Cond`] trees.

use std::collections::HashMap;

use yaml_rust2::Yaml;

use super::document::scalar_text;
use crate::{
    attributes,
    ir::{Cond, Op, Operand},
    position::SourcePos,
};

/// Findings of lowering one rule: warnings, and reasons that disable the rule.
#[derive(Debug, Default)]
pub struct Findings {
    /// Non-fatal remarks (the rule still runs).
    pub warnings: Vec<String>,
    /// Why the rule cannot run (the rule is loaded disabled).
    pub disabled: Vec<String>,
    wildcard_warned: bool,
}

/// Lowers searches of one rule.
pub struct SearchLowering<'a> {
    /// Sigma field name → engine attribute name.
    pub fields: &'a HashMap<String, String>,
    /// Where the rule is (for attribute operands).
    pub pos: SourcePos,
    /// What was found.
    pub findings: Findings,
}

/// A value transformation modifier.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Base64,
    Base64Offset,
    Windash,
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The three encodings of `v` at byte offsets 0, 1 and 2 of a base64 stream, trimmed to
/// the characters that do not depend on the surrounding bytes (Sigma's `base64offset`).
pub fn base64_offsets(v: &str) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut data = vec![b' '; i];
            data.extend_from_slice(v.as_bytes());
            let enc = base64(&data);
            let end = enc.len().saturating_sub(END_TRIM[(v.len() + i) % 3]);
            enc.get(START[i]..end.max(START[i])).unwrap_or("").to_string()
        })
        .collect()
}

fn windash(v: &str) -> Vec<String> {
    let mut out = vec![v.to_string()];
    for alt in [v.replace('-', "/"), v.replace('/', "-")] {
        if !out.contains(&alt) {
            out.push(alt);
        }
    }
    out
}

fn or(mut v: Vec<Cond>) -> Cond {
    if v.len() == 1 {
        v.remove(0)
    } else {
        Cond::Or(v)
    }
}

fn and(mut v: Vec<Cond>) -> Cond {
    if v.len() == 1 {
        v.remove(0)
    } else {
        Cond::And(v)
    }
}

impl SearchLowering<'_> {
    /// A search: a map is the AND of its field matchers; a list of maps is the OR of the
    /// maps (upstream ANDs them); a plain value or list of values is a keyword search
    /// (unsupported: false, with a warning).
    pub fn search(&mut self, name: &str, y: &Yaml) -> Cond {
        match y {
            Yaml::Hash(h) => {
                if h.is_empty() {
                    self.findings.disabled.push(format!("search '{name}' is empty"));
                    return Cond::Const(false);
                }
                let mut parts = Vec::with_capacity(h.len());
                for (k, v) in h {
                    let Some(key) = scalar_text(k) else {
                        self.findings.disabled.push(format!("search '{name}' has a non-scalar key"));
                        return Cond::Const(false);
                    };
                    parts.push(self.field(name, &key, v));
                }
                and(parts)
            }
            Yaml::Array(items) if !items.is_empty() && items.iter().all(|i| matches!(i, Yaml::Hash(_))) => {
                or(items.iter().map(|i| self.search(name, i)).collect())
            }
            Yaml::Array(items) if items.iter().all(|i| scalar_text(i).is_some()) => self.keywords(name),
            Yaml::String(_) | Yaml::Integer(_) | Yaml::Real(_) | Yaml::Boolean(_) => self.keywords(name),
            _ => {
                self.findings.disabled.push(format!("search '{name}' is neither a map, a list of maps nor keywords"));
                Cond::Const(false)
            }
        }
    }

    fn keywords(&mut self, name: &str) -> Cond {
        self.findings
            .warnings
            .push(format!("search '{name}': keyword (value-only) searches are not supported; it is false (as upstream)"));
        Cond::Const(false)
    }

    fn name(&self, field: &str) -> Operand {
        let text = self.fields.get(field).cloned().unwrap_or_else(|| field.to_string());
        Operand::Name { text, pos: self.pos.clone() }
    }

    /// `Field|mod|mod: value(s)`.
    fn field(&mut self, search: &str, key: &str, value: &Yaml) -> Cond {
        let mut parts = key.split('|');
        let field = parts.next().unwrap_or("").trim();
        if field.is_empty() {
            return self.keywords(search);
        }
        let mut comparators: Vec<Op> = Vec::new();
        let mut transforms: Vec<Transform> = Vec::new();
        let mut all = false;
        let mut cased = false;
        let mut re_flags = String::new();
        let mut exists = false;
        for m in parts {
            match m.trim() {
                "contains" => comparators.push(Op::IContains),
                "startswith" => comparators.push(Op::IStartsWith),
                "endswith" => comparators.push(Op::IEndsWith),
                "re" => comparators.push(Op::Regex),
                "i" | "m" | "s" if comparators.contains(&Op::Regex) => re_flags.push_str(m.trim()),
                "lt" => comparators.push(Op::Lt),
                "lte" => comparators.push(Op::Le),
                "gt" => comparators.push(Op::Gt),
                "gte" => comparators.push(Op::Ge),
                "all" => all = true,
                "cased" => cased = true,
                "exists" => exists = true,
                "base64" => transforms.push(Transform::Base64),
                "base64offset" => transforms.push(Transform::Base64Offset),
                "windash" => transforms.push(Transform::Windash),
                // Sigma encodes these as UTF-16 for Windows logs; SysFlow values are UTF-8,
                // so (as upstream) they do not change the value.
                "wide" | "utf16" | "utf16le" | "utf16be" => {}
                "cidr" => {
                    self.findings.disabled.push(format!("modifier 'cidr' (field '{field}') is not supported"));
                    return Cond::Const(false);
                }
                other => {
                    self.findings.disabled.push(format!("unknown modifier '{other}' (field '{field}')"));
                    return Cond::Const(false);
                }
            }
        }
        if exists {
            let want = match value {
                Yaml::Boolean(b) => *b,
                other => scalar_text(other).is_some_and(|t| t.eq_ignore_ascii_case("true")),
            };
            let e = self.exists(field);
            return if want { e } else { Cond::Not(Box::new(e)) };
        }
        if comparators.is_empty() {
            comparators.push(Op::IEq);
        }
        if cased {
            for op in comparators.iter_mut() {
                *op = match *op {
                    Op::IEq => Op::Eq,
                    Op::IContains => Op::Contains,
                    Op::IStartsWith => Op::StartsWith,
                    Op::IEndsWith => Op::EndsWith,
                    o => o,
                };
            }
        }
        let values: Vec<Option<String>> = match value {
            Yaml::Array(a) => a.iter().map(|v| if matches!(v, Yaml::Null) { None } else { scalar_text(v) }).collect(),
            Yaml::Null => vec![None],
            v => match scalar_text(v) {
                Some(t) => vec![Some(t)],
                None => {
                    self.findings.disabled.push(format!("field '{field}': value is not a scalar or a list of scalars"));
                    return Cond::Const(false);
                }
            },
        };
        let mut per_value = Vec::with_capacity(values.len());
        for v in values {
            let Some(v) = v else {
                // `field: null`: the field is absent or empty.
                per_value.push(Cond::Not(Box::new(self.exists(field))));
                continue;
            };
            let regex = comparators.contains(&Op::Regex);
            if !regex && !self.findings.wildcard_warned && (v.contains('*') || v.contains('?')) {
                self.findings.wildcard_warned = true;
                self.findings.warnings.push(format!(
                    "field '{field}': value '{v}' contains '*' or '?', which are compared literally (as upstream), not as wildcards"
                ));
            }
            // Transformers apply in the order written, each to the previous one's output
            // (upstream applies each to the original value and ORs the results).
            let mut expanded = vec![v];
            for t in &transforms {
                expanded = expanded
                    .into_iter()
                    .flat_map(|x| match t {
                        Transform::Base64 => vec![base64(x.as_bytes())],
                        Transform::Base64Offset => base64_offsets(&x),
                        Transform::Windash => windash(&x),
                    })
                    .collect();
            }
            let alts: Vec<Cond> = expanded
                .into_iter()
                .map(|x| {
                    let cmps: Vec<Cond> = comparators
                        .iter()
                        .map(|&op| {
                            let lit = if op == Op::Regex && !re_flags.is_empty() { format!("(?{re_flags}){x}") } else { x.clone() };
                            Cond::Cmp { lhs: self.name(field), op, rhs: vec![Operand::Literal(lit)] }
                        })
                        .collect();
                    and(cmps)
                })
                .collect();
            per_value.push(or(alts));
        }
        if per_value.is_empty() {
            return Cond::Const(false);
        }
        if all {
            and(per_value)
        } else {
            or(per_value)
        }
    }

    /// `field exists`; a name that is neither an attribute nor attribute-like never exists.
    fn exists(&self, field: &str) -> Cond {
        let op = self.name(field);
        let text = op.text();
        let base = text.split_once('[').map(|(b, _)| b).unwrap_or(text);
        if attributes::lookup(text).is_none() && !attributes::looks_like_attribute(base) {
            return Cond::Const(false);
        }
        Cond::Exists(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base64offset_matches_sigma() {
        // Sigma's documented example: `/bin/bash` at the three offsets.
        assert_eq!(base64_offsets("/bin/bash"), vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]);
        // Each encoding is a substring of the base64 of the value at that offset.
        for pre in ["", "a", "ab", "abc"] {
            let s = format!("{pre}http://x");
            let enc = base64(s.as_bytes());
            assert!(base64_offsets("http://x").iter().any(|e| enc.contains(e.as_str())), "{pre}");
        }
    }

    #[test]
    fn windash_variants() {
        assert_eq!(windash("-enc"), vec!["-enc", "/enc"]);
        assert_eq!(windash("/c"), vec!["/c", "-c"]);
        assert_eq!(windash("x"), vec!["x"]);
    }
}
