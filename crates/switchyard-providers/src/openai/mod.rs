//! The OpenAI wire format: chat completions, legacy completions, embeddings.
//!
//! Pass-through is the fast path: a request body is parsed only far enough to
//! validate it and to rewrite `model` (and `stream_options`); every other field
//! travels upstream as the exact bytes the client sent.

pub mod chat;
mod codec;
pub mod embedding;
mod error;
mod raw;
mod request;
mod response;
mod scan;
mod stream;
mod types;

pub use codec::{ChunkDecoder, ChunkEncoder, status_of};
pub use error::classify_error;
pub use request::{Endpoint, InvalidRequest, RequestBody};
pub use response::{usage_in_tail, usage_of_response};
pub use stream::{StreamEvent, carries_content, classify_event, without_usage};
pub use types::{ErrorBody, ErrorObject, Usage};
