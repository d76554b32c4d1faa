//! What kind of failure an error of OpenAI, or of an OpenAI-compatible server
//! (Azure OpenAI, DeepSeek, vLLM, OpenRouter, Groq), is.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::codec::named_status;
use super::types::ErrorObject;
use crate::ErrorClass;
use crate::error_class::Wording;

/// `{"error": {...}}`, read for the fields classing needs.
#[derive(Deserialize)]
struct Envelope {
    error: Detail,
}

/// An OpenAI error object with the extras some servers add.
#[derive(Deserialize)]
struct Detail {
    #[serde(flatten)]
    object: ErrorObject,
    /// Azure OpenAI's detail of a refusal.
    #[serde(default)]
    innererror: Option<InnerError>,
    /// OpenRouter's detail of an error.
    #[serde(default)]
    metadata: Option<Metadata>,
}

/// Azure OpenAI's `innererror`: code `ResponsibleAIPolicyViolation` for a
/// refusal of its content filter.
#[derive(Deserialize)]
struct InnerError {
    #[serde(default)]
    code: Option<String>,
}

/// OpenRouter's `metadata`: `flagged_input` when its moderation refused the
/// prompt (with status 403).
#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    flagged_input: Option<IgnoredAny>,
}

/// How OpenAI-compatible servers word a refusal that comes without a code
/// (DeepSeek's and vLLM's context length, an older Azure content filter).
const WORDING: Wording = Wording {
    context_length: &["context length", "context window", "too many tokens"],
    content_policy: &["content management policy", "safety system"],
};

/// What kind of failure an OpenAI error is: `body` an error response
/// (`{"error": {"message", "type", "param", "code"}}`) of HTTP `status`, or
/// the data of a stream event carrying an error, with the status its
/// [`Fault`](crate::translate::Fault) stands for ([`status_of`](super::status_of)).
///
/// OpenRouter's moderation refusal (`metadata.flagged_input`, sent with 403)
/// is [`ContentPolicy`](ErrorClass::ContentPolicy) whatever the status. Else
/// a status that settles it (401–404, 408, 429, 5xx) comes first; then the
/// code: `context_length_exceeded`, `content_policy_violation`,
/// `content_filter` (Azure, also an inner `ResponsibleAIPolicyViolation`),
/// `rate_limit_exceeded` and `insufficient_quota`, `invalid_api_key`,
/// `model_not_found`, and `string_above_max_length` (a plain invalid request:
/// no larger window takes a string over the limit); then the type, read as
/// the status it stands for; and for a refusal (400, 413, 422) with no such
/// code, the message's words for a context length or a content filter. A body
/// of another shape is classed by its status, and its text read the same way
/// for a 400, 413 or 422.
pub fn classify_error(status: u16, body: &[u8]) -> ErrorClass {
    let Ok(Envelope { error }) = serde_json::from_slice(body) else {
        return ErrorClass::of_text(status, body, &WORDING);
    };
    if error.flagged() {
        return ErrorClass::ContentPolicy;
    }
    ErrorClass::settled_by(status).unwrap_or_else(|| error.class(status))
}

impl Detail {
    /// Whether OpenRouter's moderation flagged the prompt.
    fn flagged(&self) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|metadata| metadata.flagged_input.is_some())
    }

    /// The class of an error of a status that does not settle it.
    fn class(&self, status: u16) -> ErrorClass {
        self.coded().unwrap_or_else(|| {
            let named = named_status(&self.object).unwrap_or(status);
            ErrorClass::of_status(named).or_worded(status, &self.object.message, &WORDING)
        })
    }

    /// The class the error's code (or Azure's inner code) names.
    fn coded(&self) -> Option<ErrorClass> {
        let inner = self.innererror.as_ref().and_then(|e| e.code.as_deref());
        if inner == Some("ResponsibleAIPolicyViolation") {
            return Some(ErrorClass::ContentPolicy);
        }
        match self.object.code.as_deref()? {
            "context_length_exceeded" => Some(ErrorClass::ContextLength),
            "content_policy_violation" | "content_filter" => Some(ErrorClass::ContentPolicy),
            "rate_limit_exceeded" | "insufficient_quota" => Some(ErrorClass::RateLimited),
            "invalid_api_key" => Some(ErrorClass::Auth),
            "model_not_found" => Some(ErrorClass::NotFound),
            "string_above_max_length" => Some(ErrorClass::InvalidRequest),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_class::{assert_classes, assert_stream_classes};
    use crate::openai::{StreamEvent, classify_event, status_of};
    use crate::translate::Fault;
    use ErrorClass::*;

    #[test]
    fn context_length() {
        assert_classes(
            classify_error,
            &[
                // OpenAI, with its code.
                (
                    400,
                    r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130532 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                    ContextLength,
                ),
                // DeepSeek: the type as the code, the message says it.
                (
                    400,
                    r#"{"error":{"message":"This model's maximum context length is 65536 tokens. However, you requested 72312 tokens (72312 in the messages, 0 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#,
                    ContextLength,
                ),
                // vLLM before it wrapped its errors: not OpenAI's shape, read as text.
                (
                    400,
                    r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5120 tokens (4096 in the messages, 1024 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#,
                    ContextLength,
                ),
            ],
        );
    }

    #[test]
    fn content_policy() {
        assert_classes(
            classify_error,
            &[
                (
                    400,
                    r#"{"error":{"code":"content_policy_violation","message":"Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.","param":null,"type":"invalid_request_error"}}"#,
                    ContentPolicy,
                ),
                (
                    400,
                    r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":true,"severity":"medium"}}}}}"#,
                    ContentPolicy,
                ),
                // Azure's inner code alone.
                (
                    400,
                    r#"{"error":{"message":"Your request was rejected.","type":null,"param":"prompt","code":"BadRequest","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
                    ContentPolicy,
                ),
                // OpenRouter's moderation, with 403.
                (
                    403,
                    r#"{"error":{"code":403,"message":"openai/gpt-4o requires moderation on OpenRouter. Your input was flagged for \"violence\". No credits were charged.","metadata":{"reasons":["violence"],"flagged_input":"...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"#,
                    ContentPolicy,
                ),
            ],
        );
    }

    #[test]
    fn limits_and_overloads() {
        let overloaded = r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#;
        assert_classes(
            classify_error,
            &[
                (503, overloaded, Overloaded),
                (529, overloaded, Overloaded),
                (
                    429,
                    r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                    RateLimited,
                ),
                (
                    429,
                    r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
                    RateLimited,
                ),
                // Groq: a request larger than the tokens-per-minute limit, as 413.
                (
                    413,
                    r#"{"error":{"message":"Request too large for model `llama-3.3-70b-versatile` in organization `org_01` service tier `on_demand` on tokens per minute (TPM): Limit 12000, Requested 15000, please reduce your message size and try again.","type":"tokens","code":"rate_limit_exceeded"}}"#,
                    RateLimited,
                ),
            ],
        );
    }

    #[test]
    fn auth_and_not_found() {
        let unknown_model = r#"{"error":{"message":"The model `gpt-5-mega` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        assert_classes(
            classify_error,
            &[
                (
                    401,
                    r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                    Auth,
                ),
                (
                    403,
                    r#"{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","param":null,"type":"request_forbidden"}}"#,
                    Auth,
                ),
                // OpenRouter, out of credits.
                (
                    402,
                    r#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits"}}"#,
                    Auth,
                ),
                (404, unknown_model, NotFound),
                // A relay that answers an unknown model with 400.
                (400, unknown_model, NotFound),
            ],
        );
    }

    #[test]
    fn invalid_request_and_server() {
        assert_classes(
            classify_error,
            &[
                (
                    400,
                    r#"{"error":{"message":"Invalid type for 'temperature': expected a decimal, but got a string instead.","type":"invalid_request_error","param":"temperature","code":"invalid_type"}}"#,
                    InvalidRequest,
                ),
                (
                    400,
                    r#"{"error":{"message":"Invalid 'messages[1].content': string too long. Expected a string with maximum length 10485760, but got a string with length 12000000 instead.","type":"invalid_request_error","param":"messages[1].content","code":"string_above_max_length"}}"#,
                    InvalidRequest,
                ),
                (
                    422,
                    r#"{"error":{"message":"[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required'}]","type":"BadRequestError","param":null,"code":422}}"#,
                    InvalidRequest,
                ),
                (
                    500,
                    r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
                    Server,
                ),
                // A 5xx settles it, whatever the code says.
                (
                    502,
                    r#"{"error":{"message":"context length","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
                    Server,
                ),
            ],
        );
    }

    #[test]
    fn bodies_of_another_shape_by_status() {
        let context = "Prompt exceeds the model's context window";
        assert_classes(
            classify_error,
            &[
                (
                    502,
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                    Server,
                ),
                (503, "upstream connect error", Overloaded),
                (429, "Too Many Requests", RateLimited),
                (401, "", Auth),
                (404, "404 page not found", NotFound),
                (
                    413,
                    "<html><h1>413 Request Entity Too Large</h1></html>",
                    InvalidRequest,
                ),
                (400, context, ContextLength),
                (500, context, Server),
                (400, "bad request", InvalidRequest),
            ],
        );
    }

    /// The error a stream event carries, with the status it stands for.
    fn fault(data: &[u8]) -> Option<Fault> {
        match classify_event(data) {
            StreamEvent::Error(error) => Some(Fault {
                status: status_of(&error),
                error,
            }),
            _ => None,
        }
    }

    #[test]
    fn stream_errors_with_the_status_they_stand_for() {
        assert_stream_classes(
            fault,
            classify_error,
            &[
                (
                    r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":null}}"#,
                    RateLimited,
                ),
                (
                    r#"{"error":{"message":"The model produced invalid content.","type":"server_error"}}"#,
                    Server,
                ),
                (
                    r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":null}}"#,
                    ContextLength,
                ),
            ],
        );
    }
}
