//! A kept body as the bodies line shows it: its secrets redacted, cut after
//! `max` bytes on a character boundary, with a marker saying how many bytes
//! were left out.

use std::borrow::Cow;
use std::ops::Range;

use super::redact::{REDACTED, secrets};

/// `kept`, the first bytes of a body `total` bytes long, shown: at most
/// `max` bytes of it, each secret replaced by `[REDACTED]` (a secret that
/// begins before the cut is replaced whole), then `…[N more bytes]` when N
/// bytes were left out. A body that is not UTF-8 is shown with its invalid
/// bytes replaced (and the count of those left out is then approximate).
pub(super) fn excerpt(kept: &[u8], total: usize, max: usize) -> String {
    let text = text_of(kept);
    let cut = floor_char_boundary(&text, max);
    let mut shown = String::with_capacity(cut + REDACTED.len() + 32);
    let mut at = 0;
    for Range { start, end } in secrets(&text) {
        if start >= cut {
            break;
        }
        shown.push_str(&text[at..start]);
        shown.push_str(REDACTED);
        at = end;
    }
    if at < cut {
        shown.push_str(&text[at..cut]);
        at = cut;
    }
    let left = total.saturating_sub(at);
    if left > 0 {
        shown.push_str("…[");
        shown.push_str(itoa::Buffer::new().format(left));
        shown.push_str(" more bytes]");
    }
    shown
}

/// `kept` as text: whole when it is UTF-8, without the partial character
/// it may end in (it is the start of a longer body), lossily otherwise.
fn text_of(kept: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(kept) {
        Ok(text) => Cow::Borrowed(text),
        Err(e) if e.error_len().is_none() => {
            Cow::Borrowed(std::str::from_utf8(&kept[..e.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => String::from_utf8_lossy(kept),
    }
}

/// The largest character boundary of `text` at or before `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn a_short_body_is_shown_whole() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(excerpt(body.as_bytes(), body.len(), 100), body);
    }

    #[test]
    fn a_long_body_is_cut_on_a_character_boundary_with_the_count_left_out() {
        // `é` is two bytes: a cut at 2 would split it.
        let body = "aé and more";
        let shown = excerpt(body.as_bytes(), body.len(), 2);
        assert_eq!(shown, "a…[11 more bytes]");
        let shown = excerpt(body.as_bytes(), body.len(), 3);
        assert_eq!(shown, "aé…[9 more bytes]");
        // Only the start was kept: the count is of the whole body.
        let shown = excerpt(&body.as_bytes()[..2], 1000, 2);
        assert_eq!(shown, "a…[999 more bytes]");
    }

    #[test]
    fn a_secret_across_the_cut_is_redacted_whole() {
        let key = format!("sk-proj-{}", "A1b2".repeat(10));
        let body = format!("my key is {key} ok");
        let shown = excerpt(body.as_bytes(), body.len(), 14);
        assert_eq!(shown, "my key is [REDACTED]…[3 more bytes]");
        assert!(!shown.contains("sk-"));
        // Before the cut, secrets are redacted and the text between them kept.
        let shown = excerpt(body.as_bytes(), body.len(), body.len());
        assert_eq!(shown, "my key is [REDACTED] ok");
    }
}
