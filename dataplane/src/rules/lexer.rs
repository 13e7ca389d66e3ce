//! The pf.conf lexer: source text to positioned tokens.
//!
//! Follows pfctl's lexer: `#` starts a comment to the end of the line, a
//! backslash before a newline joins lines, double-quoted strings may hold
//! anything but an unescaped `"`, and an unquoted word is a run of letters,
//! digits and punctuation other than `( ) { } < > ! = / # , "` (so `80:90`,
//! `2001:db8::1` and `tcp.first` are single words). `$name` is a macro
//! reference, expanded by the parser.
//!
//! Invariants: every token carries the 1-based line and column (counted in
//! characters) of its first character; newlines are tokens, because a
//! statement ends at a newline outside braces and parentheses.

use super::RuleError;

/// A line and column, both 1-based, in file `file` (an index into the
/// parsed files, 0 = the main file; see `parser::Ast::files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
    pub file: u16,
}

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// An unquoted word (keywords are words).
    Word(String),
    /// A double-quoted string, without its quotes.
    Str(String),
    /// `$name`.
    Macro(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Bang,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `><`
    Inside,
    /// `<>`
    Outside,
    Slash,
    Newline,
}

impl Tok {
    /// How the token reads in a message or when re-joined into macro text.
    pub(crate) fn text(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Macro(m) => format!("${m}"),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Bang => "!".into(),
            Tok::Eq => "=".into(),
            Tok::Ne => "!=".into(),
            Tok::Lt => "<".into(),
            Tok::Le => "<=".into(),
            Tok::Gt => ">".into(),
            Tok::Ge => ">=".into(),
            Tok::Inside => "><".into(),
            Tok::Outside => "<>".into(),
            Tok::Slash => "/".into(),
            Tok::Newline => "end of line".into(),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Whether `c` may appear in an unquoted word (pfctl's `allowed_in_string`).
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || (c.is_ascii_punctuation()
            && !matches!(
                c,
                '(' | ')' | '{' | '}' | '<' | '>' | '!' | '=' | '/' | '#' | ',' | '"'
            ))
}

struct Cursor<'s> {
    chars: std::iter::Peekable<std::str::Chars<'s>>,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
            file: 0,
        }
    }
}

/// Splits `src` into tokens. `file` names the source in errors. When `at` is
/// given (text of a macro being expanded), every token gets that position.
pub(crate) fn lex(src: &str, file: &str, at: Option<Pos>) -> Result<Vec<Token>, RuleError> {
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    let err = |pos: Pos, msg: String| RuleError::new(file, at.unwrap_or(pos), msg);
    while let Some(c) = cur.peek() {
        let pos = cur.pos();
        let tok = match c {
            ' ' | '\t' | '\r' => {
                cur.bump();
                continue;
            }
            '\\' => {
                cur.bump();
                // A backslash joins the next line; tolerate trailing blanks.
                while matches!(cur.peek(), Some(' ' | '\t' | '\r')) {
                    cur.bump();
                }
                match cur.peek() {
                    Some('\n') => {
                        cur.bump();
                        continue;
                    }
                    None => continue,
                    Some(_) => {
                        return Err(err(pos, "'\\' must be the last character of a line".into()))
                    }
                }
            }
            '#' => {
                while let Some(c) = cur.peek() {
                    if c == '\n' {
                        break;
                    }
                    cur.bump();
                }
                continue;
            }
            '\n' => {
                cur.bump();
                Tok::Newline
            }
            '"' => {
                cur.bump();
                let mut s = String::new();
                loop {
                    match cur.bump() {
                        None => return Err(err(pos, "unterminated quoted string".into())),
                        Some('"') => break,
                        Some('\\') => match cur.bump() {
                            Some('\n') => {}
                            Some(c) => s.push(c),
                            None => return Err(err(pos, "unterminated quoted string".into())),
                        },
                        Some('\n') => return Err(err(pos, "unterminated quoted string".into())),
                        Some(c) => s.push(c),
                    }
                }
                Tok::Str(s)
            }
            '$' => {
                cur.bump();
                let mut name = String::new();
                while let Some(c) = cur.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        cur.bump();
                    } else {
                        break;
                    }
                }
                if name.is_empty() {
                    return Err(err(pos, "'$' must be followed by a macro name".into()));
                }
                Tok::Macro(name)
            }
            '{' | '}' | '(' | ')' | ',' | '/' => {
                cur.bump();
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ',' => Tok::Comma,
                    _ => Tok::Slash,
                }
            }
            '!' | '=' | '<' | '>' => {
                cur.bump();
                let next = cur.peek();
                let two = match (c, next) {
                    ('!', Some('=')) => Some(Tok::Ne),
                    ('<', Some('=')) => Some(Tok::Le),
                    ('>', Some('=')) => Some(Tok::Ge),
                    ('<', Some('>')) => Some(Tok::Outside),
                    ('>', Some('<')) => Some(Tok::Inside),
                    _ => None,
                };
                match two {
                    Some(t) => {
                        cur.bump();
                        t
                    }
                    None => match c {
                        '!' => Tok::Bang,
                        '=' => Tok::Eq,
                        '<' => Tok::Lt,
                        _ => Tok::Gt,
                    },
                }
            }
            c if word_char(c) => {
                let mut w = String::new();
                while let Some(c) = cur.peek() {
                    if word_char(c) {
                        w.push(c);
                        cur.bump();
                    } else {
                        break;
                    }
                }
                Tok::Word(w)
            }
            other => {
                return Err(err(pos, format!("unexpected character {other:?}")));
            }
        };
        out.push(Token {
            tok,
            pos: at.unwrap_or(pos),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s, "t", None)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn words_operators_and_positions() {
        let t = lex("pass in\n  from 10.0.0.0/8 port 80:90", "t", None).unwrap();
        assert_eq!(
            t[0].pos,
            Pos {
                line: 1,
                col: 1,
                file: 0
            }
        );
        assert_eq!(
            t[1].pos,
            Pos {
                line: 1,
                col: 6,
                file: 0
            }
        );
        assert_eq!(t[2].tok, Tok::Newline);
        assert_eq!(
            t[3].pos,
            Pos {
                line: 2,
                col: 3,
                file: 0
            }
        );
        assert_eq!(
            t.iter().skip(4).map(|t| t.tok.clone()).collect::<Vec<_>>(),
            vec![w("10.0.0.0"), Tok::Slash, w("8"), w("port"), w("80:90")]
        );
        assert_eq!(
            toks("= != < <= > >= >< <> ! <t>"),
            vec![
                Tok::Eq,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Inside,
                Tok::Outside,
                Tok::Bang,
                Tok::Lt,
                w("t"),
                Tok::Gt
            ]
        );
        assert_eq!(toks("2001:db8::1"), vec![w("2001:db8::1")]);
        assert_eq!(toks("tcp.first"), vec![w("tcp.first")]);
    }

    #[test]
    fn comments_continuations_strings_macros() {
        assert_eq!(
            toks("a # c { \nb \\\n c"),
            vec![w("a"), Tok::Newline, w("b"), w("c")]
        );
        assert_eq!(
            toks("x = \"a b\""),
            vec![w("x"), Tok::Eq, Tok::Str("a b".into())]
        );
        assert_eq!(
            toks("{$a,$b_1}"),
            vec![
                Tok::LBrace,
                Tok::Macro("a".into()),
                Tok::Comma,
                Tok::Macro("b_1".into()),
                Tok::RBrace
            ]
        );
        let t = lex("a \\\n  b", "t", None).unwrap();
        assert_eq!(
            t[1].pos,
            Pos {
                line: 2,
                col: 3,
                file: 0
            }
        );
    }

    #[test]
    fn errors_carry_position() {
        let e = lex("pass\n  \"abc", "f.conf", None).unwrap_err();
        assert_eq!((e.line, e.col), (2, 3));
        assert!(e.msg.contains("unterminated"));
        let e = lex("pass $", "f.conf", None).unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
        let e = lex("pass \\ x", "f.conf", None).unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
        let e = lex("pass é", "f.conf", None).unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
        assert_eq!(e.to_string(), "f.conf:1:6: unexpected character 'é'");
    }

    #[test]
    fn macro_text_takes_the_reference_position() {
        let at = Pos {
            line: 7,
            col: 9,
            file: 0,
        };
        let t = lex("{ a b }", "t", Some(at)).unwrap();
        assert!(t.iter().all(|t| t.pos == at));
    }
}
