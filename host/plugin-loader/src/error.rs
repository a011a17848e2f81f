//! Why a plugin library was not loaded, worded for the operator who has to fix it.

use std::{fmt, io, path::PathBuf};

/// Longest abi_stable layout report kept in a message; the report lists every differing
/// type, and the first ones are enough to tell which part of the contract changed.
const MAX_LAYOUT_REPORT_LINES: usize = 40;

/// A plugin library that could not be loaded. Every variant names the file.
#[derive(Debug)]
pub enum LoadError {
    /// Reading, copying or hashing the file failed.
    Io {
        /// The file (or directory) involved.
        path: PathBuf,
        /// What the loader was doing.
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file or its directory can be written by someone other than its owner.
    InsecurePermissions {
        /// The plugin library as given.
        path: PathBuf,
        /// The file or directory whose mode is wrong.
        offender: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file or its directory belongs to neither root nor the user running sfprocessor.
    BadOwner {
        /// The plugin library as given.
        path: PathBuf,
        /// The file or directory whose owner is wrong.
        offender: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user running sfprocessor.
        euid: u32,
    },
    /// The runtime directory for library images is missing, unsafe or unwritable.
    RuntimeDir {
        /// The runtime directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a loadable shared library, or one without a sysflow plugin root module.
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's or abi_stable's explanation.
        detail: String,
    },
    /// Built against a plugin-api this host cannot talk to.
    Incompatible {
        /// The file.
        path: PathBuf,
        /// plugin-api version the library was built against.
        plugin_api: String,
        /// plugin-api version this host speaks.
        host_api: String,
        /// abi_stable's report (which type differed), if it had one.
        detail: String,
    },
    /// The library's root module failed to initialise (returned an error or panicked).
    InitFailed {
        /// The file.
        path: PathBuf,
        /// abi_stable's explanation.
        detail: String,
    },
    /// Loading would map more library images than allowed (images are never unmapped).
    TooManyImages {
        /// The file.
        path: PathBuf,
        /// Images mapped so far.
        loaded: usize,
        /// The cap (`LoadOptions::max_loaded_images`).
        max: usize,
    },
}

impl LoadError {
    /// The plugin library (or directory) the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::InsecurePermissions { path, .. }
            | LoadError::BadOwner { path, .. }
            | LoadError::NotAPlugin { path, .. }
            | LoadError::Incompatible { path, .. }
            | LoadError::InitFailed { path, .. }
            | LoadError::TooManyImages { path, .. } => path,
            LoadError::RuntimeDir { dir, .. } => dir,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, action, source } => {
                write!(f, "plugin library {}: {action}: {source}", path.display())
            }
            LoadError::InsecurePermissions { path, offender, mode } => write!(
                f,
                "refusing to load plugin library {}: bad permissions {mode:04o} on {}: writable by group or others \
                 (run `chmod go-w {}`, or allow insecure permissions explicitly)",
                path.display(),
                offender.display(),
                offender.display()
            ),
            LoadError::BadOwner { path, offender, owner, euid } => write!(
                f,
                "refusing to load plugin library {}: bad ownership of {}: owned by uid {owner}, \
                 expected root or the user running sfprocessor (uid {euid})",
                path.display(),
                offender.display()
            ),
            LoadError::RuntimeDir { dir, reason } => {
                write!(f, "plugin runtime directory {}: {reason}", dir.display())
            }
            LoadError::NotAPlugin { path, detail } => write!(
                f,
                "{} is not a sysflow plugin library: {}",
                path.display(),
                one_line(detail)
            ),
            LoadError::Incompatible { path, plugin_api, host_api, detail } => {
                write!(
                    f,
                    "plugin library {} is incompatible with this sfprocessor: it was built for plugin-api {plugin_api}, \
                     this host speaks plugin-api {host_api} (rebuild the plugin against sysflow-plugin-api {host_api})",
                    path.display()
                )?;
                let report = trimmed_report(detail);
                if !report.is_empty() {
                    write!(f, "\nlayout check:\n{report}")?;
                }
                Ok(())
            }
            LoadError::InitFailed { path, detail } => write!(
                f,
                "plugin library {} failed to initialise: {}",
                path.display(),
                one_line(detail)
            ),
            LoadError::TooManyImages { path, loaded, max } => write!(
                f,
                "refusing to load plugin library {}: {loaded} plugin library images are already mapped and \
                 libraries are never unloaded (max_loaded_images = {max}); restart sfprocessor to reclaim them",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// abi_stable's messages are laid out over several indented lines; a log line wants one.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn trimmed_report(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() <= MAX_LAYOUT_REPORT_LINES {
        return lines.join("\n");
    }
    format!(
        "{}\n… ({} more lines)",
        lines[..MAX_LAYOUT_REPORT_LINES].join("\n"),
        lines.len() - MAX_LAYOUT_REPORT_LINES
    )
}
