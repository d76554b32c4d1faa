//! The Google Gemini API (`generativelanguage.googleapis.com/v1beta`) as a
//! provider dialect: OpenAI chat requests written as `generateContent` bodies,
//! its answers, streams, errors and embeddings read back in OpenAI's shapes.
//!
//! The gateway builds the URLs (`{base}/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:batchEmbedContents`) and sends the key
//! in `x-goog-api-key`; no body here names the chat model.
//!
//! # Requests
//!
//! - `system` and `developer` messages (wherever they stand) → one
//!   `systemInstruction`; `user` → role `user`, `assistant` → role `model`;
//!   turns of the same role next to each other are merged.
//! - Images: a `data:` URL → `inlineData`; an `http(s):` URL → `fileData`,
//!   its media type guessed from the file extension (png, webp, gif, heic,
//!   heif), `image/jpeg` otherwise. `input_audio` (wav, mp3, aiff, aac, ogg,
//!   flac) and `file` parts with `file_data` → `inlineData`.
//! - Assistant `tool_calls` → `functionCall` parts, the arguments parsed as a
//!   JSON object. A `tool` message → a `functionResponse` part in a `user`
//!   turn, named after the earlier call with its `tool_call_id`, its response
//!   the content when that is a JSON object, else `{"content": text}`;
//!   consecutive tool messages (parallel calls) share one turn. A call id
//!   holding `__thought__` (see below) gives its `functionCall` part the
//!   `thoughtSignature` after the mark.
//! - `tools` → `functionDeclarations`, their `parameters` kept to the
//!   keywords of Gemini's `Schema` object: local `$ref`s are inlined, `oneOf`
//!   becomes `anyOf`, `"type": [X, "null"]` becomes `nullable`, and every
//!   other keyword (`$schema`, `$id`, `additionalProperties`, `const`,
//!   `exclusiveMinimum`, …) is left out; an object with no properties is left
//!   out whole (Gemini refuses it). `tool_choice` → `functionCallingConfig`
//!   (`none` → `NONE`, `auto` → `AUTO`, `required` → `ANY`, a named function
//!   → `ANY` with `allowedFunctionNames`).
//! - `generationConfig`: `max_completion_tokens`/`max_tokens` →
//!   `maxOutputTokens`, `temperature`, `top_p` → `topP`, `stop` →
//!   `stopSequences`, `n` → `candidateCount`, `seed`, `presence_penalty`,
//!   `frequency_penalty`; `response_format` `json_object` → `responseMimeType:
//!   application/json`, `json_schema` → the same plus `responseJsonSchema` (the
//!   field that takes a JSON Schema as is, unlike `responseSchema`).
//! - Refused (400): `logprobs: true` (the answer's log probabilities are not
//!   translated), legacy `functions`/`function_call`, `function` messages,
//!   audio output (`audio`, `modalities` beyond text), tools other than
//!   functions, content parts other than text, image, audio and inline file,
//!   unparsable tool call arguments, tool results for unknown call ids, and
//!   `$ref`s that are recursive or not local.
//! - Dropped and named in [`Encoded::dropped`](crate::translate::Encoded):
//!   `user`, `parallel_tool_calls`,
//!   and every other field outside the typed request (`logit_bias`, `store`,
//!   `metadata`, `service_tier`, `reasoning_effort`, `top_logprobs`, …, each by
//!   its own name); nested fields by their path of field names without
//!   indexes: `messages.name`, `messages.<unknown field>`,
//!   `messages.content.image_url.detail` (when not `auto`),
//!   `tools.function.strict` (when `true`).
//!
//! # Answers
//!
//! - Each candidate → a choice: text parts joined → `content`, `thought`
//!   parts → `reasoning_content`, `functionCall` parts → `tool_calls`, their
//!   id Gemini's `functionCall.id` when it sends one, else `call_<n>`, `n` the
//!   call's position among the response's calls; their arguments the compact
//!   JSON of `args`. A call's `thoughtSignature` is appended to its id after
//!   `__thought__`: OpenAI has no field for it, thinking models need it back
//!   with the call in the next request (Gemini 3 refuses the turn without it),
//!   and the id is what clients echo unchanged.
//! - `finishReason`: `STOP` → `stop` (`tool_calls` when the candidate calls
//!   functions); `MAX_TOKENS` → `length`; `SAFETY`, `RECITATION`,
//!   `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII` and the `IMAGE_*` filters →
//!   `content_filter`; every other reason (`OTHER`, `LANGUAGE`,
//!   `MALFORMED_FUNCTION_CALL`, `FINISH_REASON_UNSPECIFIED`, newer ones) →
//!   `stop` (or `tool_calls`), with whatever content came: OpenAI has no
//!   finish reason for them and a client should not mistake them for a filter.
//! - A prompt blocked by `promptFeedback.blockReason` (no candidates) → one
//!   choice with `content: null` and `finish_reason: content_filter`.
//! - `usageMetadata`: `prompt_tokens` = `promptTokenCount` +
//!   `toolUsePromptTokenCount`; `completion_tokens` = `candidatesTokenCount` +
//!   `thoughtsTokenCount`; `total_tokens` = `totalTokenCount` (else the sum);
//!   `cachedContentTokenCount` → `prompt_tokens_details.cached_tokens`,
//!   `thoughtsTokenCount` → `completion_tokens_details.reasoning_tokens`
//!   (each detail only when not zero).
//! - `id` = `responseId`, else `chatcmpl-` and a hash of the body; `model` =
//!   `modelVersion`, else the name the gateway passes.
//!
//! # Errors
//!
//! See [`decode_error`]: `type` from the HTTP status, `code` the Google status
//! name in lower case (`invalid_argument`, `resource_exhausted`, …), the way
//! OpenAI writes its codes. What kind of failure an error is:
//! [`classify_error`].

mod contents;
mod embedding;
mod error;
mod request;
mod response;
mod schema;
mod stream;
mod types;

pub use embedding::{decode_embeddings, encode_embeddings};
pub use error::{classify_error, decode_error, retry_delay, stream_error};
pub use request::encode_request;
pub use response::decode_response;
pub use stream::GenerateStreamDecoder;

#[cfg(test)]
mod tests {
    //! Usage read the same from a whole answer and from a stream.

    use super::*;
    use crate::openai::Usage;
    use crate::sse::SseEvent;
    use crate::translate::StreamDecoder;

    /// 1200 prompt tokens, 1024 of them from cached content; 100 thought
    /// tokens on top of the 2 of the answer (Gemini counts them apart).
    const EXPECTED: Usage = Usage {
        prompt_tokens: 1200,
        completion_tokens: 102,
        total_tokens: 1302,
        cached_tokens: 1024,
        cache_write_tokens: 0,
        reasoning_tokens: 100,
    };

    const WHOLE: &str = r#"{"candidates":[{"content":{"parts":[{"text":"The user wants a number.","thought":true},{"text":"42"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":2,"totalTokenCount":1302,"cachedContentTokenCount":1024,"thoughtsTokenCount":100,"promptTokensDetails":[{"modality":"TEXT","tokenCount":1200}],"cacheTokensDetails":[{"modality":"TEXT","tokenCount":1024}]},"modelVersion":"gemini-2.5-pro","responseId":"mDj5aKfUBIqL7dcP5aGw2AU"}"#;

    /// Each event's `usageMetadata` counts everything so far; the first has
    /// no candidate tokens yet.
    const STREAM: [&str; 2] = [
        r#"{"candidates":[{"content":{"parts":[{"text":"The user wants a number.","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":1200,"totalTokenCount":1300,"cachedContentTokenCount":1024,"thoughtsTokenCount":100},"modelVersion":"gemini-2.5-pro","responseId":"mDj5aKfUBIqL7dcP5aGw2AU"}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"42"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":2,"totalTokenCount":1302,"cachedContentTokenCount":1024,"thoughtsTokenCount":100},"modelVersion":"gemini-2.5-pro","responseId":"mDj5aKfUBIqL7dcP5aGw2AU"}"#,
    ];

    #[test]
    fn thoughts_count_in_the_completion_and_cached_content_in_the_prompt() {
        let completion = decode_response(WHOLE.as_bytes(), "gemini", 1_700_000_000).unwrap();
        assert_eq!(completion.usage.map(|u| u.totals()), Some(EXPECTED));

        let mut decoder = GenerateStreamDecoder::new("gemini", 1_700_000_000);
        let mut chunks = Vec::new();
        for data in STREAM {
            let event = SseEvent {
                event: None,
                data: data.as_bytes(),
            };
            decoder.event(event, &mut chunks).unwrap();
        }
        decoder.end(&mut chunks).unwrap();
        let last = chunks.last().and_then(|chunk| chunk.usage);
        assert_eq!(last.map(|u| u.totals()), Some(EXPECTED));
    }
}
