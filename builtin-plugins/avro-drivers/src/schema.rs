//! Avro writer schemas, parsed from their JSON text into a type tree.
//!
//! Only what decoding needs is kept: structure, record/field names and enum symbols.
//! Logical types are dropped on purpose: old SysFlow files annotate nanosecond values
//! with `timestamp-millis`, so the raw long is what we want.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{DecodeError, ErrorKind};

/// A writer type.
#[derive(Clone, Debug)]
pub(crate) enum WType {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed { size: usize },
    Enum { symbols: Vec<String> },
    Array(Box<WType>),
    Map(Box<WType>),
    Union(Vec<WType>),
    Record(WRecord),
}

/// A writer record: full name and fields in writer order.
#[derive(Clone, Debug)]
pub(crate) struct WRecord {
    pub full_name: String,
    pub fields: Vec<(String, WType)>,
}

impl WRecord {
    /// The name without namespace.
    pub fn short_name(&self) -> &str {
        self.full_name.rsplit('.').next().unwrap_or(&self.full_name)
    }
}

fn schema_err(msg: impl Into<String>) -> DecodeError {
    DecodeError::new(ErrorKind::Schema, msg)
}

/// Parses a schema JSON text.
pub(crate) fn parse(json: &str) -> Result<WType, DecodeError> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| schema_err(format!("writer schema is not valid JSON: {e}")))?;
    let mut parser = Parser { named: HashMap::new(), in_progress: Vec::new() };
    parser.parse(&value, "")
}

struct Parser {
    /// Completed named types by full name.
    named: HashMap<String, WType>,
    /// Records being defined (a reference to one would be a recursive type).
    in_progress: Vec<String>,
}

impl Parser {
    fn parse(&mut self, v: &Value, ns: &str) -> Result<WType, DecodeError> {
        match v {
            Value::String(name) => self.by_name(name, ns),
            Value::Array(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push(self.parse(b, ns)?);
                }
                Ok(WType::Union(out))
            }
            Value::Object(obj) => self.parse_object(obj, ns),
            other => Err(schema_err(format!("unexpected schema element {other}"))),
        }
    }

    fn by_name(&self, name: &str, ns: &str) -> Result<WType, DecodeError> {
        let prim = match name {
            "null" => Some(WType::Null),
            "boolean" => Some(WType::Boolean),
            "int" => Some(WType::Int),
            "long" => Some(WType::Long),
            "float" => Some(WType::Float),
            "double" => Some(WType::Double),
            "bytes" => Some(WType::Bytes),
            "string" => Some(WType::String),
            _ => None,
        };
        if let Some(p) = prim {
            return Ok(p);
        }
        let full = full_name(name, ns);
        if self.in_progress.iter().any(|n| *n == full || *n == name) {
            return Err(schema_err(format!("recursive type '{full}' is not supported")));
        }
        if let Some(t) = self.named.get(&full).or_else(|| self.named.get(name)) {
            return Ok(t.clone());
        }
        // Lenient fallback: a unique match on the short name.
        let short = name.rsplit('.').next().unwrap_or(name);
        let mut found = self.named.iter().filter(|(k, _)| k.rsplit('.').next() == Some(short));
        match (found.next(), found.next()) {
            (Some((_, t)), None) => Ok(t.clone()),
            _ => Err(schema_err(format!("unknown type name '{name}'"))),
        }
    }

    fn parse_object(&mut self, obj: &Map<String, Value>, ns: &str) -> Result<WType, DecodeError> {
        let ty = obj.get("type").ok_or_else(|| schema_err("schema object without 'type'"))?;
        let ty = match ty {
            Value::String(s) => s.as_str(),
            // `{"type": {...}}` or `{"type": [...]}`: the nested element is the type.
            nested => return self.parse(nested, ns),
        };
        match ty {
            "record" | "error" => self.parse_record(obj, ns),
            "enum" => {
                let (full, _) = self.name_of(obj, ns)?;
                let symbols = obj
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or_else(|| schema_err(format!("enum '{full}' without symbols")))?
                    .iter()
                    .map(|s| s.as_str().map(str::to_string).ok_or_else(|| schema_err(format!("enum '{full}': non-string symbol"))))
                    .collect::<Result<Vec<_>, _>>()?;
                let t = WType::Enum { symbols };
                self.named.insert(full, t.clone());
                Ok(t)
            }
            "fixed" => {
                let (full, _) = self.name_of(obj, ns)?;
                let size = obj
                    .get("size")
                    .and_then(Value::as_u64)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| schema_err(format!("fixed '{full}' without a valid size")))?;
                let t = WType::Fixed { size };
                self.named.insert(full, t.clone());
                Ok(t)
            }
            "array" => {
                let items = obj.get("items").ok_or_else(|| schema_err("array without 'items'"))?;
                Ok(WType::Array(Box::new(self.parse(items, ns)?)))
            }
            "map" => {
                let values = obj.get("values").ok_or_else(|| schema_err("map without 'values'"))?;
                Ok(WType::Map(Box::new(self.parse(values, ns)?)))
            }
            // A primitive (possibly with a logicalType, which is ignored) or a named reference.
            name => self.by_name(name, ns),
        }
    }

    /// Full name and namespace of a named type definition.
    fn name_of(&self, obj: &Map<String, Value>, ns: &str) -> Result<(String, String), DecodeError> {
        let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| schema_err("named type without 'name'"))?;
        if name.contains('.') {
            let space = name.rsplit_once('.').map(|(a, _)| a.to_string()).unwrap_or_default();
            return Ok((name.to_string(), space));
        }
        let space = obj.get("namespace").and_then(Value::as_str).unwrap_or(ns);
        Ok((full_name(name, space), space.to_string()))
    }

    fn parse_record(&mut self, obj: &Map<String, Value>, ns: &str) -> Result<WType, DecodeError> {
        let (full, space) = self.name_of(obj, ns)?;
        let fields_json = obj
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| schema_err(format!("record '{full}' without 'fields'")))?;
        self.in_progress.push(full.clone());
        let mut fields = Vec::with_capacity(fields_json.len());
        for f in fields_json {
            let fname = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| schema_err(format!("record '{full}': field without a name")))?;
            let ftype = f
                .get("type")
                .ok_or_else(|| schema_err(format!("record '{full}': field '{fname}' without a type")))?;
            let t = self
                .parse(ftype, &space)
                .map_err(|e| schema_err(format!("record '{full}', field '{fname}': {}", e.message())))?;
            fields.push((fname.to_string(), t));
        }
        self.in_progress.pop();
        let t = WType::Record(WRecord { full_name: full.clone(), fields });
        self.named.insert(full, t.clone());
        Ok(t)
    }
}

fn full_name(name: &str, ns: &str) -> String {
    if name.contains('.') || ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}
