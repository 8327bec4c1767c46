//! Glob patterns for `ListVariables`: `*` (any run), `?` (one character), `[abc]`, `[a-z]`
//! and `[!abc]` classes, and `\` to escape. Malformed patterns are rejected up front.

use crate::error::{BridgeError, Result, clip};

/// A parsed glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses `pattern`; an empty pattern means `*`.
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = |detail: &str| {
            BridgeError::invalid_argument(
                "pattern",
                format!("malformed pattern `{}`: {detail}", clip(pattern)),
            )
        };
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or_else(|| bad("ends with an escape"))?),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    let mut first = true;
                    while let Some(c) = chars.next() {
                        if c == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        let start = if c == '\\' {
                            chars.next().ok_or_else(|| bad("ends with an escape"))?
                        } else {
                            c
                        };
                        if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') => {
                                    ranges.push((start, start));
                                    ranges.push(('-', '-'));
                                    closed = true;
                                    break;
                                }
                                Some(end) if end >= start => ranges.push((start, end)),
                                Some(end) => {
                                    return Err(bad(&format!("range `{start}-{end}` is reversed")));
                                }
                                None => return Err(bad("unclosed `[`")),
                            }
                        } else {
                            ranges.push((start, start));
                        }
                    }
                    if !closed {
                        return Err(bad("unclosed `[`"));
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Literal(c),
            });
        }
        if tokens.is_empty() {
            tokens.push(Token::AnyRun);
        }
        Ok(Glob { tokens })
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // Iterative matching with backtracking to the last `*`: linear in practice and
        // never exponential, whatever the pattern.
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(token) if token_matches(token, text[t]) => {
                    t += 1;
                    p += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::AnyRun)
    }
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyOne => true,
        Token::AnyRun => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_globs() {
        let g = Glob::new("model.*").unwrap();
        assert!(g.matches("model.temperature") && g.matches("model.") && !g.matches("xmodel.a"));
        assert!(Glob::new("").unwrap().matches("anything"));
        assert!(Glob::new("t?mp").unwrap().matches("temp"));
        assert!(
            Glob::new("[a-c]*").unwrap().matches("beta")
                && !Glob::new("[!a-c]*").unwrap().matches("beta")
        );
        assert!(
            Glob::new("a\\*").unwrap().matches("a*") && !Glob::new("a\\*").unwrap().matches("ab")
        );
        assert!(Glob::new("*a*a*a*b").unwrap().matches("aaaaaaaaaaaaaaaab"));
        assert!(!Glob::new("*a*a*a*b").unwrap().matches(&"a".repeat(5000)));
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in ["[abc", "a\\", "[z-a]"] {
            let err = Glob::new(bad).unwrap_err();
            assert!(
                err.message
                    .starts_with(&format!("malformed pattern `{bad}`")),
                "{}",
                err.message
            );
        }
    }
}
