//! "Did you mean" for pipeline keys: the declared key closest to a key nobody declared.

/// Most edits (insertions, deletions, substitutions, swaps of neighbours) between an
/// unknown key and a declared one for the declared one to be suggested; beyond it a
/// suggestion would more often mislead than help.
pub const MAX_KEY_EDITS: usize = 2;

/// The candidate closest to `key` within [`MAX_KEY_EDITS`] edits (ties: the first), if any.
pub fn closest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(key, c), c))
        .filter(|(d, c)| *d <= MAX_KEY_EDITS && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean 'x'?)` for the closest candidate, or nothing.
pub fn hint<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(key, candidates).map(|c| format!(" (did you mean '{c}'?)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_declared_key_and_nothing_far() {
        let keys = ["export", "file.path", "syslog.host", "syslog.port", "in", "out"];
        assert_eq!(closest("exprot", keys), Some("export"));
        assert_eq!(closest("file.pth", keys), Some("file.path"));
        assert_eq!(closest("syslog.hots", keys), Some("syslog.host"));
        assert_eq!(closest("kafka.brokers", keys), None);
        // Two edits turn any two-letter key into any other: no suggestion for short keys.
        assert_eq!(closest("ab", keys), None);
    }
}
