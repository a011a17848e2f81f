//! The Sigma front end (`language: sigma`): Sigma rule files (real YAML) and a backend
//! config's field mappings, lowered to the language-neutral [`crate::ir`].
//!
//! One engine rule per entry of a rule's `condition`. Upstream ignores `logsource`, so
//! every rule applies to every record type. A file that is not YAML or not a rule is
//! skipped with a warning (as upstream); a rule that uses something unsupported (`cidr`,
//! an unknown modifier, an undefined search identifier) is loaded disabled, with a
//! warning naming the rule and the reason.

pub mod condition;
pub mod document;
pub mod search;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use yaml_rust2::{Yaml, YamlLoader};

use crate::{
    error::{PolicyError, PolicyErrors, PolicyWarning},
    ir::{Cond, PolicySet, RuleDef},
    position::SourcePos,
    limits::Shape,
};
use condition::{glob_match, CondExpr, Selector};
use document::{scalar_text, DocError, SigmaDoc};
use search::SearchLowering;

/// A Sigma backend configuration: the field mappings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SigmaConfig {
    /// Sigma field name → engine attribute name (first target when the config lists several).
    pub fieldmappings: HashMap<String, String>,
}

fn config_error(path: &Path, message: String) -> PolicyError {
    PolicyError { pos: SourcePos { file: Arc::new(path.to_path_buf()), line: 0, col: 0 }, message, text: String::new() }
}

/// Reads a backend config file (only `fieldmappings` is used).
pub fn load_config(path: &Path) -> Result<SigmaConfig, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| config_error(path, format!("cannot read sigma config: {e}")))?;
    parse_config(&text).map_err(|m| config_error(path, m))
}

/// Parses backend config text.
pub fn parse_config(text: &str) -> Result<SigmaConfig, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("sigma config is not valid YAML: {e}"))?;
    let mut cfg = SigmaConfig::default();
    let Some(Yaml::Hash(root)) = docs.first() else {
        return Err("sigma config is not a YAML mapping".into());
    };
    match root.get(&Yaml::String("fieldmappings".into())) {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Hash(m)) => {
            for (k, v) in m {
                let target = match v {
                    Yaml::Array(a) => a.first().and_then(scalar_text),
                    v => scalar_text(v),
                };
                if let (Some(k), Some(t)) = (scalar_text(k), target) {
                    cfg.fieldmappings.insert(k, t);
                }
            }
        }
        Some(_) => return Err("sigma config: 'fieldmappings' is not a mapping".into()),
    }
    Ok(cfg)
}

/// Loads every `.yaml`/`.yml` rule file under `path` (or the file itself).
pub fn load(path: &Path, config: &SigmaConfig) -> Result<PolicySet, PolicyErrors> {
    let files = crate::falco::collect_files(path).map_err(PolicyErrors::one)?;
    let mut sources = Vec::with_capacity(files.len());
    let mut set = PolicySet::default();
    for f in files {
        match std::fs::read(&f) {
            Ok(bytes) => sources.push((f, String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => set.warnings.push(PolicyWarning {
                pos: SourcePos { file: Arc::new(f.clone()), line: 0, col: 0 },
                message: format!("Could not read input rule, skipped: {e}"),
            }),
        }
    }
    let loaded = load_sources(&sources, config);
    set.rules = loaded.rules;
    set.warnings.extend(loaded.warnings);
    set.files = loaded.files;
    Ok(set)
}

/// Loads rule texts held in memory (paths are used in messages).
pub fn load_sources(sources: &[(PathBuf, String)], config: &SigmaConfig) -> PolicySet {
    let mut set = PolicySet::default();
    for (path, text) in sources {
        let file = Arc::new(path.clone());
        set.files.push(path.clone());
        match document::parse(text) {
            Ok(doc) => lower_doc(&doc, &file, config, &mut set),
            Err(DocError::Syntax { line, col, message }) => set.warnings.push(PolicyWarning {
                pos: SourcePos { file, line, col },
                message: format!("Could not parse input rule, skipped: {message}"),
            }),
            Err(DocError::NotARule(why)) => set.warnings.push(PolicyWarning {
                pos: SourcePos { file, line: 1, col: 1 },
                message: format!("not a Sigma rule ({why}), skipped"),
            }),
        }
    }
    set
}

/// Priority ordinal of a Sigma `level`.
pub fn level_priority(level: &str) -> i32 {
    match level.trim().to_ascii_lowercase().as_str() {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

fn lower_doc(doc: &SigmaDoc, file: &Arc<PathBuf>, config: &SigmaConfig, set: &mut PolicySet) {
    let pos = SourcePos { file: file.clone(), line: doc.condition_line, col: 1 };
    let mut low = SearchLowering { fields: &config.fieldmappings, pos: pos.clone(), findings: Default::default() };
    let searches: Vec<(String, Cond)> = doc.searches.iter().map(|(n, y)| (n.clone(), low.search(n, y))).collect();
    let shapes: Vec<Shape> = searches.iter().map(|(_, c)| Shape::of(c)).collect();
    let search_findings = std::mem::take(&mut low.findings);
    for w in &search_findings.warnings {
        set.warnings.push(PolicyWarning { pos: pos.clone(), message: format!("rule '{}': {w}", doc.id) });
    }
    for text in &doc.conditions {
        let mut disabled = search_findings.disabled.clone();
        let cond = match condition::parse(text) {
            Ok(c) => {
                if let Some(agg) = &c.aggregation {
                    set.warnings.push(PolicyWarning {
                        pos: pos.clone(),
                        message: format!("rule '{}': aggregation '| {agg}' is not supported and ignored", doc.id),
                    });
                }
                let mut lowering = ExprLowering { searches: &searches, shapes: &shapes, size: Shape::default(), disabled: &mut disabled };
                let cond = lowering.lower(&c.expr);
                if let Some(why) = lowering.size.exceeded() {
                    // Stopped early (see `ExprLowering::search`): the rule cannot run.
                    disabled.push(why);
                    Cond::Const(false)
                } else {
                    cond
                }
            }
            Err(e) => {
                disabled.push(format!("condition '{text}': {e}"));
                Cond::Const(false)
            }
        };
        let enabled = disabled.is_empty();
        if !enabled {
            set.warnings.push(PolicyWarning {
                pos: pos.clone(),
                message: format!("rule '{}' disabled: {}", doc.id, disabled.join("; ")),
            });
        }
        set.rules.push(RuleDef {
            name: doc.id.clone(),
            desc: doc.description.clone(),
            priority: level_priority(&doc.level),
            tags: doc.tags.clone(),
            actions: Vec::new(),
            prefilter: Vec::new(),
            enabled,
            condition: cond,
            output: None,
            priority_word: None,
            pos: pos.clone(),
        });
    }
}

/// Lowers one condition expression, counting the searches it copies against the
/// expansion limits (`sel or sel or …` copies `sel` each time).
struct ExprLowering<'a> {
    searches: &'a [(String, Cond)],
    /// Shape of each search, by index.
    shapes: &'a [Shape],
    /// Nodes and elements copied so far.
    size: Shape,
    disabled: &'a mut Vec<String>,
}

impl ExprLowering<'_> {
    /// A copy of search `i`, or `false` once the copies exceed the limits (the rule is
    /// then disabled, without building the rest).
    fn search(&mut self, i: usize) -> Cond {
        let (Some((_, c)), Some(shape)) = (self.searches.get(i), self.shapes.get(i)) else { return Cond::Const(false) };
        self.size.nodes += shape.nodes;
        self.size.elements += shape.elements;
        self.size.depth = self.size.depth.max(shape.depth);
        if self.size.exceeded().is_some() {
            return Cond::Const(false);
        }
        c.clone()
    }

    /// Lowers a condition expression; an undefined search identifier, or a pattern that
    /// matches no search, disables the rule (upstream silently evaluates it as false, which
    /// hides typos).
    fn lower(&mut self, e: &CondExpr) -> Cond {
        match e {
            CondExpr::And(v) => Cond::And(v.iter().map(|x| self.lower(x)).collect()),
            CondExpr::Or(v) => Cond::Or(v.iter().map(|x| self.lower(x)).collect()),
            CondExpr::Not(x) => Cond::Not(Box::new(self.lower(x))),
            CondExpr::Search(n) => match self.searches.iter().position(|(s, _)| s == n) {
                Some(i) => self.search(i),
                None => {
                    self.disabled.push(format!("undefined search identifier '{n}'"));
                    Cond::Const(false)
                }
            },
            CondExpr::OneOf(sel) => {
                let mut v = self.select(sel);
                if v.len() == 1 { v.pop().unwrap_or(Cond::Const(false)) } else { Cond::Or(v) }
            }
            CondExpr::AllOf(sel) => {
                let mut v = self.select(sel);
                if v.len() == 1 { v.pop().unwrap_or(Cond::Const(false)) } else { Cond::And(v) }
            }
        }
    }

    /// Copies of the searches a quantifier ranges over.
    fn select(&mut self, sel: &Selector) -> Vec<Cond> {
        let picked: Vec<usize> = (0..self.searches.len())
            .filter(|&i| match sel {
                Selector::Them => true,
                Selector::Pattern(p) => glob_match(p, &self.searches[i].0),
            })
            .collect();
        if picked.is_empty() {
            self.disabled.push(match sel {
                Selector::Them => "'of them' with no searches".to_string(),
                Selector::Pattern(p) => format!("no search identifier matches '{p}'"),
            });
        }
        picked.into_iter().map(|i| self.search(i)).collect()
    }
}
