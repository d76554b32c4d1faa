//! Reading what matters out of a complete (non-streamed) response body.

use serde::Deserialize;

use super::types::Usage;

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `usage` object of a chat, completion or embedding response, if the body has one.
pub fn usage_of_response(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// The `usage` object found in the last part of a response too large to keep
/// whole: the last `"usage":` key outside any string (inside a JSON string the
/// quotes would be escaped), read up to the end of its object.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = tail[at + KEY.len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?;
    serde_json::Deserializer::from_slice(rest)
        .into_iter::<Usage>()
        .next()?
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_and_ignores_the_rest() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(
            usage_of_response(body),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5
            })
        );
        assert_eq!(usage_of_response(b"{\"id\":1}"), None);
        assert_eq!(usage_of_response(b"not json"), None);
    }

    #[test]
    fn reads_usage_from_the_tail_of_a_large_body() {
        let tail = br#"0.1,0.2]}],"model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        assert_eq!(
            usage_in_tail(tail),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 0,
                total_tokens: 7
            })
        );
        assert_eq!(usage_in_tail(br#"1,2,3]}]}"#), None);
    }
}
