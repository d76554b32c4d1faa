//! Wire types and pure translation per provider dialect, and the SSE parser.
//!
//! Nothing here knows about HTTP servers, configuration or application state:
//! every function takes bytes or typed values and returns bytes or typed values,
//! so the golden tests of each dialect compile and run in seconds.

pub mod anthropic;
mod error_class;
pub mod gemini;
pub mod openai;
pub mod sse;
pub mod translate;

pub use error_class::ErrorClass;
