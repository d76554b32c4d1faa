//! Where the secrets in a body's text are: provider and gateway keys and
//! tokens wherever they stand (a prompt, a string, a header pasted into
//! one), and the string values of JSON members whose names say secret. Each
//! is a byte range of the text, shown as [`REDACTED`].
//!
//! One pass over the bytes for each kind, no pattern engine: a key is found
//! by its prefix at the start of a word and the run of bytes its kind is
//! made of; a member by walking the text's strings in order (a JSON body,
//! or the `data:` lines of an event stream, whose JSON is the only quoted
//! text in it).

use std::ops::Range;

use crate::keys::secret::KEY_PREFIX;

/// What a secret is shown as.
pub(super) const REDACTED: &str = "[REDACTED]";

/// The secrets of `text`, in order, none overlapping another.
pub(super) fn secrets(text: &str) -> Vec<Range<usize>> {
    let text = text.as_bytes();
    let mut found = Vec::new();
    keys(text, &mut found);
    members(text, &mut found);
    found.sort_unstable_by_key(|range| range.start);
    // A key inside a secret member's value is part of it.
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(found.len());
    for range in found {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// The shape of a key or token: how it begins, the bytes it goes on with,
/// how many of those at least (fewer: a word that only looks like one), and
/// how many dots among them at least.
struct Shape {
    prefix: &'static [u8],
    byte: fn(u8) -> bool,
    min: usize,
    dots: usize,
}

impl Shape {
    const fn new(prefix: &'static [u8], byte: fn(u8) -> bool, min: usize) -> Self {
        Self {
            prefix,
            byte,
            min,
            dots: 0,
        }
    }

    /// Where the key of this shape that begins at `at` ends, if one does.
    fn end_of(&self, text: &[u8], at: usize) -> Option<usize> {
        let rest = text.get(at..)?.strip_prefix(self.prefix)?;
        let len = rest.iter().take_while(|&&b| (self.byte)(b)).count();
        let dots = rest[..len].iter().filter(|&&b| b == b'.').count();
        (len >= self.min && dots >= self.dots).then_some(at + self.prefix.len() + len)
    }
}

/// The keys and tokens found, the first that fits winning: the gateway's
/// own virtual keys; OpenAI's (`sk-`, `sk-proj-`, `sk-svcacct-`) and
/// Anthropic's (`sk-ant-`); Google API keys; AWS access key ids (long-term
/// and temporary); GitHub tokens (classic and fine-grained); Slack tokens;
/// any `Bearer` credential; JSON Web Tokens.
const SHAPES: &[Shape] = &[
    Shape::new(KEY_PREFIX.as_bytes(), key_byte, 16),
    Shape::new(b"sk-", key_byte, 20),
    Shape::new(b"AIza", key_byte, 30),
    Shape::new(b"AKIA", upper_or_digit, 16),
    Shape::new(b"ASIA", upper_or_digit, 16),
    Shape::new(b"ghp_", alphanumeric, 30),
    Shape::new(b"gho_", alphanumeric, 30),
    Shape::new(b"ghu_", alphanumeric, 30),
    Shape::new(b"ghs_", alphanumeric, 30),
    Shape::new(b"ghr_", alphanumeric, 30),
    Shape::new(b"github_pat_", word_byte, 22),
    Shape::new(b"xox", slack_byte, 12),
    Shape::new(b"Bearer ", token68_byte, 16),
    Shape::new(b"bearer ", token68_byte, 16),
    Shape::new(b"BEARER ", token68_byte, 16),
    // Header, payload and signature: base64url parts joined by dots.
    Shape {
        prefix: b"eyJ",
        byte: jwt_byte,
        min: 16,
        dots: 2,
    },
];

fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn upper_or_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn alphanumeric(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn slack_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// The bytes of an HTTP `token68` credential.
fn token68_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

fn jwt_byte(b: u8) -> bool {
    key_byte(b) || b == b'.'
}

/// Every key or token of the [`SHAPES`] that begins a word.
fn keys(text: &[u8], found: &mut Vec<Range<usize>>) {
    let mut at = 0;
    while at < text.len() {
        if begins_word(text, at)
            && let Some(end) = SHAPES.iter().find_map(|shape| shape.end_of(text, at))
        {
            found.push(at..end);
            at = end;
        } else {
            at += 1;
        }
    }
}

/// Whether a word begins at `at`: no letter, digit or `_` right before it,
/// or the letter of a JSON escape (`\n`, `\t`, …), as in `"key:\nsk-…"`.
fn begins_word(text: &[u8], at: usize) -> bool {
    let Some(before) = at.checked_sub(1).and_then(|i| text.get(i)) else {
        return true;
    };
    if !word_byte(*before) {
        return true;
    }
    let escaped = at.checked_sub(2).and_then(|i| text.get(i)) == Some(&b'\\');
    escaped && matches!(before, b'n' | b'r' | b't' | b'b' | b'f')
}

/// The string value of every member whose name says secret (see
/// [`secret_name`]); other values (numbers, objects, `null`) stay, and the
/// members inside an object are judged by their own names.
fn members(text: &[u8], found: &mut Vec<Range<usize>>) {
    let mut at = 0;
    while let Some(open) = text.get(at..).and_then(|rest| memchr::memchr(b'"', rest)) {
        let name = at + open + 1..string_end(text, at + open + 1);
        let colon = skip_space(text, name.end + 1);
        if text.get(colon) != Some(&b':') {
            at = name.end + 1;
            continue;
        }
        let value = skip_space(text, colon + 1);
        if text.get(value) == Some(&b'"') && secret_name(&text[name]) {
            let end = string_end(text, value + 1);
            found.push(value + 1..end);
            at = end + 1;
        } else {
            at = colon + 1;
        }
    }
}

/// Where the JSON string whose text begins at `from` ends: its closing
/// quote, or the end of `text` (a body cut inside it).
fn string_end(text: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(found) = text
        .get(at..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        let i = at + found;
        if text[i] == b'"' {
            return i;
        }
        // A backslash: the byte after it is escaped.
        at = i + 2;
    }
    text.len()
}

/// The first byte at or after `at` that is not JSON whitespace.
fn skip_space(text: &[u8], at: usize) -> usize {
    let rest = text.get(at..).unwrap_or_default();
    at + rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// Longest member name judged (folded); a longer one is no secret's.
const NAME_MAX: usize = 64;

/// Whether a member of this name holds a secret. The name is folded
/// (ASCII lowercase, `_` and `-` left out: `apiKey`, `api_key`, `x-api-key`
/// read alike) and then names a secret when it ends in `token` (`token`,
/// `access_token`, `refresh_token`, but not the `max_tokens` and
/// `*_tokens` counts), `apikey`, `authorization`, `privatekey` or `cookie`,
/// or holds `secret`, `password`, `passwd` or `passphrase`.
fn secret_name(name: &[u8]) -> bool {
    const ENDINGS: [&[u8]; 5] = [
        b"token",
        b"apikey",
        b"authorization",
        b"privatekey",
        b"cookie",
    ];
    const WITHIN: [&[u8]; 4] = [b"secret", b"password", b"passwd", b"passphrase"];
    let mut folded = [0u8; NAME_MAX];
    let mut len = 0;
    for &b in name.iter().filter(|&&b| b != b'_' && b != b'-') {
        let Some(slot) = folded.get_mut(len) else {
            return false;
        };
        *slot = b.to_ascii_lowercase();
        len += 1;
    }
    let name = &folded[..len];
    ENDINGS.iter().any(|ending| name.ends_with(ending))
        || WITHIN
            .iter()
            .any(|word| name.windows(word.len()).any(|w| w == *word))
}

#[cfg(test)]
mod tests;
