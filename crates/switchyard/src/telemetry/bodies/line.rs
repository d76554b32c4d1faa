//! The bodies line: its fields, written like the access line's (text or
//! JSON), the bodies as escaped strings.

use std::time::SystemTime;

use crate::telemetry::LogFormat;
use crate::telemetry::line::begin;

/// The fields of one bodies line, in the order they are written.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodiesLine<'a> {
    pub(super) request_id: &'a str,
    pub(super) endpoint: &'a str,
    /// `x-switchyard-route`, when the request was routed.
    pub(super) route: Option<&'a str>,
    /// Whose fault a failure was, when it failed.
    pub(super) error_type: Option<&'a str>,
    /// The request body, redacted and cut.
    pub(super) request: &'a str,
    /// The answer, redacted and cut; `None` when none was sent (an error
    /// answer is not kept: `error_type` and the access line tell it).
    pub(super) response: Option<&'a str>,
}

impl BodiesLine<'_> {
    /// Appends the whole line, newline included, to `buf`: message `bodies`,
    /// then `request_id`, `endpoint`, `route`, `error_type`, `request`,
    /// `response` (absent options left out).
    pub(super) fn format(&self, buf: &mut Vec<u8>, format: LogFormat, now: SystemTime) {
        let mut fields = begin(buf, format, now, "bodies", self.request_id);
        fields.text("endpoint", self.endpoint);
        fields.text_if("route", self.route);
        fields.text_if("error_type", self.error_type);
        fields.text("request", self.request);
        fields.text_if("response", self.response);
        fields.end();
    }
}
