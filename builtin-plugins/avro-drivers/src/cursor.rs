//! A bounds-checked reader of Avro binary primitives over a byte slice.

use std::borrow::Cow;

/// A datum-level decoding failure (kept small: it is returned on the hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatumError {
    /// What went wrong.
    pub msg: Cow<'static, str>,
    /// Byte position in the datum buffer where it went wrong.
    pub pos: usize,
    /// True when the datum was well-formed but of an unsupported record type; the cursor
    /// then stands after the datum, so decoding can continue with the next one.
    pub skippable: bool,
}

pub(crate) type DResult<T> = Result<T, DatumError>;

/// Reads Avro binary encoding from a slice.
pub(crate) struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    /// An error at the current position.
    #[cold]
    pub fn err(&self, msg: impl Into<Cow<'static, str>>) -> DatumError {
        DatumError { msg: msg.into(), pos: self.pos, skippable: false }
    }

    /// Bytes left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// A zig-zag varint (Avro `int` and `long`).
    #[inline]
    pub fn varint(&mut self) -> DResult<i64> {
        let mut result: u64 = 0;
        let mut shift = 0u32;
        let mut pos = self.pos;
        loop {
            let Some(&b) = self.buf.get(pos) else {
                return Err(self.err("unexpected end of data inside a number"));
            };
            pos += 1;
            result |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(self.err("number longer than 10 bytes"));
            }
        }
        self.pos = pos;
        Ok(((result >> 1) as i64) ^ -((result & 1) as i64))
    }

    /// A varint that must fit an Avro `int`.
    #[inline]
    pub fn int32(&mut self) -> DResult<i32> {
        let v = self.varint()?;
        i32::try_from(v).map_err(|_| self.err("int value out of 32-bit range"))
    }

    /// A non-negative length that fits the remaining bytes.
    #[inline]
    pub fn len_prefix(&mut self) -> DResult<usize> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => Ok(n),
            Ok(_) => Err(self.err("length exceeds the remaining data")),
            Err(_) => Err(self.err("negative length")),
        }
    }

    /// `n` raw bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> DResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.err("unexpected end of data"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A length-prefixed byte string (Avro `bytes`/`string`).
    #[inline]
    pub fn byte_string(&mut self) -> DResult<&'a [u8]> {
        let n = self.len_prefix()?;
        self.bytes(n)
    }

    /// A boolean byte.
    #[inline]
    pub fn boolean(&mut self) -> DResult<bool> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b != 0)
            }
            None => Err(self.err("unexpected end of data inside a boolean")),
        }
    }

    /// Item count of the next array/map block; a negative count is followed by a byte
    /// size, which is read and dropped. Counts are bounded by the remaining bytes so a
    /// damaged count cannot make us loop or allocate for long.
    #[inline]
    pub fn block_count(&mut self) -> DResult<usize> {
        let n = self.varint()?;
        let n = if n < 0 {
            self.varint()?;
            n.checked_neg().ok_or_else(|| self.err("invalid block count"))?
        } else {
            n
        };
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining().saturating_add(64) => Ok(n),
            _ => Err(self.err("array/map block count exceeds the remaining data")),
        }
    }
}
