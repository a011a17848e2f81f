//! A plugin library cut short — a `cp` caught half-way, a damaged file — is refused before
//! the dynamic loader maps it, with a message naming the file and what is cut, instead of
//! the process dying of SIGBUS when it touches a page past the end of the file.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use common::*;
use object::{
    elf,
    read::elf::{FileHeader, ProgramHeader},
    Endianness,
};
use sfprocessor_plugin_loader::{load_library, load_library_expecting, sha256_file, LoadError};

/// Where a real library's headers and segments lie, read with the crate the loader uses.
struct Layout {
    len: u64,
    header_len: u64,
    program_table_end: u64,
    /// (segment index, end of its file range) of the PT_LOAD with the most file bytes.
    largest_load: (usize, u64, u64),
    section_table_end: u64,
}

fn layout(bytes: &[u8]) -> Layout {
    let header = elf::FileHeader64::<Endianness>::parse(bytes).expect("an ELF64 fixture");
    let endian = header.endian().expect("endian");
    let phoff = header.e_phoff(endian);
    let phnum = u64::from(header.e_phnum(endian));
    let phentsize = u64::from(header.e_phentsize(endian));
    let segments = header.program_headers(endian, bytes).expect("program headers");
    let largest_load = segments
        .iter()
        .enumerate()
        .filter(|(_, p)| p.p_type(endian) == elf::PT_LOAD)
        .map(|(i, p)| (i, p.p_offset(endian), p.p_filesz(endian)))
        .max_by_key(|(_, _, size)| *size)
        .expect("a PT_LOAD segment");
    let shoff = header.e_shoff(endian);
    let shnum = u64::from(header.e_shnum(endian));
    let shentsize = u64::from(header.e_shentsize(endian));
    Layout {
        len: bytes.len() as u64,
        header_len: u64::from(header.e_ehsize(endian)),
        program_table_end: phoff + phnum * phentsize,
        largest_load,
        section_table_end: shoff + shnum * shentsize,
    }
}

/// Writes the first `cut` bytes of `bytes` as `dir/name` (mode 0644).
fn write_cut(dir: &Path, name: &str, bytes: &[u8], cut: u64) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, &bytes[..usize::try_from(cut).expect("cut fits")]).expect("write cut library");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

/// The runtime directory holds nothing: no copy was left behind or installed for mapping.
fn assert_nothing_installed(runtime: &Path) {
    let left: Vec<String> = fs::read_dir(runtime)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a refused library left files in the runtime directory: {left:?}");
}

#[test]
fn libraries_cut_at_any_point_are_refused_with_the_offsets() {
    let bytes = fs::read(example_so("passthrough")).expect("read passthrough");
    let at = layout(&bytes);
    let (segment, seg_offset, seg_size) = at.largest_load;
    assert!(seg_size > 2, "the fixture's largest PT_LOAD segment holds file bytes");
    assert_eq!(at.section_table_end, at.len, "the fixture ends with its section header table");
    let plugins = private_dir();
    let work = private_dir();
    let opts = options_in(work.path());

    let inside_load = seg_offset + seg_size / 2;
    let cases: Vec<(&str, u64, String)> = vec![
        ("inside the ELF header", at.header_len - 24, format!("the ELF header ends at byte {}", at.header_len)),
        (
            "inside the program headers",
            at.program_table_end - 20,
            format!("the program header table ends at byte {}", at.program_table_end),
        ),
        (
            "inside a PT_LOAD segment",
            inside_load,
            format!("segment {segment} (PT_LOAD) ends at byte {}", seg_offset + seg_size),
        ),
        ("just the last byte", at.len - 1, format!("the section header table ends at byte {}", at.len)),
    ];
    for (what, cut, expected) in cases {
        let path = write_cut(plugins.path(), "cut.so", &bytes, cut);
        let err = load_library(&path, &opts).expect_err(what);
        assert!(matches!(err, LoadError::BadElf { .. }), "{what}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{what}: the message names the file: {msg}");
        assert!(msg.contains(&format!("truncated: {expected}, file has {cut} bytes")), "{what}: {msg}");
        assert!(!msg.contains('\n'), "one line for the log: {msg}");
        assert_nothing_installed(&opts.runtime_dir());
    }

    // The same file once complete loads: the check refuses cut files, not libraries.
    let whole = write_cut(plugins.path(), "cut.so", &bytes, at.len);
    let lib = load_library(&whole, &opts).expect("the complete library loads");
    assert_eq!(lib.descriptors[0].name.as_str(), "passthrough");
}

#[test]
fn an_elf_file_that_is_no_shared_library_is_refused() {
    let plugins = private_dir();
    let work = private_dir();
    let mut bytes = fs::read(example_so("passthrough")).expect("read passthrough");
    // e_type (bytes 16-17, little-endian) set to ET_EXEC.
    bytes[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
    let path = write_cut(plugins.path(), "exec.so", &bytes, bytes.len() as u64);
    let err = load_library(&path, &options_in(work.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::BadElf { .. }), "{err:?}");
    assert!(msg.contains("exec.so") && msg.contains("not a shared library (ELF type ET_EXEC"), "{msg}");

    let mut bytes = fs::read(example_so("passthrough")).expect("read passthrough");
    // e_machine (bytes 18-19): a machine this host is not.
    bytes[18..20].copy_from_slice(&elf::EM_SPARCV9.to_le_bytes());
    let path = write_cut(plugins.path(), "sparc.so", &bytes, bytes.len() as u64);
    let msg = load_library(&path, &options_in(work.path())).unwrap_err().to_string();
    assert!(msg.contains("sparc.so") && msg.contains("built for another machine"), "{msg}");
}

#[test]
fn a_file_that_changed_since_the_watcher_hashed_it_is_not_mapped() {
    let plugins = private_dir();
    let work = private_dir();
    let opts = options_in(work.path());
    let bytes = fs::read(example_so("passthrough")).expect("read passthrough");
    let path = write_cut(plugins.path(), "grown.so", &bytes, bytes.len() as u64 / 2);
    let half_sha = sha256_file(&path).expect("hash");
    // The rest arrives between the watcher's hash and the loader's copy.
    let path = write_cut(plugins.path(), "grown.so", &bytes, bytes.len() as u64);
    let err = load_library_expecting(&path, &opts, &half_sha).unwrap_err();
    assert!(matches!(err, LoadError::ChangedSinceCheck { .. }), "{err:?}");
    assert!(err.to_string().contains("grown.so changed after it was checked"), "{err}");
    assert_nothing_installed(&opts.runtime_dir());
    let whole_sha = sha256_file(&path).expect("hash");
    let lib = load_library_expecting(&path, &opts, &whole_sha).expect("the settled content loads");
    assert_eq!(lib.sha256, whole_sha);
}
