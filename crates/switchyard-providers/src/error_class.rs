//! What kind of failure a provider's error is, whatever its dialect: each
//! dialect's `classify_error` reads its own codes and types into an
//! [`ErrorClass`].
//!
//! Every dialect follows the same order: a status that settles the matter
//! (401–404, 408, 429, 5xx); else the provider's codes and types; else, for a
//! refusal (400, 413, 422), the provider's words for a context window or a
//! content filter; else the status alone.

/// Why a provider refused or failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The prompt (with the room asked for the answer) is longer than the
    /// model's context window: a model with a larger window may take it.
    ContextLength,
    /// A content filter or safety system refused the prompt or the answer.
    ContentPolicy,
    /// The provider is overloaded or unavailable for now (503, Anthropic's 529
    /// `overloaded_error`, Gemini's `UNAVAILABLE`).
    Overloaded,
    /// A rate limit or quota of the gateway's account (429, Anthropic's
    /// `rate_limit_error`, Gemini's `RESOURCE_EXHAUSTED`, OpenAI's
    /// `insufficient_quota`).
    RateLimited,
    /// The provider refused the gateway's credentials or account (401, 403,
    /// Gemini's `API_KEY_INVALID`), including for billing (402, Anthropic's
    /// `billing_error`) or its region (Gemini's `FAILED_PRECONDITION`).
    Auth,
    /// The model or URL is unknown to the provider (404).
    NotFound,
    /// Any other refusal of the client's own request (400, 413, 422 and the
    /// rest of 4xx).
    InvalidRequest,
    /// A failure of the provider: any 5xx but 503 and 529, a 408 timeout, and
    /// anything else.
    Server,
}

impl ErrorClass {
    /// The class an HTTP status gives alone: the status's own when it settles
    /// the matter, else [`InvalidRequest`](Self::InvalidRequest) for a 4xx and
    /// [`Server`](Self::Server) for anything else.
    pub(crate) fn of_status(status: u16) -> Self {
        Self::settled_by(status).unwrap_or(if (400..500).contains(&status) {
            Self::InvalidRequest
        } else {
            Self::Server
        })
    }

    /// The class `status` settles whatever the body says; `None` for a status
    /// whose body tells more (400, 413, 422, the rest of 4xx, non-errors).
    pub(crate) fn settled_by(status: u16) -> Option<Self> {
        match status {
            401..=403 => Some(Self::Auth),
            404 => Some(Self::NotFound),
            429 => Some(Self::RateLimited),
            503 | 529 => Some(Self::Overloaded),
            408 | 500..=599 => Some(Self::Server),
            _ => None,
        }
    }

    /// `self`, or, for a plain invalid request of status 400, 413 or 422, the
    /// refusal `text` words in `wording`.
    pub(crate) fn or_worded(self, status: u16, text: &str, wording: &Wording) -> Self {
        match self {
            Self::InvalidRequest => wording.read(status, text).unwrap_or(self),
            Self::ContextLength
            | Self::ContentPolicy
            | Self::Overloaded
            | Self::RateLimited
            | Self::Auth
            | Self::NotFound
            | Self::Server => self,
        }
    }

    /// The class of a body that is not an error of the dialect: its status,
    /// and for a refusal the words of its text.
    pub(crate) fn of_text(status: u16, body: &[u8], wording: &Wording) -> Self {
        Self::of_status(status).or_worded(status, &String::from_utf8_lossy(body), wording)
    }
}

/// How a provider words the refusals only its text tells apart: phrases in
/// lower case, looked for in the message in any ASCII case.
#[derive(Debug)]
pub(crate) struct Wording {
    /// A prompt longer than the context window.
    pub(crate) context_length: &'static [&'static str],
    /// A refusal by a content filter.
    pub(crate) content_policy: &'static [&'static str],
}

impl Wording {
    /// The refusal `text` words, for a refusal of status 400, 413 or 422.
    fn read(&self, status: u16, text: &str) -> Option<ErrorClass> {
        if !matches!(status, 400 | 413 | 422) {
            return None;
        }
        let text = text.to_ascii_lowercase();
        let says = |phrases: &[&str]| phrases.iter().any(|phrase| text.contains(phrase));
        if says(self.context_length) {
            Some(ErrorClass::ContextLength)
        } else if says(self.content_policy) {
            Some(ErrorClass::ContentPolicy)
        } else {
            None
        }
    }
}

/// Asserts that `classify` gives each case (status, body) its class.
#[cfg(test)]
pub(crate) fn assert_classes<B: AsRef<[u8]>>(
    classify: fn(u16, &[u8]) -> ErrorClass,
    cases: &[(u16, B, ErrorClass)],
) {
    for (status, body, class) in cases {
        let body = body.as_ref();
        let text = String::from_utf8_lossy(body);
        assert_eq!(classify(*status, body), *class, "{status} {text}");
    }
}

/// Asserts that `classify`, given the status `stream_error` reads from each
/// stream event's data, gives the event its class.
#[cfg(test)]
pub(crate) fn assert_stream_classes<B: AsRef<[u8]>>(
    stream_error: fn(&[u8]) -> Option<crate::translate::Fault>,
    classify: fn(u16, &[u8]) -> ErrorClass,
    cases: &[(B, ErrorClass)],
) {
    for (data, class) in cases {
        let data = data.as_ref();
        let classed = stream_error(data).map(|fault| classify(fault.status, data));
        let text = String::from_utf8_lossy(data);
        assert_eq!(classed, Some(*class), "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDING: Wording = Wording {
        context_length: &["context window"],
        content_policy: &["filtered"],
    };

    #[test]
    fn statuses_alone() {
        let cases = [
            (400, ErrorClass::InvalidRequest),
            (401, ErrorClass::Auth),
            (402, ErrorClass::Auth),
            (403, ErrorClass::Auth),
            (404, ErrorClass::NotFound),
            (408, ErrorClass::Server),
            (409, ErrorClass::InvalidRequest),
            (413, ErrorClass::InvalidRequest),
            (422, ErrorClass::InvalidRequest),
            (429, ErrorClass::RateLimited),
            (500, ErrorClass::Server),
            (502, ErrorClass::Server),
            (503, ErrorClass::Overloaded),
            (504, ErrorClass::Server),
            (529, ErrorClass::Overloaded),
            (200, ErrorClass::Server),
        ];
        for (status, class) in cases {
            assert_eq!(ErrorClass::of_status(status), class, "status {status}");
        }
    }

    #[test]
    fn words_count_only_for_a_refusal() {
        let text = b"Over the Context Window";
        assert_eq!(
            ErrorClass::of_text(400, text, &WORDING),
            ErrorClass::ContextLength
        );
        assert_eq!(
            ErrorClass::of_text(413, text, &WORDING),
            ErrorClass::ContextLength
        );
        assert_eq!(
            ErrorClass::of_text(422, b"it was filtered", &WORDING),
            ErrorClass::ContentPolicy
        );
        assert_eq!(
            ErrorClass::of_text(409, text, &WORDING),
            ErrorClass::InvalidRequest
        );
        assert_eq!(ErrorClass::of_text(500, text, &WORDING), ErrorClass::Server);
        assert_eq!(
            ErrorClass::RateLimited.or_worded(400, "context window", &WORDING),
            ErrorClass::RateLimited
        );
    }
}
