//! `<PROCESSOR>_<KEY>=value` environment overrides, exactly as upstream applies them.
//!
//! For every variable: lower-case the name, split it at the first `_` into a processor
//! name and a key, turn the key's remaining `_` into `.`, and set that key (a string) in
//! every pipeline block whose `processor` equals the prefix. Driver entries are not touched.

use serde_json::Value;

use crate::pipeline_config::RawConfig;

/// One applied override, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Index of the block in `pipeline`.
    pub index: usize,
    /// Processor name.
    pub processor: String,
    /// Key set.
    pub key: String,
    /// Variable it came from.
    pub variable: String,
}

/// Applies the overrides in `vars` to the raw pipeline entries; returns what was set.
pub fn apply<I>(raw: &mut RawConfig, vars: I) -> Vec<Applied>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut applied = Vec::new();
    for (name, value) in vars {
        let lower = name.to_lowercase();
        let Some((prefix, rest)) = lower.split_once('_') else {
            continue;
        };
        if prefix.is_empty() || rest.is_empty() {
            continue;
        }
        let key = rest.replace('_', ".");
        for (index, entry) in raw.pipeline.iter_mut().enumerate() {
            let Value::Object(map) = entry else { continue };
            let matches = matches!(map.get("processor"), Some(Value::String(p)) if p == prefix);
            if matches {
                map.insert(key.clone(), Value::String(value.clone()));
                applied.push(Applied {
                    index,
                    processor: prefix.to_string(),
                    key: key.clone(),
                    variable: name.clone(),
                });
            }
        }
    }
    applied
}

/// The process environment, skipping variables that are not valid Unicode.
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline_config::parse_str;

    #[test]
    fn spec_examples() {
        let mut raw = parse_str(
            r#"{"pipeline":[{"processor":"policyengine","in":"f flattenerchan","mode":"alert"},
                {"processor":"exporter","in":"e eventchan"},{"processor":"exporter","in":"g eventchan"}]}"#,
        )
        .expect("parse");
        let vars = [
            ("POLICYENGINE_MODE", "enrich"),
            ("POLICYENGINE_MONITOR_INTERVAL", "10"),
            ("EXPORTER_FILE_PATH", "/tmp/o.json"),
            ("PATH", "/bin"),
            ("HOME_DIR", "/x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let applied = apply(&mut raw, vars);
        assert_eq!(applied.len(), 4);
        assert_eq!(raw.pipeline[0]["mode"], "enrich");
        assert_eq!(raw.pipeline[0]["monitor.interval"], "10");
        assert_eq!(raw.pipeline[1]["file.path"], "/tmp/o.json");
        assert_eq!(raw.pipeline[2]["file.path"], "/tmp/o.json");
    }
}
