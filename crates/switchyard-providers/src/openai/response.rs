//! Reading what matters out of a complete (non-streamed) response body.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;

use super::types::Usage;

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `usage` object of a chat, completion or embedding response, if the body has one.
///
/// Providers put `usage` last, so it is looked for from the end first (a
/// vectorised search, then a parse of that object alone) and taken when only
/// the response's closing brace follows it: then it is a member of the
/// top-level object, not of something nested. Any other body is parsed whole.
pub fn usage_of_response(body: &[u8]) -> Option<Usage> {
    if let Some((usage, after)) = last_usage(body)
        && after.trim_ascii() == b"}"
    {
        return Some(usage);
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// The `usage` object found in the last part of a response too large to keep
/// whole: the last `"usage":` key outside any string (inside a JSON string the
/// quotes would be escaped), read up to the end of its object.
pub fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    last_usage(tail).map(|(usage, _)| usage)
}

/// How much of a body's end is searched first for its usage.
const USAGE_WINDOW: usize = 1024;

static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// The value of the last `"usage":` key, if it reads as usage, and what follows it.
fn last_usage(json: &[u8]) -> Option<(Usage, &[u8])> {
    const KEY: &[u8] = b"\"usage\"";
    // Usage comes last and is short: a forward (vectorised) search of the end
    // finds it without walking the body backwards byte by byte.
    let tail_from = json.len().saturating_sub(USAGE_WINDOW);
    let at = match USAGE_KEY.find_iter(&json[tail_from..]).last() {
        Some(at) => tail_from + at,
        None => memchr::memmem::rfind(json, KEY)?,
    };
    let rest = json[at + KEY.len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?;
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Usage>();
    let usage = values.next()?.ok()?;
    Some((usage, &rest[values.byte_offset()..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openai::chat::ChatCompletion;

    #[test]
    fn reads_usage_and_ignores_the_rest() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(
            usage_of_response(body),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5,
                ..Usage::default()
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
                total_tokens: 7,
                ..Usage::default()
            })
        );
        assert_eq!(usage_in_tail(br#"1,2,3]}]}"#), None);
    }

    #[test]
    fn a_long_usage_object_is_found_beyond_the_search_window() {
        let padding = "x".repeat(3 * USAGE_WINDOW);
        let body = format!(
            r#"{{"choices":[],"usage":{{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5,"note":"{padding}"}}}}"#
        );
        assert_eq!(
            usage_of_response(body.as_bytes()).map(|u| u.total_tokens),
            Some(5)
        );
    }

    #[test]
    fn usage_nested_deeper_is_not_the_response_usage() {
        let body = br#"{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"choices":[{"message":{"tool_calls":[{"function":{"arguments":{"usage":{"prompt_tokens":9}}}}]}}]}"#;
        assert_eq!(
            usage_of_response(body),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                total_tokens: 2,
                ..Usage::default()
            })
        );
        let quoted = br#"{"choices":[{"message":{"content":"say \"usage\": {}"}}],"usage":{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9} }"#;
        assert_eq!(usage_of_response(quoted).map(|u| u.total_tokens), Some(9));
        assert_eq!(usage_of_response(br#"{"id":"x","usage":null}"#), None);
    }

    /// A reasoning model's answer to a prompt mostly read from the cache.
    const CACHED_REASONING: Usage = Usage {
        prompt_tokens: 2006,
        completion_tokens: 300,
        total_tokens: 2306,
        cached_tokens: 1920,
        cache_write_tokens: 0,
        reasoning_tokens: 192,
    };

    const DETAILED_USAGE: &str = r#"{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;

    #[test]
    fn reads_cached_and_reasoning_tokens_wherever_usage_stands() {
        let head = r#"{"id":"chatcmpl-BOYx5","object":"chat.completion","created":1745251234,"model":"o4-mini-2025-04-16","choices":[{"index":0,"message":{"role":"assistant","content":"42","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":"#;
        // As OpenAI sends it: `service_tier` and `system_fingerprint` after
        // `usage`, so the body is parsed whole.
        let openai = format!(
            r#"{head}{DETAILED_USAGE},"service_tier":"default","system_fingerprint":null}}"#
        );
        assert_eq!(usage_of_response(openai.as_bytes()), Some(CACHED_REASONING));
        // `usage` last: read from the end alone.
        let last = format!("{head}{DETAILED_USAGE}}}");
        assert_eq!(usage_of_response(last.as_bytes()), Some(CACHED_REASONING));
        assert_eq!(
            usage_in_tail(&last.as_bytes()[head.len() - 20..]),
            Some(CACHED_REASONING)
        );
        // Translated for a client of another dialect, the answer is parsed whole.
        let completion: ChatCompletion = serde_json::from_str(&openai).unwrap();
        assert_eq!(completion.usage.map(|u| u.totals()), Some(CACHED_REASONING));
    }
}
