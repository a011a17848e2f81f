//! Content-addressed copies of plugin libraries, and the process-wide table of mapped images.
//!
//! The dynamic loader maps a library's file; if an operator later copies a new build over
//! that file, the mapped pages change under the running code and the host crashes. So the
//! loader never maps the operator's file: it copies it to `<runtime dir>/<sha256>.so`, a
//! file nobody else writes, and maps that. The same content is mapped once per process;
//! a new content gets a new path, hence a fresh image beside the old one (which stays
//! mapped: abi_stable never unloads libraries). The copy is checked to be a complete ELF
//! shared object before it is installed under its final name and mapped.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use sha2::{Digest, Sha256};
use sysflow_plugin_api::PluginLibraryRef;

use crate::{
    elf_check::{self, ElfProblem},
    permissions, LoadError,
};

/// Hex SHA-256 of everything `reader` yields, copying it to `sink` on the way.
pub fn hash_copy(reader: &mut impl Read, mut sink: Option<&mut File>) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(out) = sink.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    hash_copy(&mut File::open(path)?, None)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Creates the runtime directory (mode 0700) or checks an existing one: it holds the images
/// the host maps, so it gets the same ownership and mode rule as a plugin directory.
pub fn prepare_runtime_dir(dir: &Path) -> Result<(), LoadError> {
    let err = |reason: String| LoadError::RuntimeDir { dir: dir.to_path_buf(), reason };
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(err(format!("cannot create it: {e}"))),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| err(format!("cannot inspect it: {e}")))?;
    if !meta.is_dir() {
        return Err(err("not a directory (a symlink is not accepted here)".into()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(err(format!("bad permissions {mode:04o}: writable by group or others")));
    }
    let owner = meta.uid();
    let me = permissions::euid();
    if owner != 0 && owner != me {
        return Err(err(format!("owned by uid {owner}, expected root or uid {me}")));
    }
    Ok(())
}

/// Copies `source` (already opened and checked) to a private temporary file in
/// `runtime_dir`, hashing it on the way (one read: what is hashed is what gets mapped).
/// Returns the hash and the temporary file.
pub fn copy_in(library: &Path, source: &mut File, runtime_dir: &Path) -> Result<(String, PathBuf), LoadError> {
    let tmp_path = runtime_dir.join(format!(".incoming-{}-{}.tmp", std::process::id(), unique()));
    let mut tmp = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(|source| LoadError::Io {
            path: tmp_path.clone(),
            action: "creating a copy in the runtime directory",
            source,
        })?;
    match hash_copy(source, Some(&mut tmp)).and_then(|sha| tmp.sync_all().map(|()| sha)) {
        Ok(sha) => Ok((sha, tmp_path)),
        Err(source) => {
            let _ = fs::remove_file(&tmp_path);
            Err(LoadError::Io { path: library.to_path_buf(), action: "copying to the runtime directory", source })
        }
    }
}

/// Checks a copy made by [`copy_in`] is a complete ELF shared object for this host.
pub fn check_copy(tmp_path: &Path) -> Result<(), ElfProblem> {
    let copy = File::open(tmp_path).map_err(ElfProblem::Io)?;
    elf_check::check(&copy)
}

/// Moves a copy made by [`copy_in`] to its content-addressed name `<sha256>.so`, read-only.
pub fn install(tmp_path: &Path, runtime_dir: &Path, sha: &str) -> Result<PathBuf, LoadError> {
    let final_path = runtime_dir.join(format!("{sha}.so"));
    // Read-only: nothing may change a file the process has mapped.
    let finish = fs::set_permissions(tmp_path, fs::Permissions::from_mode(0o500))
        .and_then(|()| fs::rename(tmp_path, &final_path));
    if let Err(source) = finish {
        let _ = fs::remove_file(tmp_path);
        return Err(LoadError::Io {
            path: final_path,
            action: "installing the copy in the runtime directory",
            source,
        });
    }
    Ok(final_path)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What became of a library content the process already tried to map.
#[derive(Clone)]
pub enum Mapped {
    /// Mapped and initialised.
    Ready {
        /// The library's root module.
        module: PluginLibraryRef,
        /// Where the image was mapped from.
        image_path: PathBuf,
        /// plugin-api version the library was built against.
        plugin_api: String,
    },
    /// Mapped but refused; retrying the same content would only map it again.
    Refused(Refusal),
}

/// Why a mapped image was refused (kept so the same content is refused again without remapping).
#[derive(Clone)]
pub enum Refusal {
    /// Built against another plugin-api, or its layouts differ.
    Incompatible {
        /// plugin-api version the library was built against.
        plugin_api: String,
        /// abi_stable's report.
        detail: String,
    },
    /// The root module's constructor failed.
    InitFailed(String),
    /// An abi_stable library, but not a sysflow plugin.
    NotAPlugin(String),
}

/// Mapped images by content hash. Also counts refused images: they stay mapped too.
pub struct ImageTable {
    /// Hash → outcome.
    pub by_sha: BTreeMap<String, Mapped>,
}

static TABLE: Mutex<ImageTable> = Mutex::new(ImageTable { by_sha: BTreeMap::new() });

/// Locks the process-wide table; a poisoned lock still holds a consistent map (entries are
/// inserted whole), so it is recovered rather than propagated.
pub fn table() -> MutexGuard<'static, ImageTable> {
    TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Number of plugin library images mapped into this process.
pub fn loaded_image_count() -> usize {
    table().by_sha.len()
}
