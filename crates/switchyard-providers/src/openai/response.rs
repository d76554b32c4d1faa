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
}
