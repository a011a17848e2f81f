//! Why a plugin library was not loaded, worded for the operator who has to fix it.

use std::{fmt, io, path::PathBuf};

/// Longest raw abi_stable report kept in a message when it could not be summarised.
const MAX_LAYOUT_REPORT_LINES: usize = 40;

/// Differing types named in a message; the first few tell which part of the contract changed.
const MAX_LAYOUT_DIFFERENCES: usize = 6;

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
    /// Not a complete ELF shared library for this host (truncated, another machine, not
    /// ET_DYN): refused before the dynamic loader maps it.
    BadElf {
        /// The file.
        path: PathBuf,
        /// What is wrong, with byte offsets for a truncated file.
        detail: String,
    },
    /// The file's content differs from the content the caller expected (it changed after
    /// the plugin watcher saw it settle); nothing was mapped.
    ChangedSinceCheck {
        /// The file.
        path: PathBuf,
        /// Hex SHA-256 the caller expected.
        expected: String,
        /// Hex SHA-256 of the copy that was made.
        found: String,
    },
    /// Built against a plugin-api this host cannot talk to.
    Incompatible {
        /// The file.
        path: PathBuf,
        /// plugin-api version the library was built against.
        plugin_api: String,
        /// plugin-api version this host speaks.
        host_api: String,
        /// abi_stable's full report (thousands of lines: every type, both layouts);
        /// Display shows a summary of the differing types.
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
            | LoadError::BadElf { path, .. }
            | LoadError::ChangedSinceCheck { path, .. }
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
                 (run `chmod go-w {}`; for development only, `sfprocessor -allowinsecureplugins` skips this \
                 check for -driverdir, -plugdir and handlerlibpath libraries)",
                path.display(),
                offender.display(),
                offender.display()
            ),
            LoadError::BadOwner { path, offender, owner, euid } => write!(
                f,
                "refusing to load plugin library {}: bad ownership of {}: owned by uid {owner}, \
                 expected root or the user running sfprocessor, uid {euid} (run `chown root {}`; for development \
                 only, `sfprocessor -allowinsecureplugins` skips this check for -driverdir, -plugdir and \
                 handlerlibpath libraries)",
                path.display(),
                offender.display(),
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
            LoadError::BadElf { path, detail } => {
                write!(f, "refusing to load plugin library {}: {detail}", path.display())
            }
            LoadError::ChangedSinceCheck { path, expected, found } => write!(
                f,
                "plugin library {} changed after it was checked (sha256 {} now, {} when its writes settled): \
                 still being written? it is loaded once it stays unchanged",
                path.display(),
                short_hash(found),
                short_hash(expected)
            ),
            LoadError::Incompatible { path, plugin_api, host_api, detail } => {
                write!(
                    f,
                    "plugin library {} is incompatible with this sfprocessor: it was built for plugin-api {plugin_api}, \
                     this host speaks plugin-api {host_api}",
                    path.display()
                )?;
                if plugin_api == host_api {
                    f.write_str(", but its types differ (was plugin-api modified?)")?;
                }
                write!(f, " (rebuild the plugin against the released sysflow-plugin-api {host_api})")?;
                let differences = layout_differences(detail);
                if !differences.is_empty() {
                    let shown = differences.len().min(MAX_LAYOUT_DIFFERENCES);
                    write!(f, "; layout check: {}", differences[..shown].join("; "))?;
                    if differences.len() > shown {
                        write!(f, "; … and {} more", differences.len() - shown)?;
                    }
                } else if !detail.trim().is_empty() {
                    write!(f, "; layout check: {}", one_line(&trimmed_report(detail)))?;
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

fn short_hash(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
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

/// Summarises abi_stable's layout report as "`Type`: what differs (expected X, found Y)",
/// one entry per differing type, in report order. The report prints, for each difference,
/// "Layout of expected type:" followed by the type, then "Error:<what>", "Expected:", "Found:".
pub fn layout_differences(report: &str) -> Vec<String> {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let mut out: Vec<String> = Vec::new();
    let mut current_type: Option<&str> = None;
    let mut awaiting_type = false;
    for (i, line) in lines.iter().enumerate() {
        if *line == "Layout of expected type:" {
            awaiting_type = true;
        } else if let Some(ty) = line.strip_prefix("type:").filter(|_| awaiting_type) {
            current_type = Some(ty);
            awaiting_type = false;
        } else if let Some(what) = line.strip_prefix("Error:") {
            let value_after = |label: &str, at: usize| {
                (lines.get(at) == Some(&label)).then(|| lines.get(at + 1).copied()).flatten()
            };
            let mut entry = format!("`{}`: {what}", current_type.unwrap_or("?"));
            if let (Some(e), Some(f)) = (value_after("Expected:", i + 1), value_after("Found:", i + 3)) {
                entry.push_str(&format!(" (expected {e}, found {f})"));
            }
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}
