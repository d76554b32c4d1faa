//! Words: how the mock counts them, pads replies with them and streams them.

/// Words appended after the echo until a reply has its length, in this order, cycling.
const FILLER: [&str; 19] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
];

/// The mock's token count: whitespace-separated words (as `str::split_whitespace` splits).
pub(crate) fn count_words(text: &str) -> u64 {
    if !text.is_ascii() {
        return text.split_whitespace().count() as u64;
    }
    // Prompts are counted on every request: a byte loop is several times faster than
    // decoding chars, and ASCII's white space is these six bytes.
    let mut words = 0;
    let mut after_space = true;
    for byte in text.bytes() {
        let space = matches!(byte, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ');
        words += u64::from(after_space && !space);
        after_space = space;
    }
    words
}

/// A reply made of words joined by single spaces.
#[derive(Debug, PartialEq)]
pub(crate) struct EchoText {
    /// The reply.
    pub text: String,
    /// Its words.
    pub words: u64,
    /// Whether `limit` cut it short.
    pub truncated: bool,
    /// The stop sequence it was cut before, if one was found in it.
    pub stop_sequence: Option<String>,
}

impl EchoText {
    /// Cuts the text before the earliest occurrence of any of `stops` (on a tie, the one
    /// listed first), as a model stops when it generates a stop sequence; the sequence
    /// itself is not part of the text. Empty sequences never match.
    pub(crate) fn stop_at(&mut self, stops: &[String]) {
        let earliest = stops
            .iter()
            .filter(|stop| !stop.is_empty())
            .filter_map(|stop| self.text.find(stop.as_str()).map(|at| (at, stop)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = earliest {
            self.text.truncate(at);
            self.words = count_words(&self.text);
            self.stop_sequence = Some(stop.clone());
        }
    }
}

/// `echo:` and the words of `source`, then filler words until the reply has `target`
/// words (an echo longer than that stays whole), then cut to `limit` words.
pub(crate) fn echo(source: &str, target: u64, limit: Option<u64>) -> EchoText {
    let full = (1 + count_words(source)).max(target);
    let words = limit.map_or(full, |limit| limit.min(full));
    let mut text = String::with_capacity(8 * words as usize);
    std::iter::once("echo:")
        .chain(source.split_whitespace())
        .chain(FILLER.iter().copied().cycle())
        .take(words as usize)
        .for_each(|word| {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(word);
        });
    EchoText {
        text,
        words,
        truncated: words < full,
        stop_sequence: None,
    }
}

/// Splits `text` into one piece per word, each piece being the word with the whitespace
/// before it (and the last one also the whitespace after it), so that the pieces
/// concatenate back to `text` exactly. Text without words is one piece.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    // Where the last word ended, until the next word starts.
    let mut word_end = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                word_end = Some(i);
            }
            in_word = false;
        } else {
            if let Some(end) = word_end.take() {
                pieces.push(&text[start..end]);
                start = end;
            }
            in_word = true;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_whitespace_separated_words() {
        assert_eq!(count_words(""), 0);
        assert_eq!(count_words("  "), 0);
        assert_eq!(count_words("one"), 1);
        assert_eq!(count_words(" two\twords\n"), 2);
        assert_eq!(count_words("a\u{0B}b\u{0C}c\rd"), 4);
        assert_eq!(count_words("a\u{1F}b"), 1);
        assert_eq!(count_words("non\u{A0}ascii\u{3000}space é"), 4);
        // The ASCII fast path agrees with `split_whitespace` on every byte.
        for byte in 0u8..128 {
            let text = format!("x{}y {}", byte as char, byte as char);
            assert_eq!(
                count_words(&text),
                text.split_whitespace().count() as u64,
                "{byte}"
            );
        }
    }

    #[test]
    fn echo_pads_with_filler_up_to_the_target() {
        let reply = echo("hello   world", 5, None);
        assert_eq!(reply.text, "echo: hello world lorem ipsum");
        assert_eq!(reply.words, 5);
        assert!(!reply.truncated);
    }

    #[test]
    fn filler_cycles() {
        let reply = echo("", 22, None);
        let words: Vec<&str> = reply.text.split(' ').collect();
        assert_eq!(words.len(), 22);
        assert_eq!(words[1..4], ["lorem", "ipsum", "dolor"]);
        assert_eq!(words[19], "aliqua");
        assert_eq!(words[20..], ["lorem", "ipsum"]);
    }

    #[test]
    fn a_long_echo_stays_whole() {
        let reply = echo("a b c d e", 3, None);
        assert_eq!(reply.text, "echo: a b c d e");
        assert_eq!(reply.words, 6);
    }

    #[test]
    fn limit_cuts_and_says_so() {
        let reply = echo("a b c", 16, Some(2));
        assert_eq!(reply.text, "echo: a");
        assert_eq!(reply.words, 2);
        assert!(reply.truncated);

        let exact = echo("a", 3, Some(3));
        assert_eq!(exact.text, "echo: a lorem");
        assert!(!exact.truncated);
    }

    #[test]
    fn stop_sequences_cut_before_the_earliest() {
        let stops = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut reply = echo("a b c", 6, None);
        reply.stop_at(&stops(&["", "lorem", " b", "zzz"]));
        assert_eq!(reply.text, "echo: a");
        assert_eq!(reply.words, 2);
        assert_eq!(reply.stop_sequence.as_deref(), Some(" b"));

        // A tie goes to the sequence listed first; no match leaves the text alone.
        let mut reply = echo("a b", 3, None);
        reply.stop_at(&stops(&["a b", "a"]));
        assert_eq!(reply.text, "echo: ");
        assert_eq!(reply.words, 1);
        assert_eq!(reply.stop_sequence.as_deref(), Some("a b"));
        let mut reply = echo("a", 2, None);
        reply.stop_at(&stops(&["x"]));
        assert_eq!(
            (reply.text.as_str(), reply.stop_sequence),
            ("echo: a", None)
        );
    }

    #[test]
    fn pieces_concatenate_back() {
        for text in [
            "echo: hello world",
            "one",
            "",
            "  ",
            " lead",
            "trail ",
            "{\"echo\":\"a  b\tc\"}",
            "x \u{3000}y",
        ] {
            let pieces = pieces(text);
            assert_eq!(pieces.concat(), text, "{text:?}");
            assert_eq!(
                pieces.len() as u64,
                count_words(text).max(1),
                "{text:?}: {pieces:?}"
            );
        }
        assert_eq!(pieces("echo: hello world"), ["echo:", " hello", " world"]);
        assert_eq!(pieces("a b "), ["a", " b "]);
    }
}
