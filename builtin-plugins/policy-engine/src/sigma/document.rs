//! A Sigma rule file read as YAML into the parts the engine uses.

use yaml_rust2::{Yaml, YamlLoader};

/// The parts of one Sigma rule the engine uses.
#[derive(Debug, Clone)]
pub struct SigmaDoc {
    /// `title`.
    pub title: String,
    /// `id` (the engine rule name; falls back to the title).
    pub id: String,
    /// `description`.
    pub description: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `level`.
    pub level: String,
    /// The named searches of `detection`, in file order.
    pub searches: Vec<(String, Yaml)>,
    /// `detection.condition`: one entry per engine rule.
    pub conditions: Vec<String>,
    /// 1-based line of `detection.condition` (best effort: found by text search).
    pub condition_line: u32,
}

/// Why a file yields no rule.
#[derive(Debug, Clone, PartialEq)]
pub enum DocError {
    /// Not YAML (message carries the parser's line and column).
    Syntax { line: u32, col: u32, message: String },
    /// YAML, but not a Sigma rule (no `detection`/`condition`, wrong shapes).
    NotARule(String),
}

/// Scalar YAML as text (Sigma values may be written as numbers or booleans).
pub fn scalar_text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(map: &'a yaml_rust2::yaml::Hash, key: &str) -> Option<&'a Yaml> {
    map.get(&Yaml::String(key.to_string()))
}

/// Parses one rule file's text. Several YAML documents in one file (Sigma rule
/// collections) are not supported: only the first is read.
pub fn parse(text: &str) -> Result<SigmaDoc, DocError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| DocError::Syntax {
        line: e.marker().line() as u32,
        col: e.marker().col() as u32 + 1,
        message: e.info().to_string(),
    })?;
    let Some(Yaml::Hash(root)) = docs.into_iter().next() else {
        return Err(DocError::NotARule("the document is not a mapping".into()));
    };
    let text_of = |k: &str| get(&root, k).and_then(scalar_text).unwrap_or_default();
    let title = text_of("title");
    let mut id = text_of("id");
    if id.is_empty() {
        id = title.clone();
    }
    let tags = match get(&root, "tags") {
        Some(Yaml::Array(a)) => a.iter().filter_map(scalar_text).collect(),
        Some(y) => scalar_text(y).into_iter().collect(),
        None => Vec::new(),
    };
    let Some(Yaml::Hash(det)) = get(&root, "detection") else {
        return Err(DocError::NotARule("no 'detection' section".into()));
    };
    let conditions: Vec<String> = match get(det, "condition") {
        Some(Yaml::Array(a)) => a.iter().filter_map(scalar_text).collect(),
        Some(y) => scalar_text(y).into_iter().collect(),
        None => Vec::new(),
    };
    if conditions.is_empty() {
        return Err(DocError::NotARule("no 'detection.condition'".into()));
    }
    let mut searches = Vec::new();
    for (k, v) in det {
        let Some(name) = scalar_text(k) else { continue };
        if name == "condition" || name == "timeframe" {
            continue;
        }
        searches.push((name, v.clone()));
    }
    let condition_line = text
        .lines()
        .position(|l| l.trim_start().starts_with("condition:"))
        .map(|i| i as u32 + 1)
        .unwrap_or(1);
    Ok(SigmaDoc {
        title,
        id,
        description: text_of("description"),
        tags,
        level: text_of("level"),
        searches,
        conditions,
        condition_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parts() {
        let d = parse(
            "title: T\nid: abc\ndescription: D\ntags: [a.b, c]\nlevel: high\ndetection:\n  sel:\n    Image: x\n  condition:\n    - sel\n    - not sel\n",
        )
        .unwrap();
        assert_eq!((d.id.as_str(), d.description.as_str(), d.level.as_str()), ("abc", "D", "high"));
        assert_eq!(d.tags, vec!["a.b", "c"]);
        assert_eq!(d.conditions, vec!["sel", "not sel"]);
        assert_eq!(d.searches.len(), 1);
        assert_eq!(d.condition_line, 9);
    }

    #[test]
    fn id_falls_back_to_title_and_errors_are_typed() {
        let d = parse("title: T\ndetection:\n  s: {a: 1}\n  condition: s\n").unwrap();
        assert_eq!(d.id, "T");
        assert!(matches!(parse("title: T\n"), Err(DocError::NotARule(_))));
        assert!(matches!(parse("title: T\ndetection:\n  s: {a: 1}\n"), Err(DocError::NotARule(_))));
        match parse("a: [\nb: 1\n  - c") {
            Err(DocError::Syntax { line, .. }) => assert!(line >= 1),
            other => panic!("{other:?}"),
        }
    }
}
