use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use super::line::BodiesLine;
use super::{Bodies, LOOKAHEAD};
use crate::telemetry::LogFormat;

#[test]
fn bodies_keep_the_shown_bytes_and_the_look_ahead_and_count_the_rest() {
    let request = vec![b'a'; 1000];
    let mut bodies = Bodies::new(&request, 10);
    assert_eq!(bodies.request.bytes.len(), 10 + LOOKAHEAD);
    assert_eq!(bodies.request.total, 1000);
    assert_eq!(bodies.request.shown(10), "aaaaaaaaaa…[990 more bytes]");
    for _ in 0..100 {
        bodies.answered(b"data: {}\n\n");
    }
    assert_eq!(bodies.answer.bytes.len(), 10 + LOOKAHEAD);
    assert_eq!(bodies.answer.total, 1000);
    assert_eq!(bodies.answer.shown(10), "data: {}\n\n…[990 more bytes]");
}

#[test]
fn the_line_is_one_json_object_with_both_bodies() {
    let line = BodiesLine {
        request_id: "r-1",
        endpoint: "chat_completions",
        route: Some("up/mock-1=ok"),
        error_type: None,
        request: r#"{"messages":[{"content":"say \"hi\"\n"}]}"#,
        response: Some("data: {}\n\n"),
    };
    let mut buf = Vec::new();
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    line.format(&mut buf, LogFormat::Json, at);
    assert_eq!(buf.last(), Some(&b'\n'));
    assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    let parsed: Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(parsed["message"], "bodies");
    assert_eq!(parsed["request_id"], "r-1");
    assert_eq!(parsed["route"], "up/mock-1=ok");
    assert!(parsed.get("error_type").is_none());
    assert_eq!(parsed["request"], line.request);
    assert_eq!(parsed["response"], "data: {}\n\n");

    buf.clear();
    line.format(&mut buf, LogFormat::Text, at);
    let text = String::from_utf8(buf).unwrap();
    assert!(text.starts_with("2027-01-15T08:00:00.000000Z  INFO bodies request_id=r-1 endpoint=\"chat_completions\" route="));
    assert!(text.ends_with(" response=\"data: {}\\n\\n\"\n"));
}
