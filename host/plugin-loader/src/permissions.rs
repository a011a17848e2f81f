//! The ownership and mode rule for plugin libraries, as sshd's `StrictModes` applies it to
//! key files: loading a library runs its code as sfprocessor's user, so only that user or
//! root may be able to change it.

use std::{
    fs::Metadata,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::LoadError;

/// Mode bits that let someone other than the owner replace the file's content.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses `offender` (the library, or its directory) if it is writable by group or others,
/// or owned by neither root nor the user running sfprocessor.
pub fn check(library: &Path, offender: &Path, meta: &Metadata) -> Result<(), LoadError> {
    let mode = meta.mode() & 0o7777;
    if mode & WRITABLE_BY_OTHERS != 0 {
        return Err(LoadError::InsecurePermissions {
            path: library.to_path_buf(),
            offender: offender.to_path_buf(),
            mode,
        });
    }
    let owner = meta.uid();
    let me = euid();
    if owner != 0 && owner != me {
        return Err(LoadError::BadOwner {
            path: library.to_path_buf(),
            offender: offender.to_path_buf(),
            owner,
            euid: me,
        });
    }
    Ok(())
}

/// Checks a directory holding the library (or a symlink to it).
pub fn check_dir(library: &Path, dir: &Path) -> Result<(), LoadError> {
    let meta = std::fs::metadata(dir).map_err(|source| LoadError::Io {
        path: dir.to_path_buf(),
        action: "reading the directory's permissions",
        source,
    })?;
    check(library, dir, &meta)
}

/// The directory holding `path`, resolved (`.` for a bare file name).
pub fn resolved_parent(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.canonicalize().ok()
}
