//! Checks that a library file is a complete ELF shared object for this host before the
//! dynamic loader maps it.
//!
//! The dynamic loader trusts the file it maps: a segment that its program header places
//! past the end of the file is mapped all the same, and the first touch of such a page
//! (relocation, an initialiser, the plugin header) kills the process with SIGBUS. A copy
//! caught half-written, or a file cut short on disk, is therefore refused here, with the
//! byte offsets that show it, instead of being handed to `dlopen`.
//!
//! Only the headers are read (through `object`'s read cache), so the check costs a few
//! small reads whatever the library's size.

use std::{fmt, fs::File, io, mem};

use object::{
    elf,
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
    Endianness, ReadCache, ReadRef,
};

#[cfg(target_pointer_width = "64")]
type HostFileHeader = elf::FileHeader64<Endianness>;
#[cfg(target_pointer_width = "32")]
type HostFileHeader = elf::FileHeader32<Endianness>;

/// Index of the class byte in the ELF identification (`EI_CLASS` in the ELF specification).
const EI_CLASS: usize = 4;

/// Index of the byte-order byte in the ELF identification (`EI_DATA`).
const EI_DATA: usize = 5;

/// The ELF class (`ELFCLASS64`/`ELFCLASS32`) of this host's libraries.
const HOST_CLASS: u8 = if cfg!(target_pointer_width = "64") { elf::ELFCLASS64 } else { elf::ELFCLASS32 };

/// The ELF data encoding (byte order) of this host's libraries.
const HOST_DATA: u8 = if cfg!(target_endian = "little") { elf::ELFDATA2LSB } else { elf::ELFDATA2MSB };

/// The ELF machine of this host's libraries; `None` on an architecture this list lacks
/// (the dynamic loader still refuses a foreign machine there, with its own message).
const HOST_MACHINE: Option<u16> = if cfg!(target_arch = "x86_64") {
    Some(elf::EM_X86_64)
} else if cfg!(target_arch = "aarch64") {
    Some(elf::EM_AARCH64)
} else if cfg!(target_arch = "x86") {
    Some(elf::EM_386)
} else if cfg!(target_arch = "arm") {
    Some(elf::EM_ARM)
} else if cfg!(target_arch = "riscv64") || cfg!(target_arch = "riscv32") {
    Some(elf::EM_RISCV)
} else if cfg!(target_arch = "powerpc64") {
    Some(elf::EM_PPC64)
} else if cfg!(target_arch = "s390x") {
    Some(elf::EM_S390)
} else {
    None
};

/// Why a file is not a complete shared library for this host.
#[derive(Debug)]
pub enum ElfProblem {
    /// Reading the file failed.
    Io(io::Error),
    /// The file does not start with the ELF magic bytes.
    NotElf,
    /// A structure the loader needs ends past the end of the file.
    Truncated {
        /// What is cut short ("the ELF header", "segment 2 (PT_LOAD)", …).
        what: String,
        /// The byte offset where it ends.
        ends_at: u64,
        /// The file's length.
        file_len: u64,
    },
    /// An ELF file of the wrong kind for this host, or with an inconsistent header.
    Unsuitable(String),
}

impl fmt::Display for ElfProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfProblem::Io(e) => write!(f, "reading its ELF headers: {e}"),
            ElfProblem::NotElf => f.write_str("not an ELF file (it does not start with the ELF magic bytes)"),
            ElfProblem::Truncated { what, ends_at, file_len } => write!(
                f,
                "truncated: {what} ends at byte {ends_at}, file has {file_len} bytes \
                 (a copy still being written, or a damaged file)"
            ),
            ElfProblem::Unsuitable(detail) => f.write_str(detail),
        }
    }
}

/// Checks the library in `file`: the ELF header, every program header's file range
/// (`p_offset + p_filesz`) and the section header table lie inside the file; its class,
/// byte order and machine are this host's; its type is `ET_DYN` (a shared object).
pub fn check(file: &File) -> Result<(), ElfProblem> {
    let file_len = file.metadata().map_err(ElfProblem::Io)?.len();
    let cache = ReadCache::new(file);
    check_data(&cache, file_len)
}

// `.into()` widens the 32-bit words of `FileHeader32` on 32-bit hosts.
#[allow(clippy::useless_conversion)]
fn check_data<'data, R: ReadRef<'data>>(data: R, file_len: u64) -> Result<(), ElfProblem> {
    let truncated = |what: &str, ends_at: u64| ElfProblem::Truncated { what: what.to_string(), ends_at, file_len };
    let ident_len = mem::size_of::<elf::Ident>() as u64;
    let magic = data.read_bytes_at(0, file_len.min(elf::ELFMAG.len() as u64)).map_err(|()| read_failed())?;
    if magic != &elf::ELFMAG[..magic.len()] || magic.is_empty() {
        return Err(ElfProblem::NotElf);
    }
    if file_len < ident_len {
        return Err(truncated("the ELF identification", ident_len));
    }
    let ident = data.read_bytes_at(0, ident_len).map_err(|()| read_failed())?;
    let (class, encoding) = (ident[EI_CLASS], ident[EI_DATA]);
    if class != HOST_CLASS {
        return Err(ElfProblem::Unsuitable(format!(
            "built for {}, this host loads {} libraries",
            class_name(class),
            class_name(HOST_CLASS)
        )));
    }
    if encoding != HOST_DATA {
        return Err(ElfProblem::Unsuitable(format!(
            "built for {} byte order, this host is {}",
            data_name(encoding),
            data_name(HOST_DATA)
        )));
    }
    let header_len = mem::size_of::<HostFileHeader>() as u64;
    if file_len < header_len {
        return Err(truncated("the ELF header", header_len));
    }
    let header = HostFileHeader::parse(data).map_err(|e| ElfProblem::Unsuitable(format!("bad ELF header: {e}")))?;
    let endian = header.endian().map_err(|e| ElfProblem::Unsuitable(format!("bad ELF header: {e}")))?;

    let e_type = header.e_type(endian);
    if e_type != elf::ET_DYN {
        return Err(ElfProblem::Unsuitable(format!(
            "not a shared library (ELF type {}, expected ET_DYN)",
            type_name(e_type)
        )));
    }
    let machine = header.e_machine(endian);
    if let Some(host) = HOST_MACHINE.filter(|m| *m != machine) {
        return Err(ElfProblem::Unsuitable(format!(
            "built for another machine (ELF machine {machine}, this host is {host})"
        )));
    }

    let phoff: u64 = header.e_phoff(endian).into();
    let phentsize = u64::from(header.e_phentsize(endian));
    let phnum = header.phnum(endian, data).map_err(|e| ElfProblem::Unsuitable(format!("bad program header count: {e}")))?;
    if phoff == 0 || phnum == 0 {
        return Err(ElfProblem::Unsuitable("no program headers: nothing the dynamic loader could map".into()));
    }
    let table_end = table_end(phoff, phnum as u64, phentsize)
        .ok_or_else(|| ElfProblem::Unsuitable("program header table offset or size overflows".into()))?;
    if table_end > file_len {
        return Err(truncated("the program header table", table_end));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| ElfProblem::Unsuitable(format!("bad program header table: {e}")))?;
    let mut loadable = 0usize;
    for (i, segment) in segments.iter().enumerate() {
        let p_type = segment.p_type(endian);
        let (offset, size): (u64, u64) = (segment.p_offset(endian).into(), segment.p_filesz(endian).into());
        let end = offset
            .checked_add(size)
            .ok_or_else(|| ElfProblem::Unsuitable(format!("segment {i} ({}): offset + size overflows", segment_name(p_type))))?;
        if end > file_len {
            return Err(truncated(&format!("segment {i} ({})", segment_name(p_type)), end));
        }
        loadable += usize::from(p_type == elf::PT_LOAD);
    }
    if loadable == 0 {
        return Err(ElfProblem::Unsuitable("no PT_LOAD segment: nothing the dynamic loader could map".into()));
    }
    check_section_table(header, endian, data, file_len)
}

/// The section header table lies inside the file (a library without one is accepted: the
/// dynamic loader does not need it).
#[allow(clippy::useless_conversion)]
fn check_section_table<'data, R: ReadRef<'data>>(
    header: &HostFileHeader,
    endian: Endianness,
    data: R,
    file_len: u64,
) -> Result<(), ElfProblem> {
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff == 0 {
        return Ok(());
    }
    let truncated = |ends_at: u64| ElfProblem::Truncated {
        what: "the section header table".into(),
        ends_at,
        file_len,
    };
    let shentsize = u64::from(header.e_shentsize(endian));
    if shentsize != mem::size_of::<<HostFileHeader as FileHeader>::SectionHeader>() as u64 {
        return Err(ElfProblem::Unsuitable(format!("bad section header entry size {shentsize}")));
    }
    // Section 0 first: with extended numbering it holds the real count.
    let first_end = table_end(shoff, 1, shentsize)
        .ok_or_else(|| ElfProblem::Unsuitable("section header table offset overflows".into()))?;
    if first_end > file_len {
        return Err(truncated(first_end));
    }
    let shnum = header.shnum(endian, data).map_err(|e| ElfProblem::Unsuitable(format!("bad section count: {e}")))?;
    let end = table_end(shoff, shnum as u64, shentsize)
        .ok_or_else(|| ElfProblem::Unsuitable("section header table size overflows".into()))?;
    if end > file_len {
        return Err(truncated(end));
    }
    // Sections the loader reads through the dynamic segment lie in PT_LOAD segments,
    // checked by the caller; the rest only matter to debuggers, so their ranges are
    // checked for consistency only when the table itself is whole.
    let sections = header
        .section_headers(endian, data)
        .map_err(|e| ElfProblem::Unsuitable(format!("bad section header table: {e}")))?;
    for (i, section) in sections.iter().enumerate() {
        if section.sh_type(endian) == elf::SHT_NOBITS {
            continue;
        }
        let (offset, size): (u64, u64) = (section.sh_offset(endian).into(), section.sh_size(endian).into());
        match offset.checked_add(size) {
            Some(end) if end <= file_len => {}
            Some(end) => {
                return Err(ElfProblem::Truncated { what: format!("section {i}"), ends_at: end, file_len });
            }
            None => return Err(ElfProblem::Unsuitable(format!("section {i}: offset + size overflows"))),
        }
    }
    Ok(())
}

fn table_end(offset: u64, count: u64, entry_size: u64) -> Option<u64> {
    count.checked_mul(entry_size).and_then(|len| offset.checked_add(len))
}

fn read_failed() -> ElfProblem {
    ElfProblem::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the file could not be read"))
}

fn class_name(class: u8) -> String {
    match class {
        elf::ELFCLASS32 => "32-bit (ELFCLASS32)".into(),
        elf::ELFCLASS64 => "64-bit (ELFCLASS64)".into(),
        other => format!("an unknown ELF class {other}"),
    }
}

fn data_name(data: u8) -> String {
    match data {
        elf::ELFDATA2LSB => "little-endian".into(),
        elf::ELFDATA2MSB => "big-endian".into(),
        other => format!("unknown ({other})"),
    }
}

fn type_name(e_type: u16) -> String {
    match e_type {
        elf::ET_NONE => "ET_NONE".into(),
        elf::ET_REL => "ET_REL, an object file".into(),
        elf::ET_EXEC => "ET_EXEC, an executable".into(),
        elf::ET_CORE => "ET_CORE, a core dump".into(),
        other => format!("{other:#x}"),
    }
}

fn segment_name(p_type: u32) -> String {
    match p_type {
        elf::PT_NULL => "PT_NULL".into(),
        elf::PT_LOAD => "PT_LOAD".into(),
        elf::PT_DYNAMIC => "PT_DYNAMIC".into(),
        elf::PT_INTERP => "PT_INTERP".into(),
        elf::PT_NOTE => "PT_NOTE".into(),
        elf::PT_PHDR => "PT_PHDR".into(),
        elf::PT_TLS => "PT_TLS".into(),
        elf::PT_GNU_EH_FRAME => "PT_GNU_EH_FRAME".into(),
        elf::PT_GNU_STACK => "PT_GNU_STACK".into(),
        elf::PT_GNU_RELRO => "PT_GNU_RELRO".into(),
        other => format!("type {other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files too short or too foreign to hold an ELF header, built in memory; the cut points
    /// of real libraries are tested in `tests/truncated_libraries.rs`.
    #[test]
    fn short_and_foreign_files_are_named_precisely() {
        let not_elf = check_data(&b"#!/bin/sh\n"[..], 10).unwrap_err();
        assert!(matches!(not_elf, ElfProblem::NotElf), "{not_elf}");
        let empty = check_data(&b""[..], 0).unwrap_err();
        assert!(matches!(empty, ElfProblem::NotElf), "{empty}");
        let magic_only = check_data(&b"\x7fELF"[..], 4).unwrap_err();
        assert_eq!(
            magic_only.to_string(),
            "truncated: the ELF identification ends at byte 16, file has 4 bytes \
             (a copy still being written, or a damaged file)"
        );
        let mut ident = [0u8; 16];
        ident[..4].copy_from_slice(&elf::ELFMAG);
        ident[EI_CLASS] = if HOST_CLASS == elf::ELFCLASS64 { elf::ELFCLASS32 } else { elf::ELFCLASS64 };
        ident[EI_DATA] = HOST_DATA;
        let foreign = check_data(&ident[..], 16).unwrap_err();
        assert!(foreign.to_string().starts_with("built for "), "{foreign}");
        ident[EI_CLASS] = HOST_CLASS;
        let short = check_data(&ident[..], 16).unwrap_err();
        assert!(short.to_string().starts_with("truncated: the ELF header ends at byte "), "{short}");
    }
}
