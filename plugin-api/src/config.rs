//! A plugin's configuration: the pipeline block's keys, as upstream writes them (string values).

use std::{fmt::Display, str::FromStr};

use serde_json::{Map, Value};

use crate::error::PluginError;

/// The keys of one pipeline block (or `drivers` entry), after environment overrides.
///
/// Upstream pipeline values are strings; the typed getters parse them and their errors name
/// the key and the value:
///
/// ```
/// use sysflow_plugin_api::PluginConfig;
///
/// let config = PluginConfig::from_json(r#"{"mystage.limit": "250", "mystage.mode": "fast"}"#)?;
/// assert_eq!(config.parse_or::<u64>("mystage.limit", 100)?, 250);
/// assert_eq!(config.str_or("mystage.mode", "slow")?, "fast");
/// assert_eq!(config.parse_or::<u64>("mystage.absent", 100)?, 100);
///
/// let bad = PluginConfig::from_json(r#"{"mystage.limit": "many"}"#)?;
/// let err = bad.parse::<u64>("mystage.limit").unwrap_err();
/// assert!(err.message.contains("key 'mystage.limit': invalid value 'many'"));
/// # Ok::<(), sysflow_plugin_api::PluginError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    map: Map<String, Value>,
}

impl PluginConfig {
    /// Parses the JSON object the host passes across the ABI.
    pub fn from_json(json: &str) -> Result<PluginConfig, PluginError> {
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => Ok(PluginConfig { map }),
            Ok(_) => Err(PluginError::new("plugin configuration must be a JSON object")),
            Err(e) => Err(PluginError::new(format!("plugin configuration is not valid JSON: {e}"))),
        }
    }

    /// Wraps an already parsed object.
    pub fn from_map(map: Map<String, Value>) -> PluginConfig {
        PluginConfig { map }
    }

    /// The underlying JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Serialises the configuration for the ABI.
    pub fn to_json(&self) -> String {
        Value::Object(self.map.clone()).to_string()
    }

    /// A string value; an error naming the key if the value is present but not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(PluginError::new(format!(
                "key '{key}': expected a string value (upstream pipeline values are strings), found {other}"
            ))),
        }
    }

    /// A string value or a default.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, PluginError> {
        Ok(self.str(key)?.unwrap_or(default))
    }

    /// A string value parsed with `FromStr`; the error names the key and the value.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, PluginError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| PluginError::new(format!("key '{key}': invalid value '{s}': {e}"))),
        }
    }

    /// A parsed value or a default.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, PluginError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// A raw JSON value (for the few keys that are objects or arrays, e.g. `kafka.config`).
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }
}
