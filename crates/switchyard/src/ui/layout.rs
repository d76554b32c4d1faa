//! The frame of every page: head, navigation, who is signed in, the theme
//! switch, sign-out; and the headers every dashboard answer carries.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::Viewer;

/// What the frame of a signed-in page needs.
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    /// The dashboard's path (`/ui`).
    pub prefix: &'a str,
    /// The session's CSRF token, for the forms.
    pub csrf: &'a str,
    /// Who is signed in.
    pub viewer: &'a Viewer,
}

impl Chrome<'_> {
    /// A link to `path` under the dashboard.
    pub fn href(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The hidden field that carries the CSRF token in a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// The pages in the navigation: their name (`data-page`), title and path.
const NAV: &[(&str, &str, &str)] = &[
    ("overview", "Overview", "/"),
    ("costs", "Costs", "/costs"),
    ("requests", "Requests", "/requests"),
    ("keys", "Keys", "/keys"),
    ("teams", "Teams", "/teams"),
    ("providers", "Providers", "/providers"),
    ("playground", "Playground", "/playground"),
];

/// How a page is framed.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Its name (`data-page`); the navigation marks the page of its section.
    pub name: &'a str,
    /// Its section in the navigation.
    pub section: &'a str,
    /// Its title.
    pub title: &'a str,
    /// Seconds between live refreshes, when it refreshes itself.
    pub live: Option<u32>,
}

/// A signed-in page.
pub fn page(chrome: &Chrome<'_>, frame: Frame<'_>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" data-theme="light" {
            (head(chrome.prefix, frame.title))
            body {
                header.top {
                    a.brand href=(chrome.href("/")) { span.logo { "⇄" } " Switchyard" }
                    nav {
                        @for (name, title, path) in NAV {
                            a data-page=(name) href=(chrome.href(path))
                                aria-current=[(*name == frame.section).then_some("page")] { (title) }
                        }
                    }
                    div.who {
                        span.viewer title="Signed in as" {
                            (chrome.viewer.label())
                            @if !chrome.viewer.is_admin() { " · read-only" }
                        }
                        button #theme-toggle type="button" title="Light or dark theme" { "◐" }
                        form #signout method="post" action=(chrome.href("/logout")) {
                            (chrome.csrf_field())
                            button #signout-submit type="submit" { "Sign out" }
                        }
                    }
                }
                main #page data-page=(frame.name) data-live=[frame.live] data-csrf=(chrome.csrf) data-prefix=(chrome.prefix) {
                    (body)
                }
                footer { "Switchyard " (env!("CARGO_PKG_VERSION")) " · times in UTC" }
            }
        }
    };
    respond(StatusCode::OK, markup)
}

/// A page without a session (sign-in, errors).
pub fn bare(prefix: &str, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" data-theme="light" {
            (head(prefix, title))
            body.bare { main #page data-page="login" { (body) } }
        }
    };
    respond(StatusCode::OK, markup)
}

fn head(prefix: &str, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Switchyard" }
            link rel="stylesheet" href={ (prefix) "/assets/app.css?v=" (assets::VERSION) };
            link rel="icon" href={ (prefix) "/assets/icon.svg?v=" (assets::VERSION) };
            script src={ (prefix) "/assets/app.js?v=" (assets::VERSION) } {}
        }
    }
}

/// `markup` as an answer with `status` and the headers of every page: no
/// caching (pages hold private data, a new key's page its text), no
/// framing, no sniffing, and a policy that lets the page load only what the
/// gateway serves itself.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}
