//! Low-level JSON text writing with upstream's exact escaping rules.
//!
//! Upstream writes strings with easyjson's HTML-safe escaper: `"` and `\` get backslash
//! escapes, `\n` `\r` `\t` their short forms, other control characters `\u00XX` (lowercase
//! hex), `<` `>` `&` become `\u003c` `\u003e` `\u0026`, U+2028/U+2029 are escaped, and each
//! byte of an invalid UTF-8 sequence becomes `\ufffd`. Everything else is copied as is.
//! The encoder spends most of its time here, so the scan skips 8 clean bytes at a time.

const HEX: &[u8; 16] = b"0123456789abcdef";

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True when some byte of `word` may need escaping: a control character, a non-ASCII
/// byte, or one of `"` `&` `<` `>` `\`.
#[inline(always)]
fn word_needs_attention(word: u64) -> bool {
    // Bytes < 0x20, and bytes >= 0x80.
    let control = word.wrapping_sub(LO * 0x20) & !word;
    // `"` (0x22) and `&` (0x26) differ only in bit 2; `<` (0x3c) and `>` (0x3e) in bit 1.
    let quote_amp = (word & (LO * 0xfb)) ^ (LO * 0x22);
    let angle = (word & (LO * 0xfd)) ^ (LO * 0x3c);
    let backslash = word ^ (LO * 0x5c);
    let zero = |v: u64| v.wrapping_sub(LO) & !v;
    ((control | word | zero(quote_amp) | zero(angle) | zero(backslash)) & HI) != 0
}

/// Skips clean 16-byte blocks from `i`; returns the position of the first byte that may
/// need escaping, or where fewer than 16 bytes remain.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn skip_clean_blocks(s: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline, and every unaligned 16-byte load
    // starts at `i` with `i + 16 <= s.len()`, so it stays inside `s`.
    unsafe {
        let control = _mm_set1_epi8(0x20);
        let (mask_qa, quote) = (_mm_set1_epi8(0xfbu8 as i8), _mm_set1_epi8(0x22));
        let (mask_lg, less) = (_mm_set1_epi8(0xfdu8 as i8), _mm_set1_epi8(0x3c));
        let backslash = _mm_set1_epi8(0x5c);
        while i + 16 <= s.len() {
            let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
            // Signed compare: true for 0x00..=0x1f and for every byte >= 0x80.
            let low_or_high = _mm_cmplt_epi8(v, control);
            let quote_amp = _mm_cmpeq_epi8(_mm_and_si128(v, mask_qa), quote);
            let angle = _mm_cmpeq_epi8(_mm_and_si128(v, mask_lg), less);
            let bslash = _mm_cmpeq_epi8(v, backslash);
            let any = _mm_or_si128(_mm_or_si128(low_or_high, quote_amp), _mm_or_si128(angle, bslash));
            let bits = _mm_movemask_epi8(any);
            if bits != 0 {
                return i + bits.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    i
}

/// Portable builds scan 8 bytes at a time only.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn skip_clean_blocks(_s: &[u8], i: usize) -> usize {
    i
}

/// Whether a single ASCII byte needs escaping.
#[inline(always)]
fn ascii_needs_escape(b: u8) -> bool {
    b < 0x20 || matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&')
}

/// Whether `s` is ASCII without control characters, `"`, `&`, `<`, `>` or `\`: text that
/// every JSON writer (this one, serde_json) copies unchanged between quotes.
pub(crate) fn is_plain(s: &[u8]) -> bool {
    let i = skip_clean_blocks(s, 0);
    s[i..].iter().all(|&b| b < 0x80 && !ascii_needs_escape(b))
}

/// Writes `s` as a quoted JSON string.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// Writes arbitrary bytes as a quoted JSON string (invalid UTF-8 → `\ufffd` per byte).
pub fn write_bytes(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Writes the escaped content of `s` without surrounding quotes.
#[inline]
pub fn write_escaped_str(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes());
}

/// Escapes `s` into `out` without quotes.
pub fn write_escaped(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    let mut start = 0; // first byte not yet copied
    let mut i = 0;
    while i < len {
        i = skip_clean_blocks(s, i);
        // Skip clean 8-byte words.
        while i + 8 <= len {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[i..i + 8]);
            if word_needs_attention(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        if i >= len {
            break;
        }
        let b = s[i];
        if b < 0x80 {
            if !ascii_needs_escape(b) {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                _ => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
            }
            i += 1;
            start = i;
            continue;
        }
        match decode_char(&s[i..]) {
            None => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
            Some((c @ ('\u{2028}' | '\u{2029}'), width)) => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\u202");
                out.push(HEX[(c as u32 & 0xf) as usize]);
                i += width;
                start = i;
            }
            Some((_, width)) => i += width,
        }
    }
    out.extend_from_slice(&s[start..]);
}

/// Decodes the UTF-8 character at the start of `s` (which begins with a non-ASCII byte);
/// `None` when the sequence is invalid (Go's `RuneError` with width 1).
#[inline]
fn decode_char(s: &[u8]) -> Option<(char, usize)> {
    let head = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    valid.chars().next().map(|c| (c, c.len_utf8()))
}

/// Writes a decimal integer.
#[inline(always)]
pub fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// Writes `true` or `false`.
#[inline(always)]
pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// Writes a little-endian IPv4 integer as dotted text (no quotes), as upstream's `mapIPStr`.
#[inline]
pub fn write_ipv4(out: &mut Vec<u8>, ip: i64) {
    let b = (ip as u32).to_le_bytes();
    write_int(out, b[0]);
    out.push(b'.');
    write_int(out, b[1]);
    out.push(b'.');
    write_int(out, b[2]);
    out.push(b'.');
    write_int(out, b[3]);
}

/// Writes `bytes` as lowercase hex (no quotes).
#[inline]
pub fn write_hex_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

/// Writes `v` in lowercase hex without leading zeros (`0` → `0`), as Go's `%x`.
#[inline]
pub fn write_hex_u64(out: &mut Vec<u8>, v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    let digits = (64 - v.leading_zeros()).div_ceil(4);
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (k * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut out = Vec::new();
        write_bytes(&mut out, s);
        String::from_utf8(out).expect("escaper output is UTF-8")
    }

    #[test]
    fn escapes_like_easyjson_html_safe() {
        assert_eq!(esc(b"plain text that is long enough"), r#""plain text that is long enough""#);
        assert_eq!(esc(b"<NA> & \"q\" \\"), r#""\u003cNA\u003e \u0026 \"q\" \\""#);
        assert_eq!(esc(b"a\nb\rc\td\x01\x1f\x7f"), "\"a\\nb\\rc\\td\\u0001\\u001f\x7f\"");
        assert_eq!(esc("x\u{2028}y\u{2029}".as_bytes()), r#""x\u2028y\u2029""#);
        assert_eq!(esc("héllo wörld ✓ 日本".as_bytes()), "\"héllo wörld ✓ 日本\"");
        // Each byte of an invalid sequence becomes one replacement escape.
        assert_eq!(esc(b"ab\xffcd\xe2\x80"), r#""ab\ufffdcd\ufffd\ufffd""#);
        // A surrogate encoded in UTF-8 is invalid in Go too.
        assert_eq!(esc(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        // A genuine U+FFFD is copied raw, as easyjson does.
        assert_eq!(esc("\u{fffd}".as_bytes()), "\"\u{fffd}\"");
    }

    #[test]
    fn specials_found_at_every_offset_of_a_word() {
        for special in [b'"', b'\\', b'<', b'>', b'&', b'\n', 0u8, 0x1f, 0xff] {
            for pos in 0..40 {
                let mut s = vec![b'a'; 40];
                s[pos] = special;
                let got = esc(&s);
                assert_ne!(got.len(), 42, "byte {special:#x} at {pos} was not escaped: {got}");
            }
        }
        // Bytes next to the specials must not be flagged: the output equals the input.
        let clean: Vec<u8> = (0x20u8..0x80).filter(|b| !ascii_needs_escape(*b)).collect();
        let mut out = Vec::new();
        write_escaped(&mut out, &clean);
        assert_eq!(out, clean);
    }

    #[test]
    fn numbers_ips_and_hex() {
        let mut out = Vec::new();
        write_int(&mut out, -42i64);
        out.push(b' ');
        write_ipv4(&mut out, 1681631424);
        out.push(b' ');
        write_hex_u64(&mut out, 0x00ff_9ce0);
        out.push(b' ');
        write_hex_u64(&mut out, 0);
        out.push(b' ');
        write_hex_bytes(&mut out, &[0x0a, 0xff]);
        assert_eq!(String::from_utf8(out).expect("ascii"), "-42 192.168.59.100 ff9ce0 0 0aff");
    }
}

/// A JSON array of dotted IPv4 strings from little-endian IPv4 integers.
pub fn write_ip_array(out: &mut Vec<u8>, ips: &[i64]) {
    out.push(b'[');
    for (i, ip) in ips.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        write_ipv4(out, *ip);
        out.push(b'"');
    }
    out.push(b']');
}
