//! AQL text → tokens with byte spans.
//!
//! The lexer runs ahead of the parser over the whole text. It never fails outright:
//! on the first lexical error (an unterminated string, an unknown operator, a stray
//! character) it stops, ends the token list with [`TokenKind::Eof`] at the error's
//! position and hands the error back separately. The parser reports that error only
//! once it actually reaches that position, so a syntax error earlier in the query is
//! reported first, in text order.
//!
//! Invariants: spans are byte ranges that start and end on `char` boundaries of the
//! input; keywords are recognised case-insensitively but the source text of every
//! token stays reachable through its span (attribute names such as `doc.In` keep
//! their spelling).

use crate::error::{QueryError, Span};

/// Reserved words, as ArangoDB reserves them. `OLD`, `NEW`, `CURRENT` and the
/// contextual words `COUNT`, `OPTIONS`, `KEEP`, `SEARCH`, `PRUNE` are plain
/// identifiers; the parser matches the latter by spelling where they are meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    For,
    Let,
    Filter,
    Sort,
    Limit,
    Collect,
    Window,
    Return,
    Distinct,
    Aggregate,
    Asc,
    Desc,
    Not,
    And,
    Or,
    In,
    Into,
    With,
    Remove,
    Insert,
    Update,
    Replace,
    Upsert,
    Graph,
    ShortestPath,
    KShortestPaths,
    KPaths,
    AllShortestPaths,
    Outbound,
    Inbound,
    Any,
    All,
    None,
    Like,
    Null,
    True,
    False,
}

const KEYWORDS: &[(&str, Keyword)] = &[
    ("FOR", Keyword::For),
    ("LET", Keyword::Let),
    ("FILTER", Keyword::Filter),
    ("SORT", Keyword::Sort),
    ("LIMIT", Keyword::Limit),
    ("COLLECT", Keyword::Collect),
    ("WINDOW", Keyword::Window),
    ("RETURN", Keyword::Return),
    ("DISTINCT", Keyword::Distinct),
    ("AGGREGATE", Keyword::Aggregate),
    ("ASC", Keyword::Asc),
    ("DESC", Keyword::Desc),
    ("NOT", Keyword::Not),
    ("AND", Keyword::And),
    ("OR", Keyword::Or),
    ("IN", Keyword::In),
    ("INTO", Keyword::Into),
    ("WITH", Keyword::With),
    ("REMOVE", Keyword::Remove),
    ("INSERT", Keyword::Insert),
    ("UPDATE", Keyword::Update),
    ("REPLACE", Keyword::Replace),
    ("UPSERT", Keyword::Upsert),
    ("GRAPH", Keyword::Graph),
    ("SHORTEST_PATH", Keyword::ShortestPath),
    ("K_SHORTEST_PATHS", Keyword::KShortestPaths),
    ("K_PATHS", Keyword::KPaths),
    ("ALL_SHORTEST_PATHS", Keyword::AllShortestPaths),
    ("OUTBOUND", Keyword::Outbound),
    ("INBOUND", Keyword::Inbound),
    ("ANY", Keyword::Any),
    ("ALL", Keyword::All),
    ("NONE", Keyword::None),
    ("LIKE", Keyword::Like),
    ("NULL", Keyword::Null),
    ("TRUE", Keyword::True),
    ("FALSE", Keyword::False),
];

fn keyword(word: &str) -> Option<Keyword> {
    KEYWORDS
        .iter()
        .find(|(text, _)| text.eq_ignore_ascii_case(word))
        .map(|&(_, kw)| kw)
}

/// Operators and punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Punct {
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    /// `::` between the parts of a namespaced function name.
    Scope,
    Dot,
    /// `..`
    Range,
    Question,
    /// `=` (assignment in `LET`/`COLLECT`, never comparison)
    Assign,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNotMatch,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// An unquoted identifier that is not a reserved word.
    Ident(String),
    /// A name in backticks or forward ticks (`` `my-coll` ``, `´filter´`), escapes
    /// resolved. Never a keyword.
    QuotedIdent(String),
    Keyword(Keyword),
    Number(f64),
    /// A string literal, escapes resolved.
    String(String),
    /// `@name`
    BindVar(String),
    /// `@@name`
    BindCollection(String),
    Punct(Punct),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// The tokens of a text, and the lexical error that ended them early, if any.
pub(crate) struct Lexed {
    /// Always ends with exactly one [`TokenKind::Eof`].
    pub tokens: Vec<Token>,
    pub error: Option<QueryError>,
}

pub(crate) fn tokenize(text: &str) -> Lexed {
    let mut lexer = Lexer {
        src: text,
        bytes: text.as_bytes(),
        pos: 0,
        tokens: Vec::new(),
    };
    let error = lexer.run().err();
    // The end-of-input token sits right after the last real token (or where lexing
    // stopped), so "unexpected end of query" points at the line that needs more
    // rather than at trailing blank lines.
    let eof_at = match &error {
        Some(e) => e.span.map_or(lexer.pos, |s| s.start),
        None => lexer.tokens.last().map_or(0, |t| t.span.end),
    };
    lexer.tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(eof_at, eof_at),
    });
    Lexed {
        tokens: lexer.tokens,
        error,
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<Token>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The forward tick `´` (U+00B4) that ArangoDB accepts like a backtick.
const FORWARD_TICK: &str = "\u{b4}";

impl Lexer<'_> {
    fn peek_byte(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            span: Span::new(start, self.pos),
        });
    }

    fn punct(&mut self, p: Punct, len: usize) {
        let start = self.pos;
        self.pos += len;
        self.push(TokenKind::Punct(p), start);
    }

    /// Whether the previous token ends an operand, which decides whether `.5` is a
    /// number or an attribute access.
    fn after_operand(&self) -> bool {
        match self.tokens.last().map(|t| &t.kind) {
            Some(
                TokenKind::Ident(_)
                | TokenKind::QuotedIdent(_)
                | TokenKind::Number(_)
                | TokenKind::String(_)
                | TokenKind::BindVar(_)
                | TokenKind::BindCollection(_)
                | TokenKind::Keyword(Keyword::True | Keyword::False | Keyword::Null),
            ) => true,
            Some(TokenKind::Punct(p)) => {
                matches!(p, Punct::RParen | Punct::RBracket | Punct::RBrace)
            }
            _ => false,
        }
    }

    fn run(&mut self) -> Result<(), QueryError> {
        while let Some(b) = self.peek_byte(0) {
            let start = self.pos;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'/' if self.peek_byte(1) == Some(b'/') => {
                    while self.peek_byte(0).is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'/' if self.peek_byte(1) == Some(b'*') => match self.src[start + 2..].find("*/") {
                    Some(i) => self.pos = start + 2 + i + 2,
                    None => {
                        return Err(QueryError::syntax(
                            "unterminated comment: '/*' has no closing '*/'",
                            Span::new(start, start + 2),
                        ))
                    }
                },
                b'"' | b'\'' => self.string(b as char)?,
                b'`' => self.quoted_name("`")?,
                _ if self.src[start..].starts_with(FORWARD_TICK) => {
                    self.quoted_name(FORWARD_TICK)?
                }
                b'0'..=b'9' => self.number()?,
                b'.' if self.peek_byte(1).is_some_and(|c| c.is_ascii_digit())
                    && !self.after_operand() =>
                {
                    self.number()?
                }
                _ if is_ident_start(b) => {
                    while self.peek_byte(0).is_some_and(is_ident_char) {
                        self.pos += 1;
                    }
                    let word = &self.src[start..self.pos];
                    let kind = match keyword(word) {
                        Some(kw) => TokenKind::Keyword(kw),
                        None => TokenKind::Ident(word.to_string()),
                    };
                    self.push(kind, start);
                }
                b'@' => self.bind_parameter()?,
                _ => self.operator()?,
            }
        }
        Ok(())
    }

    fn operator(&mut self) -> Result<(), QueryError> {
        let start = self.pos;
        let b = self.bytes[start];
        let next = self.peek_byte(1);
        let third = self.peek_byte(2);
        let src = self.src;
        let unknown = |len: usize, hint: &str| {
            let end = (start + len).min(src.len());
            Err(QueryError::syntax(
                format!("unknown operator '{}'{hint}", &src[start..end]),
                Span::new(start, end),
            ))
        };
        match (b, next) {
            (b'(', _) => self.punct(Punct::LParen, 1),
            (b')', _) => self.punct(Punct::RParen, 1),
            (b'[', _) => self.punct(Punct::LBracket, 1),
            (b']', _) => self.punct(Punct::RBracket, 1),
            (b'{', _) => self.punct(Punct::LBrace, 1),
            (b'}', _) => self.punct(Punct::RBrace, 1),
            (b',', _) => self.punct(Punct::Comma, 1),
            (b':', Some(b':')) => self.punct(Punct::Scope, 2),
            (b':', _) => self.punct(Punct::Colon, 1),
            (b'.', Some(b'.')) if third == Some(b'.') => return unknown(3, ""),
            (b'.', Some(b'.')) => self.punct(Punct::Range, 2),
            (b'.', _) => self.punct(Punct::Dot, 1),
            (b'?', _) => self.punct(Punct::Question, 1),
            (b'+', _) => self.punct(Punct::Plus, 1),
            (b'-', _) => self.punct(Punct::Minus, 1),
            (b'*', _) => self.punct(Punct::Star, 1),
            (b'/', _) => self.punct(Punct::Slash, 1),
            (b'%', _) => self.punct(Punct::Percent, 1),
            (b'=', Some(b'=')) if third == Some(b'=') => return unknown(3, ": use == to compare"),
            (b'=', Some(b'=')) => self.punct(Punct::EqEq, 2),
            (b'=', Some(b'~')) => self.punct(Punct::RegexMatch, 2),
            (b'=', Some(b'>')) => return unknown(2, ""),
            (b'=', _) => self.punct(Punct::Assign, 1),
            (b'!', Some(b'=')) if third == Some(b'=') => return unknown(3, ": use != to compare"),
            (b'!', Some(b'=')) => self.punct(Punct::NotEq, 2),
            (b'!', Some(b'~')) => self.punct(Punct::RegexNotMatch, 2),
            (b'!', _) => self.punct(Punct::Bang, 1),
            (b'<', Some(b'=')) if third == Some(b'>') => return unknown(3, ""),
            (b'<', Some(b'=')) => self.punct(Punct::Le, 2),
            (b'<', Some(b'<')) => return unknown(2, ""),
            (b'<', Some(b'>')) => return unknown(2, ": use != for inequality"),
            (b'<', _) => self.punct(Punct::Lt, 1),
            (b'>', Some(b'=')) => self.punct(Punct::Ge, 2),
            (b'>', Some(b'>')) => return unknown(2, ""),
            (b'>', _) => self.punct(Punct::Gt, 1),
            (b'&', Some(b'&')) => self.punct(Punct::AndAnd, 2),
            (b'&', _) => return unknown(1, ": use && or AND"),
            (b'|', Some(b'|')) => self.punct(Punct::OrOr, 2),
            (b'|', _) => return unknown(1, ": use || or OR"),
            _ => {
                let ch = self.src[start..].chars().next().unwrap_or('\u{fffd}');
                let end = start + ch.len_utf8();
                let shown: String = ch.escape_debug().collect();
                return Err(QueryError::syntax(
                    format!("unexpected character '{shown}'"),
                    Span::new(start, end),
                ));
            }
        }
        Ok(())
    }

    fn bind_parameter(&mut self) -> Result<(), QueryError> {
        let start = self.pos;
        self.pos += 1;
        let collection = self.peek_byte(0) == Some(b'@');
        if collection {
            self.pos += 1;
        }
        let name_start = self.pos;
        while self.peek_byte(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        if self.pos == name_start {
            let sigil = &self.src[start..name_start];
            return Err(QueryError::syntax(
                format!(
                    "expected a bind parameter name after '{sigil}' (letters, digits and '_', e.g. {sigil}name)"
                ),
                Span::new(start, name_start),
            ));
        }
        let name = self.src[name_start..self.pos].to_string();
        let kind = if collection {
            TokenKind::BindCollection(name)
        } else {
            TokenKind::BindVar(name)
        };
        self.push(kind, start);
        Ok(())
    }

    fn number(&mut self) -> Result<(), QueryError> {
        let start = self.pos;
        let bytes = self.bytes;
        let radix = match (bytes[start], self.peek_byte(1)) {
            (b'0', Some(b'x' | b'X')) => Some((16, "hexadecimal")),
            (b'0', Some(b'b' | b'B')) => Some((2, "binary")),
            _ => None,
        };
        if let Some((radix, what)) = radix {
            self.pos += 2;
            let digits_start = self.pos;
            while self
                .peek_byte(0)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                self.pos += 1;
            }
            let digits = &self.src[digits_start..self.pos];
            let span = Span::new(start, self.pos);
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return Err(QueryError::syntax(
                    format!(
                        "invalid {what} number literal '{}'",
                        &self.src[start..self.pos]
                    ),
                    span,
                ));
            }
            let value = u64::from_str_radix(digits, radix).map_err(|_| {
                QueryError::syntax(
                    format!(
                        "{what} number literal '{}' is out of range",
                        &self.src[start..self.pos]
                    ),
                    span,
                )
            })?;
            // Precision beyond 2^53 is lost, as for every AQL number (IEEE doubles).
            self.push(TokenKind::Number(value as f64), start);
            return Ok(());
        }

        let digit = |lexer: &Self, offset: usize| {
            lexer.peek_byte(offset).is_some_and(|c| c.is_ascii_digit())
        };
        while digit(self, 0) {
            self.pos += 1;
        }
        let int_end = self.pos;
        // A fraction needs a digit after the dot, so `1..5` stays a range.
        if self.peek_byte(0) == Some(b'.') && digit(self, 1) {
            self.pos += 1;
            while digit(self, 0) {
                self.pos += 1;
            }
        }
        if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek_byte(1), Some(b'+' | b'-')));
            if digit(self, 1 + sign) {
                self.pos += 1 + sign;
                while digit(self, 0) {
                    self.pos += 1;
                }
            }
        }
        // Glued letters (`12abc`, `1e`, `1.5x`) are a typo, not two tokens.
        while self.peek_byte(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        let span = Span::new(start, self.pos);
        if text.len() > 1 && text.starts_with('0') && int_end - start > 1 {
            return Err(QueryError::syntax(
                format!("invalid number literal '{text}': leading zeros are not allowed"),
                span,
            ));
        }
        let value: f64 = text
            .parse()
            .map_err(|_| QueryError::syntax(format!("invalid number literal '{text}'"), span))?;
        if !value.is_finite() {
            return Err(QueryError::syntax(
                format!("number literal '{text}' is out of range"),
                span,
            ));
        }
        self.push(TokenKind::Number(value), start);
        Ok(())
    }

    fn string(&mut self, quote: char) -> Result<(), QueryError> {
        let start = self.pos;
        self.pos += 1;
        let value = self.quoted_body(
            quote.encode_utf8(&mut [0; 4]),
            start,
            "unterminated string literal",
        )?;
        self.push(TokenKind::String(value), start);
        Ok(())
    }

    fn quoted_name(&mut self, tick: &str) -> Result<(), QueryError> {
        let start = self.pos;
        self.pos += tick.len();
        let value = self.quoted_body(tick, start, "unterminated quoted name")?;
        if value.is_empty() {
            return Err(QueryError::syntax(
                "empty quoted name: a name in backticks needs at least one character",
                Span::new(start, self.pos),
            ));
        }
        self.push(TokenKind::QuotedIdent(value), start);
        Ok(())
    }

    /// Reads up to and including the closing `close`, resolving escapes. `start` is
    /// where the opening quote began (for the unterminated error).
    fn quoted_body(
        &mut self,
        close: &str,
        start: usize,
        unterminated: &str,
    ) -> Result<String, QueryError> {
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(ch) = rest.chars().next() else {
                return Err(QueryError::syntax(
                    format!("{unterminated}: missing closing {close}"),
                    Span::new(start, start + close.len().max(1)),
                ));
            };
            if rest.starts_with(close) {
                self.pos += close.len();
                return Ok(out);
            }
            if ch != '\\' {
                out.push(ch);
                self.pos += ch.len_utf8();
                continue;
            }
            let esc_start = self.pos;
            let Some(escaped) = rest[1..].chars().next() else {
                return Err(QueryError::syntax(
                    format!("{unterminated}: missing closing {close}"),
                    Span::new(start, start + close.len().max(1)),
                ));
            };
            self.pos += 1 + escaped.len_utf8();
            let resolved = match escaped {
                '"' | '\'' | '\\' | '/' | '`' | '\u{b4}' => escaped,
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => self.unicode_escape(esc_start)?,
                other => {
                    let shown: String = other.escape_debug().collect();
                    return Err(QueryError::syntax(
                        format!(
                            "unknown escape sequence '\\{shown}': use \\\\ for a literal backslash"
                        ),
                        Span::new(esc_start, self.pos),
                    ));
                }
            };
            out.push(resolved);
        }
    }

    /// After `\u` (at `esc_start`): four hex digits, and a second `\uXXXX` for the low
    /// half when the first is a high surrogate.
    fn unicode_escape(&mut self, esc_start: usize) -> Result<char, QueryError> {
        let high = self.hex4(esc_start)?;
        if (0xDC00..0xE000).contains(&high) {
            return Err(QueryError::syntax(
                format!("invalid unicode escape '\\u{high:04X}': a low surrogate must follow a high surrogate"),
                Span::new(esc_start, self.pos),
            ));
        }
        if !(0xD800..0xDC00).contains(&high) {
            // Not a surrogate, so always a valid scalar value.
            return char::from_u32(high).ok_or_else(|| {
                QueryError::syntax("invalid unicode escape", Span::new(esc_start, self.pos))
            });
        }
        let second = self.pos;
        if !self.src[second..].starts_with("\\u") {
            return Err(QueryError::syntax(
                format!("invalid unicode escape '\\u{high:04X}': a high surrogate must be followed by a low surrogate (\\uDC00-\\uDFFF)"),
                Span::new(esc_start, self.pos),
            ));
        }
        self.pos += 2;
        let low = self.hex4(second)?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(QueryError::syntax(
                format!("invalid unicode escape '\\u{high:04X}\\u{low:04X}': a high surrogate must be followed by a low surrogate (\\uDC00-\\uDFFF)"),
                Span::new(esc_start, self.pos),
            ));
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        char::from_u32(code).ok_or_else(|| {
            QueryError::syntax("invalid unicode escape", Span::new(esc_start, self.pos))
        })
    }

    fn hex4(&mut self, esc_start: usize) -> Result<u32, QueryError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit));
        let Some(digits) = digits else {
            let end = (self.pos..self.pos + 4)
                .take_while(|&i| self.bytes.get(i).is_some_and(u8::is_ascii_hexdigit))
                .last()
                .map_or(self.pos, |i| i + 1);
            return Err(QueryError::syntax(
                "invalid unicode escape: \\u must be followed by four hexadecimal digits",
                Span::new(esc_start, end),
            ));
        };
        let mut value = 0u32;
        for &d in digits {
            value = value * 16 + (d as char).to_digit(16).unwrap_or(0);
        }
        self.pos += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text).tokens.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn keywords_any_case_identifiers_keep_spelling() {
        assert_eq!(
            kinds("for FoR Users count"),
            [
                TokenKind::Keyword(Keyword::For),
                TokenKind::Keyword(Keyword::For),
                TokenKind::Ident("Users".into()),
                TokenKind::Ident("count".into()),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn spans_and_end_of_input() {
        let lexed = tokenize("  a  >=  'x'  \n\n");
        let spans: Vec<(usize, usize)> = lexed
            .tokens
            .iter()
            .map(|t| (t.span.start, t.span.end))
            .collect();
        // The end sits right after the last token, not after trailing blank lines.
        assert_eq!(spans, [(2, 3), (5, 7), (9, 12), (12, 12)]);
        assert!(lexed.error.is_none());
    }

    #[test]
    fn error_stops_the_tokens_there() {
        let lexed = tokenize("a + 'open");
        assert_eq!(lexed.tokens.len(), 3);
        assert_eq!(lexed.tokens[2].kind, TokenKind::Eof);
        assert_eq!(lexed.tokens[2].span, Span::new(4, 4));
        let error = lexed.error.expect("an error");
        assert_eq!(error.span, Some(Span::new(4, 5)));
    }

    #[test]
    fn operators_take_the_longest_valid_form() {
        use Punct as P;
        let ops: Vec<TokenKind> = [
            P::EqEq,
            P::NotEq,
            P::Le,
            P::Ge,
            P::Lt,
            P::Gt,
            P::RegexMatch,
            P::RegexNotMatch,
            P::AndAnd,
            P::OrOr,
            P::Range,
            P::Scope,
            P::Colon,
            P::Bang,
            P::Assign,
            P::Minus,
        ]
        .into_iter()
        .map(TokenKind::Punct)
        .chain([TokenKind::Eof])
        .collect();
        assert_eq!(kinds("== != <= >= < > =~ !~ && || .. :: : ! = -"), ops);
        // `a==-1` and `!!x` split as AQL means them.
        assert_eq!(
            kinds("a==-1"),
            [
                TokenKind::Ident("a".into()),
                TokenKind::Punct(P::EqEq),
                TokenKind::Punct(P::Minus),
                TokenKind::Number(1.0),
                TokenKind::Eof,
            ]
        );
        assert_eq!(
            kinds("!!")[..2],
            [TokenKind::Punct(P::Bang), TokenKind::Punct(P::Bang)]
        );
    }
}
