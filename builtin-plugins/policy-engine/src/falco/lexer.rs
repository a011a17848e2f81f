//! Tokeniser for upstream's policy files (policy-language.md §2).
//!
//! The files are not YAML: upstream tokenises them with its own grammar, so tabs, odd
//! indentation and a leading space before `- rule:` are accepted. Longest match wins; on
//! equal length the earlier kind wins, in the order keyword/punctuation, severity, ID,
//! PATH, STRING, TAG.

/// Reserved words (case-sensitive, whole token).
pub const KEYWORDS: &[&str] = &[
    "rule",
    "filter",
    "drop",
    "macro",
    "list",
    "name",
    "items",
    "condition",
    "desc",
    "actions",
    "output",
    "priority",
    "tags",
    "prefilter",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "append",
    "required_engine_version",
    "and",
    "or",
    "not",
    "in",
    "contains",
    "icontains",
    "startswith",
    "endswith",
    "pmatch",
    "exists",
];

/// Severity words (case-insensitive).
pub const SEVERITIES: &[&str] = &[
    "high",
    "medium",
    "low",
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "info",
    "informational",
    "debug",
];

const PUNCT: &[&str] = &["<=", ">=", "!=", "<", ">", "=", "[", "]", "(", ")", ",", "-"];

/// Token kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// A reserved word.
    Keyword,
    /// Punctuation (`<=`, `(`, `-`, …).
    Punct,
    /// The key separator `:` (possibly `: >`).
    KeySep,
    /// A severity word.
    Severity,
    /// An identifier (also digits, dotted names, bracket suffixes).
    Id,
    /// A path-like word (`/etc/passwd`, `10.0.0.0/8`).
    Path,
    /// A quoted string (quotes included in the text).
    Str,
    /// `ID:ID` without spaces.
    Tag,
    /// Any other single character (legal only inside free text).
    Error,
    /// End of input.
    Eof,
}

/// One token: kind and byte span, with its 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Kind.
    pub kind: Tok,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset after the last character.
    pub end: usize,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

impl Token {
    /// The token's source text.
    pub fn text<'s>(&self, src: &'s str) -> &'s str {
        &src[self.start..self.end]
    }
}

fn is_id_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_id_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*')
}

fn is_path_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.')
}

fn is_path_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'*' | b'-')
}

fn path_len(s: &[u8]) -> usize {
    if s.first().is_some_and(|&b| is_path_start(b)) {
        1 + s[1..].iter().take_while(|&&b| is_path_cont(b)).count()
    } else {
        0
    }
}

/// Length of a bracket segment `[num-or-path(:path)*]` at the start of `s`, or 0.
fn bracket_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'[') {
        return 0;
    }
    let mut i = 1;
    let p = path_len(&s[i..]);
    if p == 0 {
        return 0;
    }
    i += p;
    while s.get(i) == Some(&b':') {
        let p = path_len(&s[i + 1..]);
        if p == 0 {
            break;
        }
        i += 1 + p;
    }
    if s.get(i) == Some(&b']') {
        i + 1
    } else {
        0
    }
}

fn id_len(s: &[u8]) -> usize {
    if !s.first().is_some_and(|&b| is_id_start(b)) {
        return 0;
    }
    let mut i = 1;
    loop {
        match s.get(i) {
            Some(&b) if is_id_cont(b) => i += 1,
            Some(b'[') => match bracket_len(&s[i..]) {
                0 => break,
                n => i += n,
            },
            Some(b':') if s.get(i + 1) == Some(&b'[') => match bracket_len(&s[i + 1..]) {
                0 => break,
                n => i += 1 + n,
            },
            _ => break,
        }
    }
    i
}

fn string_len(s: &[u8]) -> usize {
    // Only a quote can open a string: the line end is looked for only then, so that a
    // long line costs linear time.
    if !matches!(s.first(), Some(b'"' | b'\'' | b'\\')) {
        return 0;
    }
    let line_end = s.iter().position(|&b| b == b'\n').unwrap_or(s.len());
    let line = &s[..line_end];
    let find = |open: &[u8], close: &[u8]| -> usize {
        if !line.starts_with(open) {
            return 0;
        }
        let rest = &line[open.len()..];
        match rest.windows(close.len()).position(|w| w == close) {
            Some(p) => open.len() + p + close.len(),
            None => 0,
        }
    };
    [find(b"\"", b"\""), find(b"'", b"'"), find(b"\\\"", b"\\\""), find(b"''", b"''")].into_iter().max().unwrap_or(0)
}

fn tag_len(s: &[u8]) -> usize {
    let a = id_len(s);
    if a == 0 || s.get(a) != Some(&b':') {
        return 0;
    }
    let b = id_len(&s[a + 1..]);
    if b == 0 {
        0
    } else {
        a + 1 + b
    }
}

fn word_match(s: &[u8], word: &str, case_insensitive: bool) -> bool {
    // The first byte rules out almost every word before a full comparison.
    let first = |b: u8| if case_insensitive { b.to_ascii_lowercase() } else { b };
    s.first().map(|&b| first(b)) == word.as_bytes().first().map(|&b| first(b))
        && s.len() >= word.len()
        && if case_insensitive {
            s[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        } else {
            &s[..word.len()] == word.as_bytes()
        }
}

/// Tokenises a whole file; the last token is `Eof`.
pub fn tokenize(src: &str) -> Vec<Token> {
    tokenize_with(src, false)
}

/// Tokenises one condition read from a YAML value: as [`tokenize`], except that in a
/// `"…"` string a backslash escapes the next character (Falco's `"sh -c \"x\""`).
pub fn tokenize_condition(src: &str) -> Vec<Token> {
    tokenize_with(src, true)
}

/// Length of a `"…"` string whose backslashes escape the next character (0: none here).
fn escaped_string_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'"') {
        return 0;
    }
    let mut j = 1;
    while let Some(&b) = s.get(j) {
        match b {
            b'\\' => j += 2,
            b'"' => return j + 1,
            b'\n' => return 0,
            _ => j += 1,
        }
    }
    0
}

fn tokenize_with(src: &str, escapes: bool) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4);
    let mut i = 0;
    let mut line = 1u32;
    // The column of the last token, counted on from there (not from the line start) so
    // that a long line costs linear time.
    let mut col_mark = (0usize, 1u32);
    let col_of = |pos: usize, mark: &mut (usize, u32)| -> u32 {
        let col = mark.1 + src[mark.0..pos].chars().count() as u32;
        *mark = (pos, col);
        col
    };
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            i += 1;
            line += 1;
            col_mark = (i, 1);
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let s = &bytes[i..];
        // Candidates in priority order; the first of the longest wins.
        let mut best = (0usize, Tok::Error);
        let mut consider = |len: usize, kind: Tok| {
            if len > best.0 {
                best = (len, kind);
            }
        };
        if b == b':' {
            let mut j = 1;
            while matches!(s.get(j), Some(b' ') | Some(b'\t')) {
                j += 1;
            }
            consider(if s.get(j) == Some(&b'>') { j + 1 } else { 1 }, Tok::KeySep);
        }
        for p in PUNCT {
            if s.starts_with(p.as_bytes()) {
                consider(p.len(), Tok::Punct);
            }
        }
        for k in KEYWORDS {
            if word_match(s, k, false) {
                consider(k.len(), Tok::Keyword);
            }
        }
        for k in SEVERITIES {
            if word_match(s, k, true) {
                consider(k.len(), Tok::Severity);
            }
        }
        consider(id_len(s), Tok::Id);
        consider(path_len(s), Tok::Path);
        consider(if escapes && b == b'"' { escaped_string_len(s) } else { string_len(s) }, Tok::Str);
        consider(tag_len(s), Tok::Tag);
        let len = if best.0 == 0 {
            // One character (not byte) error token.
            src[i..].chars().next().map(char::len_utf8).unwrap_or(1)
        } else {
            best.0
        };
        out.push(Token { kind: best.1, start: i, end: i + len, line, col: col_of(i, &mut col_mark) });
        i += len;
    }
    out.push(Token { kind: Tok::Eof, start: src.len(), end: src.len(), line, col: col_of(src.len(), &mut col_mark) });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Tok, String)> {
        tokenize(src).iter().filter(|t| t.kind != Tok::Eof).map(|t| (t.kind, t.text(src).to_string())).collect()
    }

    #[test]
    fn keywords_ids_paths() {
        let k = kinds("- rule: x\n  condition: sf.proc.exe=/usr/bin/python and sf.ts>=15 # c\n");
        assert_eq!(
            k,
            vec![
                (Tok::Punct, "-".into()),
                (Tok::Keyword, "rule".into()),
                (Tok::KeySep, ":".into()),
                (Tok::Id, "x".into()),
                (Tok::Keyword, "condition".into()),
                (Tok::KeySep, ":".into()),
                (Tok::Id, "sf.proc.exe".into()),
                (Tok::Punct, "=".into()),
                (Tok::Path, "/usr/bin/python".into()),
                (Tok::Keyword, "and".into()),
                (Tok::Id, "sf.ts".into()),
                (Tok::Punct, ">=".into()),
                (Tok::Id, "15".into()),
            ]
        );
    }

    #[test]
    fn special_forms() {
        let k = kinds("condition: >\n a[items.0.x] b[2] 10.0.0.0/8 mitre:T1059 '\"75-x\"' High rules in inx | 'a");
        assert_eq!(k[1], (Tok::KeySep, ": >".into()));
        assert_eq!(k[2], (Tok::Id, "a[items.0.x]".into()));
        assert_eq!(k[3], (Tok::Id, "b[2]".into()));
        assert_eq!(k[4], (Tok::Path, "10.0.0.0/8".into()));
        assert_eq!(k[5], (Tok::Tag, "mitre:T1059".into()));
        assert_eq!(k[6], (Tok::Str, "'\"75-x\"'".into()));
        assert_eq!(k[7], (Tok::Severity, "High".into()));
        assert_eq!(k[8], (Tok::Id, "rules".into()));
        assert_eq!(k[9], (Tok::Keyword, "in".into()));
        assert_eq!(k[10], (Tok::Id, "inx".into()));
        assert_eq!(k[11], (Tok::Error, "|".into()));
        assert_eq!(k[12], (Tok::Error, "'".into()));
    }

    #[test]
    fn positions_count_characters() {
        let t = tokenize("a\n\tbé c");
        assert_eq!((t[1].line, t[1].col), (2, 2));
        assert_eq!((t[3].line, t[3].col), (2, 5));
    }
}
