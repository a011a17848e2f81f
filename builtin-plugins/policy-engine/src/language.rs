//! Which front end reads a policy path (`language` key), with what that front end needs.

use std::path::Path;

use crate::{error::PolicyErrors, falco, ir::PolicySet, sigma};

/// A policy language and its loader settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PolicyLanguage {
    /// Upstream's Falco-syntax policies (the default).
    #[default]
    Falco,
    /// Sigma rules, with the backend config's field mappings (read once, at start-up).
    Sigma(sigma::SigmaConfig),
}

impl PolicyLanguage {
    /// Sigma with the field mappings of the backend config at `config` (none: names verbatim).
    pub fn sigma(config: Option<&Path>) -> Result<PolicyLanguage, PolicyErrors> {
        let cfg = match config {
            Some(p) => sigma::load_config(p).map_err(PolicyErrors::one)?,
            None => sigma::SigmaConfig::default(),
        };
        Ok(PolicyLanguage::Sigma(cfg))
    }

    /// The language of a policy engine block from its `language` and `config` keys, as
    /// the processor reads them (so `-listrules` and the engine agree): absent or `falco`
    /// → Falco; `sigma` → Sigma with the config's field mappings (absent or empty config:
    /// none); anything else → Falco, returned with a warning message. Errors name the key.
    pub fn from_keys(language: Option<&str>, config: Option<&str>) -> Result<(PolicyLanguage, Option<String>), String> {
        match language {
            None | Some("falco") => Ok((PolicyLanguage::Falco, None)),
            Some("sigma") => {
                let cfg = config.filter(|c| !c.is_empty()).map(Path::new);
                let warning = cfg
                    .is_none()
                    .then(|| "key 'config': no sigma backend config given; sigma field names are used verbatim".to_string());
                let lang = PolicyLanguage::sigma(cfg).map_err(|e| format!("key 'config': {e}"))?;
                Ok((lang, warning))
            }
            Some(other) => {
                Ok((PolicyLanguage::Falco, Some(format!("key 'language': unknown language '{other}', using falco (as upstream)"))))
            }
        }
    }

    /// The language's name as written in the `language` key.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyLanguage::Falco => "falco",
            PolicyLanguage::Sigma(_) => "sigma",
        }
    }

    /// Reads the policy file or directory at `path` with this language's front end.
    pub fn load(&self, path: &Path) -> Result<PolicySet, PolicyErrors> {
        match self {
            PolicyLanguage::Falco => falco::load(path),
            PolicyLanguage::Sigma(cfg) => sigma::load(path, cfg),
        }
    }
}
