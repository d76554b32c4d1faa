//! The access line itself: its fields, formatted as text or JSON without
//! `fmt` machinery, every client- or provider-supplied string escaped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::LogFormat;

/// The fields of one access line, in the order they are written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'a> {
    pub(super) request_id: &'a str,
    pub(super) endpoint: &'a str,
    pub(super) model: &'a str,
    pub(super) provider: &'a str,
    pub(super) upstream_model: &'a str,
    pub(super) stream: bool,
    pub(super) status: u16,
    pub(super) outcome: &'a str,
    /// Whose fault a failure was: one of the closed list of error types.
    pub(super) error_type: Option<&'a str>,
    pub(super) error: Option<&'a str>,
    /// Each failed attempt and its error, when any failed.
    pub(super) attempt_errors: Option<&'a str>,
    pub(super) latency_us: u64,
    pub(super) ttft_us: Option<u64>,
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    /// What the response cache made of the request, when it is on.
    pub(super) cache: Option<&'a str>,
    /// What a cache hit saved, in micro-USD.
    pub(super) saved_micros: i64,
    /// `x-switchyard-route`: each attempt's deployment, why, and its outcome.
    pub(super) route: Option<&'a str>,
}

/// Whole microseconds, saturating (a `u64` of them is 584,000 years).
pub(super) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Appends the whole access line, newline included, to `buf`.
///
/// Text mirrors `tracing-subscriber`'s plain `fmt` output; JSON mirrors its
/// flattened JSON output (`timestamp`, `level`, `message`, then the fields).
pub(super) fn format_line(buf: &mut Vec<u8>, format: LogFormat, now: SystemTime, line: &Line<'_>) {
    let mut fields = begin(buf, format, now, "request", line.request_id);
    push_fields(&mut fields, line);
    fields.end();
}

/// Begins a line of `message` (a plain word, written as it is) about
/// request `request_id`, stamped `now`: the fields after `request_id` are
/// written to what it returns, and the line ends with [`Fields::end`].
pub(super) fn begin<'b>(
    buf: &'b mut Vec<u8>,
    format: LogFormat,
    now: SystemTime,
    message: &'static str,
    request_id: &str,
) -> Fields<'b> {
    let json = match format {
        LogFormat::Text => {
            push_timestamp(buf, now);
            buf.extend_from_slice(b"  INFO ");
            buf.extend_from_slice(message.as_bytes());
            buf.extend_from_slice(b" request_id=");
            if is_bare(request_id) {
                buf.extend_from_slice(request_id.as_bytes());
            } else {
                push_quoted(buf, request_id);
            }
            false
        }
        LogFormat::Json => {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            push_timestamp(buf, now);
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"");
            buf.extend_from_slice(message.as_bytes());
            buf.extend_from_slice(b"\",\"request_id\":");
            push_quoted(buf, request_id);
            true
        }
    };
    Fields { buf, json }
}

/// Writes `name=value` (text) or `,"name":value` (JSON) pairs.
pub(super) struct Fields<'b> {
    buf: &'b mut Vec<u8>,
    json: bool,
}

impl Fields<'_> {
    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if self.json {
            self.buf.extend_from_slice(b",\"");
            self.buf.extend_from_slice(name.as_bytes());
            self.buf.extend_from_slice(b"\":");
        } else {
            self.buf.push(b' ');
            self.buf.extend_from_slice(name.as_bytes());
            self.buf.push(b'=');
        }
        self.buf
    }

    /// `name` and `value`, quoted and escaped.
    pub(super) fn text(&mut self, name: &str, value: &str) {
        push_quoted(self.key(name), value);
    }

    /// `name` and `value` as [`Fields::text`] writes them, when there is a value.
    pub(super) fn text_if(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.text(name, value);
        }
    }

    /// Ends the line: the JSON object's brace, and the newline.
    pub(super) fn end(self) {
        if self.json {
            self.buf.push(b'}');
        }
        self.buf.push(b'\n');
    }

    fn int(&mut self, name: &str, value: impl itoa::Integer) {
        push_int(self.key(name), value);
    }

    fn millis(&mut self, name: &str, micros: u64) {
        push_millis(self.key(name), micros);
    }
}

/// Every field after `request_id`, in order; absent options are left out.
fn push_fields(fields: &mut Fields<'_>, line: &Line<'_>) {
    fields.text("endpoint", line.endpoint);
    fields.text("model", line.model);
    fields.text("provider", line.provider);
    fields.text("upstream_model", line.upstream_model);
    fields
        .key("stream")
        .extend_from_slice(if line.stream { b"true" } else { b"false" });
    fields.int("status", line.status);
    fields.text("outcome", line.outcome);
    fields.text_if("error_type", line.error_type);
    fields.text_if("error", line.error);
    fields.text_if("attempt_errors", line.attempt_errors);
    fields.millis("latency_ms", line.latency_us);
    if let Some(ttft_us) = line.ttft_us {
        fields.millis("ttft_ms", ttft_us);
    }
    fields.int("prompt_tokens", line.prompt_tokens);
    fields.int("completion_tokens", line.completion_tokens);
    fields.text_if("cache", line.cache);
    if line.saved_micros > 0 {
        push_usd(fields.key("saved_usd"), line.saved_micros);
    }
    fields.text_if("route", line.route);
}

/// Micro-USD as USD with six decimals (`0.000123`).
fn push_usd(buf: &mut Vec<u8>, micros: i64) {
    let micros = micros.unsigned_abs();
    push_int(buf, micros / 1_000_000);
    buf.push(b'.');
    let fraction = micros % 1_000_000;
    let mut digits = [b'0'; 6];
    put_digits(&mut digits, fraction);
    buf.extend_from_slice(&digits);
}

/// `2026-11-22T01:01:01.123456Z`: RFC 3339, UTC, microseconds (the format
/// of `humantime::format_rfc3339_micros` and of `tracing-subscriber`), without
/// going through `core::fmt`. Times before 1970 are written as the epoch,
/// times after 9999 as its last second.
fn push_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    /// 9999-12-31T23:59:59Z, the last second with a four-digit year.
    const LAST_SECOND: u64 = 253_402_300_799;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs().min(LAST_SECOND);
    let micros = since_epoch.subsec_micros();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let secs_of_day = secs % 86_400;

    let mut out = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], month);
    put_digits(&mut out[8..10], day);
    put_digits(&mut out[11..13], secs_of_day / 3_600);
    put_digits(&mut out[14..16], secs_of_day / 60 % 60);
    put_digits(&mut out[17..19], secs_of_day % 60);
    put_digits(&mut out[20..26], u64::from(micros));
    buf.extend_from_slice(&out);
}

/// Year, month (1-12) and day (1-31) of the `days`th day after 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that the leap day ends each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let shifted_month = (5 * day_of_year + 2) / 153; // [0, 11], March is 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let (month, year_offset) = if shifted_month < 10 {
        (shifted_month + 3, 0)
    } else {
        (shifted_month - 9, 1)
    };
    (era * 400 + year_of_era + year_offset, month, day)
}

/// Writes the last `out.len()` decimal digits of `value`, zero-padded.
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        // A remainder below 10 always fits.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn push_int(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Microseconds as milliseconds with three decimals: `1234` is `1.234`.
fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    push_int(buf, micros / 1000);
    let frac = micros % 1000;
    // Each digit is below 10, so the casts cannot truncate.
    buf.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Whether a text-format value can go unquoted: non-empty, `[A-Za-z0-9._:-]`.
fn is_bare(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `value` in double quotes, escaped by [`push_escaped`].
fn push_quoted(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    push_escaped(buf, value);
    buf.push(b'"');
}

/// Appends `value` escaped for a JSON string, which also keeps a text line
/// one unforgeable line: `"` and `\` get a backslash; `\n`, `\r` and `\t` their
/// short escapes; every other control character (C0, DEL, C1) and the
/// Unicode line and paragraph separators (U+2028, U+2029) become `\uXXXX`.
fn push_escaped(buf: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let kind = ESCAPES[usize::from(b)];
        if kind == PLAIN {
            i += 1;
            continue;
        }
        // What to write instead, and how many bytes it replaces.
        let (escape, len) = match kind {
            UNICODE => (Escape::Unicode(u16::from(b)), 1),
            // A C1 control: U+0080..=U+009F is C2 80..=C2 9F.
            LEAD_C2 => match bytes.get(i + 1) {
                Some(&next @ 0x80..=0x9f) => (Escape::Unicode(u16::from(next)), 2),
                _ => {
                    i += 1;
                    continue;
                }
            },
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
            LEAD_E2 => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(0x80), Some(&last @ 0xa8..=0xa9)) => {
                    (Escape::Unicode(0x2000 | u16::from(last & 0x3f)), 3)
                }
                _ => {
                    i += 1;
                    continue;
                }
            },
            short => (Escape::Short(short), 1),
        };
        buf.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        match escape {
            Escape::Short(c) => buf.extend_from_slice(&[b'\\', c]),
            Escape::Unicode(code) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let digit = |shift: u16| HEX[usize::from((code >> shift) & 0xf)];
                buf.extend_from_slice(&[b'\\', b'u', digit(12), digit(8), digit(4), digit(0)]);
            }
        }
        i += len;
        start = i;
    }
    buf.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// How one character is escaped.
#[derive(Clone, Copy)]
enum Escape {
    /// A backslash and this byte.
    Short(u8),
    /// `\u` and four hex digits.
    Unicode(u16),
}

/// [`ESCAPES`]: the byte is written as it is.
const PLAIN: u8 = 0;
/// [`ESCAPES`]: the byte is written `\u00XX`.
const UNICODE: u8 = 1;
/// [`ESCAPES`]: the byte may start a C1 control.
const LEAD_C2: u8 = 2;
/// [`ESCAPES`]: the byte may start U+2028 or U+2029.
const LEAD_E2: u8 = 3;

/// What [`push_escaped`] does with each byte: one of the kinds above, or the
/// letter written after a backslash.
static ESCAPES: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = UNICODE;
        b += 1;
    }
    table[0x7f] = UNICODE;
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[0xc2] = LEAD_C2;
    table[0xe2] = LEAD_E2;
    table
};

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// 2026-11-22T01:01:01.123456Z
    pub(crate) fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_309_261) + Duration::from_micros(123_456)
    }

    pub(crate) fn sample() -> Line<'static> {
        Line {
            request_id: "req-123",
            endpoint: "chat_completions",
            model: "gpt-4.1",
            provider: "up",
            upstream_model: "mock-1",
            stream: false,
            status: 200,
            outcome: "ok",
            error_type: None,
            error: None,
            attempt_errors: None,
            latency_us: 1_234,
            ttft_us: Some(500),
            prompt_tokens: 10,
            completion_tokens: 16,
            cache: None,
            saved_micros: 0,
            route: None,
        }
    }

    #[test]
    fn a_failure_names_its_error_type_and_a_routed_request_its_route() {
        let line = Line {
            status: 502,
            outcome: "upstream_5xx",
            error_type: Some("upstream_5xx"),
            route: Some("up/mock-1=5xx, up/mock-2=ok"),
            ..sample()
        };
        let text = format(LogFormat::Text, &line);
        assert!(
            text.contains(" outcome=\"upstream_5xx\" error_type=\"upstream_5xx\" "),
            "{text}"
        );
        assert!(
            text.ends_with(" route=\"up/mock-1=5xx, up/mock-2=ok\"\n"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&format(LogFormat::Json, &line)).unwrap();
        assert_eq!(json["error_type"], "upstream_5xx");
        assert_eq!(json["route"], "up/mock-1=5xx, up/mock-2=ok");
    }

    #[test]
    fn a_cache_hit_says_so_and_what_it_saved() {
        let line = Line {
            cache: Some("hit"),
            saved_micros: 1_234_567,
            ..sample()
        };
        let text = format(LogFormat::Text, &line);
        assert!(text.contains(" cache=\"hit\" saved_usd=1.234567"), "{text}");
        let json = format(LogFormat::Json, &line);
        assert!(
            json.contains(r#","cache":"hit","saved_usd":1.234567"#),
            "{json}"
        );
        let small = format(
            LogFormat::Text,
            &Line {
                saved_micros: 42,
                ..line
            },
        );
        assert!(small.contains(" saved_usd=0.000042"), "{small}");
    }

    pub(crate) fn format(format: LogFormat, line: &Line<'_>) -> String {
        let mut buf = Vec::new();
        format_line(&mut buf, format, at(), line);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_line() {
        assert_eq!(
            format(LogFormat::Text, &sample()),
            "2026-11-22T01:01:01.123456Z  INFO request request_id=req-123 \
             endpoint=\"chat_completions\" model=\"gpt-4.1\" provider=\"up\" \
             upstream_model=\"mock-1\" stream=false status=200 outcome=\"ok\" \
             latency_ms=1.234 ttft_ms=0.500 prompt_tokens=10 completion_tokens=16\n"
        );
    }

    #[test]
    fn text_line_with_error_and_without_ttft_or_usage() {
        let line = Line {
            endpoint: "models",
            model: "-",
            provider: "-",
            upstream_model: "-",
            stream: true,
            status: 502,
            outcome: "upstream_in_band_error",
            error: Some("provider said no"),
            latency_us: 12_345_678,
            ttft_us: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            ..sample()
        };
        assert_eq!(
            format(LogFormat::Text, &line),
            "2026-11-22T01:01:01.123456Z  INFO request request_id=req-123 \
             endpoint=\"models\" model=\"-\" provider=\"-\" upstream_model=\"-\" \
             stream=true status=502 outcome=\"upstream_in_band_error\" \
             error=\"provider said no\" latency_ms=12345.678 prompt_tokens=0 \
             completion_tokens=0\n"
        );
    }

    #[test]
    fn a_failed_request_names_each_attempt() {
        let line = Line {
            status: 502,
            outcome: "upstream_5xx",
            error: Some("provider `b` answered 500: down"),
            attempt_errors: Some("a/m=server_error: down; b/m=server_error: down"),
            ..sample()
        };
        assert!(format(LogFormat::Text, &line).contains(
            " error=\"provider `b` answered 500: down\" \
             attempt_errors=\"a/m=server_error: down; b/m=server_error: down\" latency_ms="
        ));
    }

    #[test]
    fn json_line() {
        let text = format(LogFormat::Json, &sample());
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-11-22T01:01:01.123456Z\",\"level\":\"INFO\",\
             \"message\":\"request\",\"request_id\":\"req-123\",\
             \"endpoint\":\"chat_completions\",\"model\":\"gpt-4.1\",\"provider\":\"up\",\
             \"upstream_model\":\"mock-1\",\"stream\":false,\"status\":200,\
             \"outcome\":\"ok\",\"latency_ms\":1.234,\"ttft_ms\":0.500,\
             \"prompt_tokens\":10,\"completion_tokens\":16}\n"
        );
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["latency_ms"].as_f64(), Some(1.234));
        assert_eq!(record["ttft_ms"].as_f64(), Some(0.5));
        assert_eq!(record["stream"], false);
        assert_eq!(record["status"], 200);
        assert!(record.get("error").is_none());
    }

    #[test]
    fn json_line_with_error_and_without_ttft_or_usage() {
        let line = Line {
            stream: true,
            status: 401,
            outcome: "unauthenticated",
            error: Some("bad key"),
            latency_us: 7,
            ttft_us: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            ..sample()
        };
        let text = format(LogFormat::Json, &line);
        assert_eq!(text.lines().count(), 1);
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            record,
            serde_json::json!({
                "timestamp": "2026-11-22T01:01:01.123456Z",
                "level": "INFO",
                "message": "request",
                "request_id": "req-123",
                "endpoint": "chat_completions",
                "model": "gpt-4.1",
                "provider": "up",
                "upstream_model": "mock-1",
                "stream": true,
                "status": 401,
                "outcome": "unauthenticated",
                "error": "bad key",
                "latency_ms": 0.007,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            })
        );
    }

    #[test]
    fn hostile_strings_stay_on_one_line() {
        let model = "gp\"t\\4\n1\r\t\u{1}\u{7f}\u{85}\u{2028}\u{2029}é€";
        let line = Line {
            model,
            error: Some("x\" status=200 outcome=\"ok\nforged"),
            ..sample()
        };
        let text = format(LogFormat::Text, &line);
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        assert!(
            text.contains("model=\"gp\\\"t\\\\4\\n1\\r\\t\\u0001\\u007f\\u0085\\u2028\\u2029é€\"")
        );
        assert!(text.contains("error=\"x\\\" status=200 outcome=\\\"ok\\nforged\""));
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'));

        let json = format(LogFormat::Json, &line);
        assert_eq!(json.matches('\n').count(), 1);
        assert!(!json.trim_end().chars().any(char::is_control));
        let record: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(record["model"], model);
        assert_eq!(record["error"], "x\" status=200 outcome=\"ok\nforged");
    }

    #[test]
    fn request_ids_are_quoted_unless_plain() {
        for (id, written) in [
            ("req-123", "request_id=req-123 "),
            ("A.b_c:9-z", "request_id=A.b_c:9-z "),
            ("", "request_id=\"\" "),
            ("two words", "request_id=\"two words\" "),
            ("a\"b", "request_id=\"a\\\"b\" "),
            ("x status=200", "request_id=\"x status=200\" "),
            ("id\nforged", "request_id=\"id\\nforged\" "),
        ] {
            let line = Line {
                request_id: id,
                ..sample()
            };
            let text = format(LogFormat::Text, &line);
            assert!(text.contains(written), "{id:?}: {text}");
            let json = format(LogFormat::Json, &line);
            let record: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(record["request_id"], id);
        }
    }

    #[test]
    fn millis_have_three_decimals() {
        for (micros, written) in [
            (0, "0.000"),
            (1, "0.001"),
            (999, "0.999"),
            (1_000, "1.000"),
            (1_234_567, "1234.567"),
            (u64::MAX, "18446744073709551.615"),
        ] {
            let mut buf = Vec::new();
            push_millis(&mut buf, micros);
            assert_eq!(buf, written.as_bytes());
        }
    }

    #[test]
    fn timestamps_match_humantime() {
        let mut times = vec![
            UNIX_EPOCH,
            at(),
            UNIX_EPOCH + Duration::from_micros(951_782_400_000_000), // 2000-02-29
            UNIX_EPOCH + Duration::from_micros(951_868_799_999_999), // 2000-02-29 end
            UNIX_EPOCH + Duration::from_secs(1_709_164_800),         // 2024-02-29
            UNIX_EPOCH + Duration::from_secs(4_107_542_400),         // 2100-03-01
            UNIX_EPOCH + Duration::from_secs(4_107_542_399),         // 2100-02-28 end
            UNIX_EPOCH + Duration::from_nanos(946_684_799_999_999_999), // 1999 end
            UNIX_EPOCH + Duration::from_secs(253_402_300_799),       // 9999 end
        ];
        // A spread of instants up to the year 9999.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = x % 253_402_300_800;
            let nanos = u32::try_from((x >> 20) % 1_000_000_000).unwrap();
            times.push(UNIX_EPOCH + Duration::new(secs, nanos));
        }
        for time in times {
            let mut buf = Vec::new();
            push_timestamp(&mut buf, time);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                humantime::format_rfc3339_micros(time).to_string()
            );
        }
    }

    #[test]
    fn timestamps_out_of_range_are_clamped() {
        let mut buf = Vec::new();
        push_timestamp(&mut buf, UNIX_EPOCH + Duration::from_secs(300_000_000_000));
        assert_eq!(buf, b"9999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn timestamps_before_the_epoch_do_not_panic() {
        let mut buf = Vec::new();
        push_timestamp(&mut buf, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(buf, b"1970-01-01T00:00:00.000000Z");
    }
}
