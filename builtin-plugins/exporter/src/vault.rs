//! Credentials read from secret files (`vault.secrets: "true"`), as upstream reads them:
//! a file named after the key in `vault.path`, whitespace-trimmed, base64-decoded when
//! `vault.encoding` is `base64`.

use std::path::{Path, PathBuf};

use base64::Engine;
use sysflow_plugin_api::PluginConfig;

/// Where secret files are read from unless `vault.path` says otherwise.
pub const DEFAULT_VAULT_PATH: &str = "/run/secrets";

/// The secret-file settings of an exporter.
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
    base64: bool,
}

impl Vault {
    /// The vault configured by `vault.*`, or `None` unless `vault.secrets` is `"true"`.
    pub fn from_config(config: &PluginConfig) -> Result<Option<Vault>, String> {
        let enabled = config.str_or("vault.secrets", "false").map_err(|e| e.to_string())?;
        if enabled != "true" {
            return Ok(None);
        }
        let dir = PathBuf::from(config.str_or("vault.path", DEFAULT_VAULT_PATH).map_err(|e| e.to_string())?);
        let base64 = match config.str_or("vault.encoding", "none").map_err(|e| e.to_string())? {
            "none" | "" => false,
            "base64" => true,
            other => return Err(format!("key 'vault.encoding': unknown encoding '{other}' (use none or base64)")),
        };
        Ok(Some(Vault { dir, base64 }))
    }

    /// The secret named `name` (e.g. `es.password`).
    pub fn read(&self, name: &str) -> Result<String, String> {
        read_secret(&self.dir.join(name), self.base64)
    }
}

fn read_secret(path: &Path, base64: bool) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("secret file {}: {e}", path.display()))?;
    let text = text.trim();
    if !base64 {
        return Ok(text.to_string());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("secret file {}: not valid base64 (vault.encoding is base64): {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| format!("secret file {}: decoded value is not UTF-8: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_decoded_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("es.username"), "elastic\n").expect("write");
        std::fs::write(dir.path().join("es.password"), " Y2hhbmdlbWU= \n").expect("write");
        let plain = Vault { dir: dir.path().to_path_buf(), base64: false };
        assert_eq!(plain.read("es.username").as_deref(), Ok("elastic"));
        let b64 = Vault { dir: dir.path().to_path_buf(), base64: true };
        assert_eq!(b64.read("es.password").as_deref(), Ok("changeme"));
        let err = b64.read("es.username").expect_err("not base64");
        assert!(err.contains("es.username") && err.contains("base64"), "{err}");
        let err = plain.read("missing").expect_err("no file");
        assert!(err.contains(&dir.path().join("missing").display().to_string()), "{err}");
    }
}
