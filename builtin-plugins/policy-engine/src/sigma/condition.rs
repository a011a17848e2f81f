//! The Sigma `condition` expression: `and`, `or`, `not`, parentheses, search
//! identifiers, `1 of`/`any of`/`all of` over `them` or a name pattern; an aggregation
//! after `|` is split off (the caller warns that it is ignored).

use crate::limits::MAX_CONDITION_NESTING;

/// What a quantifier ranges over.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Every search of the rule.
    Them,
    /// Searches whose names match a shell-style pattern (`*`, `?`).
    Pattern(String),
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum CondExpr {
    /// All hold.
    And(Vec<CondExpr>),
    /// Any holds.
    Or(Vec<CondExpr>),
    /// Negation.
    Not(Box<CondExpr>),
    /// A search identifier.
    Search(String),
    /// `1 of …` (also `any of …`).
    OneOf(Selector),
    /// `all of …`.
    AllOf(Selector),
}

/// A parsed condition with its ignored aggregation part.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The search expression.
    pub expr: CondExpr,
    /// The text after `|` (e.g. `count() by User > 5`), if any.
    pub aggregation: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Tok>| {
        if !word.is_empty() {
            out.push(Tok::Word(std::mem::take(word)));
        }
    };
    for c in s.chars() {
        match c {
            '(' | ')' => {
                flush(&mut word, &mut out);
                out.push(if c == '(' { Tok::Open } else { Tok::Close });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
    /// Parentheses and `not`s open at the cursor.
    nesting: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.i) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<CondExpr, String> {
        let mut v = vec![self.and()?];
        while self.peek_word().as_deref() == Some("or") {
            self.i += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { CondExpr::Or(v) })
    }

    fn and(&mut self) -> Result<CondExpr, String> {
        let mut v = vec![self.not()?];
        while self.peek_word().as_deref() == Some("and") {
            self.i += 1;
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { CondExpr::And(v) })
    }

    /// Enters a `not` or `(`: refused beyond [`MAX_CONDITION_NESTING`], before the
    /// recursion can exhaust the stack.
    fn enter(&mut self) -> Result<(), String> {
        if self.nesting >= MAX_CONDITION_NESTING {
            return Err(format!("condition nests deeper than {MAX_CONDITION_NESTING} levels of parentheses and 'not'"));
        }
        self.nesting += 1;
        Ok(())
    }

    fn not(&mut self) -> Result<CondExpr, String> {
        if self.peek_word().as_deref() == Some("not") {
            self.i += 1;
            self.enter()?;
            let e = self.not();
            self.nesting -= 1;
            return Ok(CondExpr::Not(Box::new(e?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<CondExpr, String> {
        match self.toks.get(self.i).cloned() {
            Some(Tok::Open) => {
                self.i += 1;
                self.enter()?;
                let e = self.or();
                self.nesting -= 1;
                let e = e?;
                if self.toks.get(self.i) != Some(&Tok::Close) {
                    return Err("missing ')'".into());
                }
                self.i += 1;
                Ok(e)
            }
            Some(Tok::Close) => Err("unexpected ')'".into()),
            None => Err("expression expected at the end of the condition".into()),
            Some(Tok::Word(w)) => {
                let lw = w.to_ascii_lowercase();
                if matches!(lw.as_str(), "and" | "or" | "of") {
                    return Err(format!("unexpected '{w}'"));
                }
                self.i += 1;
                let quant = matches!(lw.as_str(), "1" | "any" | "all");
                if quant && self.peek_word().as_deref() == Some("of") {
                    self.i += 1;
                    let target = match self.toks.get(self.i) {
                        Some(Tok::Word(t)) => t.clone(),
                        _ => return Err(format!("'{w} of' needs 'them' or a search name pattern")),
                    };
                    self.i += 1;
                    let sel = if target.eq_ignore_ascii_case("them") { Selector::Them } else { Selector::Pattern(target) };
                    return Ok(if lw == "all" { CondExpr::AllOf(sel) } else { CondExpr::OneOf(sel) });
                }
                Ok(CondExpr::Search(w))
            }
        }
    }
}

/// Parses a condition string.
pub fn parse(text: &str) -> Result<Condition, String> {
    let (expr_text, aggregation) = match text.split_once('|') {
        Some((e, a)) => (e, Some(a.trim().to_string())),
        None => (text, None),
    };
    let mut p = Parser { toks: lex(expr_text), i: 0, nesting: 0 };
    let expr = p.or()?;
    if let Some(t) = p.toks.get(p.i) {
        return Err(format!("unexpected {} after the expression", match t {
            Tok::Open => "'('".to_string(),
            Tok::Close => "')'".to_string(),
            Tok::Word(w) => format!("'{w}'"),
        }));
    }
    Ok(Condition { expr, aggregation })
}

/// Shell-style match of a search name against a pattern (`*` any run, `?` one char).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &str) -> CondExpr {
        CondExpr::Search(n.into())
    }

    #[test]
    fn precedence_not_and_or() {
        let c = parse("(netcat and not netcat_listen_flag) or network_scanning_tools").unwrap();
        assert_eq!(
            c.expr,
            CondExpr::Or(vec![
                CondExpr::And(vec![s("netcat"), CondExpr::Not(Box::new(s("netcat_listen_flag")))]),
                s("network_scanning_tools")
            ])
        );
        let c = parse("a or b and not c").unwrap();
        assert_eq!(c.expr, CondExpr::Or(vec![s("a"), CondExpr::And(vec![s("b"), CondExpr::Not(Box::new(s("c")))])]));
    }

    #[test]
    fn quantifiers_and_aggregation() {
        let c = parse("1 of selection_* and sub_processes").unwrap();
        assert_eq!(c.expr, CondExpr::And(vec![CondExpr::OneOf(Selector::Pattern("selection_*".into())), s("sub_processes")]));
        assert_eq!(parse("all of them").unwrap().expr, CondExpr::AllOf(Selector::Them));
        assert_eq!(parse("any of sel*").unwrap().expr, CondExpr::OneOf(Selector::Pattern("sel*".into())));
        let c = parse("sel | count() by User > 5").unwrap();
        assert_eq!(c.expr, s("sel"));
        assert_eq!(c.aggregation.as_deref(), Some("count() by User > 5"));
    }

    #[test]
    fn errors() {
        for bad in ["", "a and", "(a", "a)", "a b", "1 of", "and a", "not"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("selection*", "selection"));
        assert!(glob_match("selection_*", "selection_tomcat"));
        assert!(!glob_match("selection_*", "selection"));
        assert!(glob_match("s?l*n", "selection"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }
}
