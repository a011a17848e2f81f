//! Loads sfprocessor plugin libraries (`.so` files built against `sysflow-plugin-api`) and
//! watches plugin directories for new builds.
//!
//! Loading a library, in order:
//! 1. refuse the file if it, or its directory, is writable by group/others or owned by
//!    someone other than root or the current user (unless explicitly allowed);
//! 2. copy it to `<runtime dir>/<sha256>.so`, hashing the bytes on the way, and map that copy,
//!    so an operator copying a new build over the original cannot corrupt the running image;
//! 3. check that copy is a complete ELF shared object for this host (every segment and the
//!    section header table inside the file), so a truncated or half-written file is refused
//!    with a message instead of killing the process with SIGBUS once mapped;
//! 4. check the plugin-api version and abi_stable's type layouts before any of the plugin's
//!    entry points runs (ELF initialisers run at mapping time, as for any shared library);
//! 5. read the library's [`PluginDescriptor`]s.
//!
//! Libraries are never unloaded (abi_stable leaks them), so each distinct content maps one
//! more image; [`LoadOptions::max_loaded_images`] caps how many a process may accumulate.

mod elf_check;
mod error;
mod image;
mod permissions;
mod watcher;

use std::{
    collections::HashMap,
    fs::{self, File},
    io,
    path::{Path, PathBuf},
};

use abi_stable::{
    library::{lib_header_from_path, IsLayoutChecked, LibHeader, LibraryError, RootModule},
    sabi_types::VersionNumber,
};
use sysflow_plugin_api::{PluginDescriptor, PluginFactory, PluginLibraryRef};

pub use error::{layout_differences, LoadError};
pub use image::{loaded_image_count, sha256_file};
pub use watcher::{PluginEvent, PluginWatcher, WatchError, DEFAULT_DEBOUNCE};

/// Default for [`LoadOptions::max_loaded_images`].
pub const DEFAULT_MAX_LOADED_IMAGES: usize = 32;

/// How libraries are loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Load files whose mode or owner would otherwise be refused (development only).
    pub allow_insecure_permissions: bool,
    /// Where content-addressed copies are mapped from; `None` → [`default_runtime_dir`].
    /// Must not be on a `noexec` mount.
    pub runtime_dir: Option<PathBuf>,
    /// Most library images this process may map; loading new content beyond it is refused.
    pub max_loaded_images: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { allow_insecure_permissions: false, runtime_dir: None, max_loaded_images: DEFAULT_MAX_LOADED_IMAGES }
    }
}

impl LoadOptions {
    /// The runtime directory these options select.
    pub fn runtime_dir(&self) -> PathBuf {
        self.runtime_dir.clone().unwrap_or_else(default_runtime_dir)
    }
}

/// `$TMPDIR/sfprocessor-plugins-<uid>` (per user, so two users never share images).
pub fn default_runtime_dir() -> PathBuf {
    std::env::temp_dir().join(format!("sfprocessor-plugins-{}", permissions::euid()))
}

/// The plugin-api version this host speaks.
pub fn host_api_version() -> String {
    sysflow_plugin_api::ffi::api_version().into_string()
}

/// A library whose plugins can now be registered.
#[derive(Clone)]
pub struct LoadedLibrary {
    /// The file as the caller named it (what messages should show).
    pub path: PathBuf,
    /// Hex SHA-256 of the content that was mapped.
    pub sha256: String,
    /// The content-addressed copy that is actually mapped.
    pub image_path: PathBuf,
    /// plugin-api version the library was built against.
    pub plugin_api_version: String,
    /// The plugins it offers.
    pub descriptors: Vec<PluginDescriptor>,
    /// False when the same content was already mapped and its image was reused.
    pub new_image: bool,
}

impl std::fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plugins: Vec<String> =
            self.descriptors.iter().map(|d| format!("{} {}", plugin_kind(&d.factory), d.name)).collect();
        f.debug_struct("LoadedLibrary")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("plugin_api_version", &self.plugin_api_version)
            .field("plugins", &plugins)
            .field("new_image", &self.new_image)
            .finish()
    }
}

/// Lower-case kind of a plugin (`driver`, `processor`, `handler`, `action`).
pub fn plugin_kind(factory: &PluginFactory) -> &'static str {
    match factory {
        PluginFactory::Driver { .. } => "driver",
        PluginFactory::Processor { .. } => "processor",
        PluginFactory::Handler { .. } => "handler",
        PluginFactory::Action { .. } => "action",
    }
}

/// Loads one plugin library (see the crate documentation for the steps).
pub fn load_library(path: &Path, opts: &LoadOptions) -> Result<LoadedLibrary, LoadError> {
    load(path, opts, None)
}

/// [`load_library`], refusing before anything is mapped when the copy's content is not
/// `expected_sha256` (what a [`PluginWatcher`] reported after the file settled): a file
/// written to again since then is left for the next quiet period.
pub fn load_library_expecting(path: &Path, opts: &LoadOptions, expected_sha256: &str) -> Result<LoadedLibrary, LoadError> {
    load(path, opts, Some(expected_sha256))
}

fn load(path: &Path, opts: &LoadOptions, expected_sha256: Option<&str>) -> Result<LoadedLibrary, LoadError> {
    let io_err = |action: &'static str| move |source: io::Error| LoadError::Io { path: path.to_path_buf(), action, source };
    let resolved = fs::canonicalize(path).map_err(io_err("resolving the path"))?;
    if !opts.allow_insecure_permissions {
        // The file's own directory, and the directory of the name given when that is a
        // symlink: whoever can write there can point the link elsewhere.
        let file_dir = resolved.parent().map(Path::to_path_buf);
        if let Some(dir) = &file_dir {
            permissions::check_dir(path, dir)?;
        }
        if let Some(link_dir) = permissions::resolved_parent(path).filter(|d| file_dir.as_ref() != Some(d)) {
            permissions::check_dir(path, &link_dir)?;
        }
    }
    let mut file = File::open(&resolved).map_err(io_err("opening"))?;
    // Checked on the opened file, so the bytes read are those of the file that passed.
    let meta = file.metadata().map_err(io_err("reading its permissions"))?;
    if !meta.is_file() {
        return Err(LoadError::NotAPlugin { path: path.to_path_buf(), detail: "not a regular file".into() });
    }
    if !opts.allow_insecure_permissions {
        permissions::check(path, &resolved, &meta)?;
    }

    let runtime_dir = opts.runtime_dir();
    image::prepare_runtime_dir(&runtime_dir)?;
    let (sha, tmp_path) = image::copy_in(path, &mut file, &runtime_dir)?;
    drop(file);
    if let Some(expected) = expected_sha256.filter(|e| *e != sha) {
        let _ = fs::remove_file(&tmp_path);
        return Err(LoadError::ChangedSinceCheck { path: path.to_path_buf(), expected: expected.to_string(), found: sha });
    }
    // The copy, not the original: it is the file that gets mapped, and nobody else writes it.
    if let Err(problem) = image::check_copy(&tmp_path) {
        let _ = fs::remove_file(&tmp_path);
        return Err(elf_refusal(path, problem));
    }

    let mut table = image::table();
    if let Some(known) = table.by_sha.get(&sha).cloned() {
        let _ = fs::remove_file(&tmp_path);
        return from_mapped(path, sha, known, false);
    }
    if table.by_sha.len() >= opts.max_loaded_images {
        let _ = fs::remove_file(&tmp_path);
        return Err(LoadError::TooManyImages {
            path: path.to_path_buf(),
            loaded: table.by_sha.len(),
            max: opts.max_loaded_images,
        });
    }
    let image_path = image::install(&tmp_path, &runtime_dir, &sha)?;
    let header = match lib_header_from_path(&image_path) {
        Ok(h) => h,
        Err(e) => {
            // Nothing stayed mapped: abi_stable closes the library when the header is refused.
            let _ = fs::remove_file(&image_path);
            return Err(header_error(path, e));
        }
    };
    let outcome = check_and_init(header, image_path);
    table.by_sha.insert(sha.clone(), outcome.clone());
    from_mapped(path, sha, outcome, true)
}

fn elf_refusal(path: &Path, problem: elf_check::ElfProblem) -> LoadError {
    let path = path.to_path_buf();
    match problem {
        elf_check::ElfProblem::Io(source) => LoadError::Io { path, action: "reading the copy's ELF headers", source },
        elf_check::ElfProblem::NotElf => LoadError::NotAPlugin { path, detail: problem.to_string() },
        elf_check::ElfProblem::Truncated { .. } | elf_check::ElfProblem::Unsuitable(_) => {
            LoadError::BadElf { path, detail: problem.to_string() }
        }
    }
}

fn header_error(path: &Path, e: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    match e {
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            path,
            detail: "it exports no plugin root module (a plugin library lists its plugins with \
                     sysflow_plugin_api::export_plugins!)"
                .into(),
        },
        LibraryError::OpenError { err, .. } => LoadError::NotAPlugin { path, detail: err.to_string() },
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => LoadError::Incompatible {
            path,
            plugin_api: "unknown (the library was built with an incompatible abi_stable or compiler)".into(),
            host_api: host_api_version(),
            detail: e.to_string(),
        },
        other => LoadError::NotAPlugin { path, detail: other.to_string() },
    }
}

/// Runs every check that needs no plugin code, then the root module's constructor.
fn check_and_init(header: &'static LibHeader, image_path: PathBuf) -> image::Mapped {
    let consts = header.root_mod_consts();
    let plugin_api = header.version_strings().to_string();
    let host_name = <PluginLibraryRef as RootModule>::NAME;
    if consts.name().as_str() != host_name {
        return image::Mapped::Refused(image::Refusal::NotAPlugin(format!(
            "it is an abi_stable library of another kind (root module '{}', expected '{host_name}')",
            consts.name()
        )));
    }
    let host = <PluginLibraryRef as RootModule>::VERSION_STRINGS;
    let versions_match = match (VersionNumber::new(host), VersionNumber::new(header.version_strings())) {
        (Ok(h), Ok(p)) => h.major == p.major && (h.major != 0 || h.minor == p.minor),
        _ => false,
    };
    if matches!(consts.layout(), IsLayoutChecked::No) {
        return image::Mapped::Refused(image::Refusal::Incompatible {
            plugin_api,
            detail: "the library carries no type layout (exported with #[unsafe_no_layout_constant]), \
                     so the host cannot check it"
                .into(),
        });
    }
    // The layout check compares static data only; no plugin code runs before it passes.
    let layout = header.ensure_layout::<PluginLibraryRef>().err().map(|e| e.to_string());
    if !versions_match || layout.is_some() {
        return image::Mapped::Refused(image::Refusal::Incompatible { plugin_api, detail: layout.unwrap_or_default() });
    }
    match header.init_root_module::<PluginLibraryRef>() {
        Ok(module) => image::Mapped::Ready { module, image_path, plugin_api },
        Err(e @ (LibraryError::IncompatibleVersionNumber { .. } | LibraryError::AbiInstability(_))) => {
            image::Mapped::Refused(image::Refusal::Incompatible { plugin_api, detail: e.to_string() })
        }
        Err(e) => image::Mapped::Refused(image::Refusal::InitFailed(e.to_string())),
    }
}

fn from_mapped(path: &Path, sha256: String, mapped: image::Mapped, new_image: bool) -> Result<LoadedLibrary, LoadError> {
    let path = path.to_path_buf();
    match mapped {
        image::Mapped::Ready { module, image_path, plugin_api } => {
            let descriptors = (module.plugins())().into_vec();
            Ok(LoadedLibrary { path, sha256, image_path, plugin_api_version: plugin_api, descriptors, new_image })
        }
        image::Mapped::Refused(image::Refusal::Incompatible { plugin_api, detail }) => {
            Err(LoadError::Incompatible { path, plugin_api, host_api: host_api_version(), detail })
        }
        image::Mapped::Refused(image::Refusal::InitFailed(detail)) => Err(LoadError::InitFailed { path, detail }),
        image::Mapped::Refused(image::Refusal::NotAPlugin(detail)) => Err(LoadError::NotAPlugin { path, detail }),
    }
}

/// Loads every `*.so` in `dir`, in name order. A missing directory yields nothing (as
/// upstream ignores a missing `-driverdir`); an unreadable one is an error.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> (Vec<LoadedLibrary>, Vec<LoadError>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
        Err(source) => {
            return (Vec::new(), vec![LoadError::Io { path: dir.to_path_buf(), action: "listing the directory", source }])
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) if is_plugin_file_name(&e.path()) => files.push(e.path()),
            Ok(_) => {}
            Err(source) => errors.push(LoadError::Io { path: dir.to_path_buf(), action: "listing the directory", source }),
        }
    }
    files.sort();
    let mut loaded = Vec::new();
    for f in files {
        match load_library(&f, opts) {
            Ok(lib) => loaded.push(lib),
            Err(e) => errors.push(e),
        }
    }
    (loaded, errors)
}

/// Loads `<dir>/<name>.so`, how upstream finds a processor named in a pipeline file in
/// `-plugdir` (and a handler in `handlerlibpath`). `Ok(None)` when there is no such file,
/// so the caller can say the plugin is unknown.
pub fn load_named(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Option<LoadedLibrary>, LoadError> {
    // A name with a path separator would escape the plugin directory.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Ok(None);
    }
    let path = dir.join(format!("{name}.so"));
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        _ => load_library(&path, opts).map(Some),
    }
}

/// True for `name.so` (hidden files, such as editors' and installers' temporaries, excluded).
pub fn is_plugin_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    !name.starts_with('.') && name.len() > 3 && name.ends_with(".so")
}

/// Two loaded libraries offering a plugin of the same kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicatePlugin {
    /// Plugin kind (`processor`, …).
    pub kind: &'static str,
    /// Plugin name.
    pub name: String,
    /// The library that offered it first.
    pub first: PathBuf,
    /// The library that offered it again.
    pub second: PathBuf,
}

impl std::fmt::Display for DuplicatePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "two {} plugins are named '{}': one in {}, one in {}",
            self.kind,
            self.name,
            self.first.display(),
            self.second.display()
        )
    }
}

/// Every plugin name offered twice (same kind) across `libraries`, in load order.
pub fn duplicate_plugins(libraries: &[LoadedLibrary]) -> Vec<DuplicatePlugin> {
    let mut seen: HashMap<(&'static str, &str), &Path> = HashMap::new();
    let mut dups = Vec::new();
    for lib in libraries {
        for d in &lib.descriptors {
            let kind = plugin_kind(&d.factory);
            match seen.get(&(kind, d.name.as_str())) {
                Some(first) => dups.push(DuplicatePlugin {
                    kind,
                    name: d.name.as_str().to_string(),
                    first: first.to_path_buf(),
                    second: lib.path.clone(),
                }),
                None => {
                    seen.insert((kind, d.name.as_str()), &lib.path);
                }
            }
        }
    }
    dups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_file_names() {
        assert!(is_plugin_file_name(Path::new("/x/example.so")));
        assert!(!is_plugin_file_name(Path::new("/x/.example.so")));
        assert!(!is_plugin_file_name(Path::new("/x/.so")));
        assert!(!is_plugin_file_name(Path::new("/x/example.so.tmp")));
        assert!(!is_plugin_file_name(Path::new("/x/libfoo.so.1")));
    }

    #[test]
    fn named_lookups_stay_inside_the_directory() {
        let opts = LoadOptions::default();
        let dir = Path::new("/nonexistent-plugin-dir");
        assert!(load_named(dir, "../../etc/x", &opts).unwrap().is_none());
        assert!(load_named(dir, "missing", &opts).unwrap().is_none());
    }
}
