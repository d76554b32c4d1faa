//! The admin API's extractors — a JSON body, a query string, a path's `{id}`
//! — refused in OpenAI's error shape (400, `param` naming the field when the
//! parser can tell it) rather than with axum's plain-text rejections.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use switchyard_providers::openai::InvalidRequest;

use crate::api::AppState;
use crate::error::GatewayError;

/// Largest admin request body accepted (a key's metadata is at most 16 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body of type `T`. As `Option<AdminJson<T>>`, an empty body
/// is `None`.
#[derive(Debug, Clone)]
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for AdminJson<T> {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, GatewayError> {
        match <Self as OptionalFromRequest<_>>::from_request(request, state).await? {
            Some(json) => Ok(json),
            None => Err(invalid(None, "the request needs a JSON body")),
        }
    }
}

impl<T: DeserializeOwned> OptionalFromRequest<Arc<AppState>> for AdminJson<T> {
    type Rejection = GatewayError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Option<Self>, GatewayError> {
        let json = is_json(request.headers());
        let bytes = body(request, state.settings.load().limits.body_timeout).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        if !json {
            return Err(invalid(
                None,
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        parse_json(&bytes).map(|value| Some(Self(value)))
    }
}

/// Whether the content type is `application/json` (or `application/…+json`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// The whole body within `timeout`, refused with 413 past [`MAX_BODY_BYTES`].
async fn body(request: Request, timeout: std::time::Duration) -> Result<Bytes, GatewayError> {
    let too_large = GatewayError::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    let read = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(GatewayError::BodyTimeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Ok(Err(e)) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// `bytes` as one JSON value of type `T`, and nothing after it.
///
/// An array is refused before `T` sees it: serde reads a struct from an
/// array too, by position (`["a"]` would make a key named `a`), and every
/// admin body is an object.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(invalid(None, "the body must be a JSON object"));
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let syntax = !e.inner().is_data();
        let (param, message) = located(e.path(), &e.inner().to_string());
        if syntax {
            invalid(None, format!("the body is not valid JSON: {message}"))
        } else {
            invalid(param, message)
        }
    })?;
    json.end()
        .map_err(|e| invalid(None, format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// A query string of type `T`.
#[derive(Debug, Clone)]
pub struct AdminQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, GatewayError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(pairs)
            .map(Self)
            .map_err(|e| {
                let (param, message) = located(e.path(), &e.inner().to_string());
                invalid(param, format!("invalid query string: {message}"))
            })
    }
}

/// The `{id}` of an admin path.
#[derive(Debug, Clone)]
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|e| invalid(Some("id".to_owned()), e.body_text()))
    }
}

/// The field an error is about, and the message naming it: the path the
/// parser was at, or for a field missing from (or unknown to) an object, that
/// field.
fn located(path: &serde_path_to_error::Path, message: &str) -> (Option<String>, String) {
    let at = path.to_string();
    if at != "." {
        let message = format!("{at}: {message}");
        return (Some(at), message);
    }
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|start| message.strip_prefix(start))
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    (named, message.to_owned())
}

fn invalid(param: Option<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest(InvalidRequest {
        message: message.into(),
        param,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::keys::admin::views::{CreateKey, KeyQuery};

    fn param_of<T: std::fmt::Debug>(result: Result<T, GatewayError>) -> Option<String> {
        match result {
            Err(GatewayError::InvalidRequest(e)) => e.param,
            other => panic!("{other:?}"),
        }
    }

    fn query(text: &str) -> Result<KeyQuery, GatewayError> {
        let request = axum::http::Request::get(format!("/admin/keys?{text}"))
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let extract = AdminQuery::<KeyQuery>::from_request_parts(&mut parts, &());
        futures_util::FutureExt::now_or_never(extract)
            .unwrap()
            .map(|AdminQuery(q)| q)
    }

    #[test]
    fn a_bad_body_names_its_field() {
        let bad = |text: &str| param_of(parse_json::<CreateKey>(text.as_bytes()));
        assert_eq!(
            bad(r#"{"name": "a", "rpm": "many"}"#).as_deref(),
            Some("rpm")
        );
        assert_eq!(
            bad(r#"{"name": "a", "models": [1]}"#).as_deref(),
            Some("models[0]")
        );
        assert_eq!(
            bad(r#"{"name": "a", "colour": 1}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(bad(r#"{"rpm": 5}"#).as_deref(), Some("name"));
        assert_eq!(bad(r#"{"name": "a"} trailing"#), None);
        assert_eq!(bad(r#"{"name": "#), None);
        assert!(parse_json::<CreateKey>(br#" ["a"]"#).is_err());
        let ok: CreateKey = parse_json(br#"{"name": "a", "team": "t"}"#).unwrap();
        assert_eq!(ok.team_id.as_deref(), Some("t"));
    }

    #[test]
    fn a_bad_query_names_its_parameter() {
        assert_eq!(param_of(query("limit=ten")).as_deref(), Some("limit"));
        assert_eq!(param_of(query("limit=-1")).as_deref(), Some("limit"));
        assert_eq!(
            param_of(query("include_revoked=maybe")).as_deref(),
            Some("include_revoked")
        );
        assert_eq!(param_of(query("colour=red")).as_deref(), Some("colour"));
        let ok = query("limit=5&team_id=t&include_revoked=true").unwrap();
        assert_eq!((ok.limit, ok.include_revoked), (Some(5), Some(true)));
        assert_eq!(query("").unwrap().limit, None);
    }

    #[test]
    fn only_json_content_types_are_json() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(value),
            );
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
