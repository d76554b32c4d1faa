use super::{REDACTED, secrets};

/// `text` with its secrets replaced.
fn redacted(text: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for range in secrets(text) {
        out.push_str(&text[at..range.start]);
        out.push_str(REDACTED);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[test]
fn every_key_shape_is_redacted_in_prose() {
    let keys = [
        format!("sk-{}", "Ab3d".repeat(12)),
        format!("sk-proj-{}", "x_Y-9".repeat(30)),
        format!("sk-ant-api03-{}", "Zq8_".repeat(20)),
        format!("sk-sy-{}", "kP2-".repeat(8)),
        format!("AIza{}", "Sy9_a-".repeat(6)),
        "AKIAIOSFODNN7EXAMPLE".to_owned(),
        "ASIAXYZ1234567890ABC".to_owned(),
        format!("ghp_{}", "a1B2".repeat(9)),
        format!("github_pat_{}", "11AB_cd".repeat(12)),
        "xoxb-1234567890-abcdefghij".to_owned(),
        "Bearer abcdefghijklmnop.qrstuvwxyz".to_owned(),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_owned(),
    ];
    for key in &keys {
        let text = format!("use {key}, then ({key}) and \"{key}\"");
        assert_eq!(
            redacted(&text),
            "use [REDACTED], then ([REDACTED]) and \"[REDACTED]\"",
            "{key}"
        );
    }
}

#[test]
fn a_key_after_a_json_escape_is_redacted() {
    let key = format!("sk-{}", "Ab3d".repeat(12));
    let text = format!(r#"{{"content":"my key:\n{key}\tok"}}"#);
    assert_eq!(redacted(&text), r#"{"content":"my key:\n[REDACTED]\tok"}"#);
}

#[test]
fn words_that_only_look_like_keys_stay() {
    for text in [
        "a risk-free plan with desk-organizer-large-extra",
        "sk-short",
        "Bearer tokens are short-lived",
        "the AKIA prefix, AIza keys, ghp_ tokens, eyJ.x.y",
    ] {
        assert_eq!(redacted(text), text);
    }
}

#[test]
fn secret_members_are_redacted_and_token_counts_kept() {
    let body = r#"{"api_key": "k1", "apiKey":"k2", "x-api-key":"k3", "password":"p\"w", "client_secret":"s", "Authorization":"Basic dTpw", "token":"t", "access_token":"a", "refresh-token":"r", "max_tokens":100, "max_completion_tokens":"9", "prompt_tokens":"1", "token_type":"bearer", "content":"password"}"#;
    let want = r#"{"api_key": "[REDACTED]", "apiKey":"[REDACTED]", "x-api-key":"[REDACTED]", "password":"[REDACTED]", "client_secret":"[REDACTED]", "Authorization":"[REDACTED]", "token":"[REDACTED]", "access_token":"[REDACTED]", "refresh-token":"[REDACTED]", "max_tokens":100, "max_completion_tokens":"9", "prompt_tokens":"1", "token_type":"bearer", "content":"password"}"#;
    assert_eq!(redacted(body), want);
}

#[test]
fn members_are_found_in_event_streams_and_cut_bodies() {
    let stream =
        "event: x\ndata: {\"type\":\"t\",\"delta\":{\"secret\":\"abc\"}}\n\ndata: [DONE]\n\n";
    assert_eq!(
        redacted(stream),
        "event: x\ndata: {\"type\":\"t\",\"delta\":{\"secret\":\"[REDACTED]\"}}\n\ndata: [DONE]\n\n"
    );
    // Cut inside the value: redacted to the end.
    assert_eq!(
        redacted(r#"{"password":"hunt"#),
        r#"{"password":"[REDACTED]"#
    );
    // A name in a string's text is no name.
    let quoted = r#"{"content":"say \"password\": \"x\"","n":1}"#;
    assert_eq!(redacted(quoted), quoted);
}

#[test]
fn a_key_inside_a_secret_member_is_one_secret() {
    let key = format!("sk-{}", "Ab3d".repeat(12));
    let body = format!(r#"{{"authorization":"Bearer {key}"}}"#);
    assert_eq!(redacted(&body), r#"{"authorization":"[REDACTED]"}"#);
}
