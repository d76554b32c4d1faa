//! `/keys`: the virtual keys — list, create (the key shown once), change
//! limits, budget and allowed models, rotate, revoke. Changes are the admin
//! API's operations ([`crate::keys::admin`]), checked the same way, and live
//! on this replica before the answer (the others follow the change feed).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_store::{KeyFilter, PageRequest, Store};

use super::UiState;
use super::data;
use super::error::UiError;
use super::format::{count, micros, time_ms, usd};
use super::forms::{self, Filled, LimitsForm};
use super::layout::{self, Chrome, Frame};
use super::session::{CsrfForm, Scope, Session, see_other};
use crate::keys::admin::views::{KeyCreated, KeyView, rfc3339};
use crate::keys::admin::{self, AdminError};
use crate::keys::unix_now;

/// Keys on one page.
const PAGE: u32 = 100;
/// Teams offered in a key's team field at most.
const TEAMS: u32 = 200;
/// How long a rotated key's old text keeps working when the form does not say.
const DEFAULT_GRACE_HOURS: u64 = 24;

/// The listing's query string.
#[derive(Debug, Default, Deserialize)]
pub struct KeyParams {
    /// The last id of the previous page.
    after: Option<String>,
    /// `1`: revoked keys too.
    revoked: Option<String>,
}

/// Teams by id and name, for the team field.
async fn team_choices(store: &dyn Store) -> Result<Vec<(String, String)>, UiError> {
    let page = PageRequest {
        after: None,
        limit: TEAMS,
    };
    let teams = store.list_teams(&page).await.map_err(UiError::Store)?;
    Ok(teams.items.into_iter().map(|t| (t.id, t.name)).collect())
}

fn key_status(view: &KeyView) -> Markup {
    let expired = view
        .expires_at
        .as_deref()
        .and_then(crate::usage::report::unix_seconds)
        .is_some_and(|at| at <= unix_now());
    html! {
        @if view.revoked_at.is_some() { span.badge.bad { "revoked" } }
        @else if expired { span.badge.bad { "expired" } }
        @else if view.disabled { span.badge.warn { "disabled" } }
        @else { span.badge.ok { "active" } }
    }
}

fn limits(view: &KeyView) -> String {
    forms::summary(view.rpm, view.tpm, view.budget_usd, view.budget_period)
}

/// `GET /keys`.
pub async fn page(
    State(state): State<UiState>,
    session: Session,
    Query(params): Query<KeyParams>,
) -> Result<Response, UiError> {
    render_list(&state, &session, &params, None, StatusCode::OK).await
}

/// The list, with a message over it (a refused form) when given.
async fn render_list(
    state: &UiState,
    session: &Session,
    params: &KeyParams,
    refused: Option<&AdminError>,
    status: StatusCode,
) -> Result<Response, UiError> {
    let store = state.app.process.keys.store().as_ref();
    let scope = session.viewer.scope();
    let mut filter = KeyFilter {
        include_revoked: params.revoked.as_deref() == Some("1"),
        ..KeyFilter::default()
    };
    let (keys, next): (Vec<KeyView>, Option<String>) = match &scope {
        Scope::Key(own) => store
            .key(own)
            .await
            .map_err(UiError::Store)?
            .map(|k| (vec![KeyView::from(k)], None))
            .unwrap_or_default(),
        Scope::All | Scope::Team(_) => {
            if let Scope::Team(team) = &scope {
                filter.team_id = Some(team.clone());
            }
            let listing = admin::list_keys(store, &filter, params.after.clone(), PAGE).await?;
            (listing.data, listing.next_cursor)
        }
    };
    let admin_view = session.viewer.is_admin();
    let teams = if admin_view {
        team_choices(store).await?
    } else {
        Vec::new()
    };
    let chrome = session.chrome();
    let body = html! {
        h1 { "Keys" }
        @if let Some(e) = refused { p.flash.error role="alert" { (e.to_string()) } }
        @if admin_view {
            details.panel open[refused.is_some()] {
                summary { strong { "Create a key" } }
                form #create-key method="post" action=(chrome.href("/keys")) {
                    (chrome.csrf_field())
                    (forms::fields(&Filled { budget_period: Some(admin::views::Period::Month), ..Filled::default() }, Some(&teams)))
                    p { button #create-key-submit.primary type="submit" { "Create key" } }
                }
            }
        }
        p.small {
            @if filter.include_revoked { a href=(chrome.href("/keys")) { "Hide revoked keys" } }
            @else { a href={ (chrome.href("/keys")) "?revoked=1" } { "Show revoked keys" } }
        }
        div.table-wrap { (table(&chrome, &keys, &teams)) }
        @if let Some(next) = next {
            div.pager { span {} a.button #next-page href={ (chrome.href("/keys")) "?after=" (next)
                @if filter.include_revoked { "&revoked=1" } } { "More →" } }
        }
    };
    let frame = Frame {
        name: "keys",
        section: "keys",
        title: "Keys",
        live: None,
    };
    let mut response = layout::page(&chrome, frame, body);
    *response.status_mut() = status;
    Ok(response)
}

fn table(chrome: &Chrome<'_>, keys: &[KeyView], teams: &[(String, String)]) -> Markup {
    html! {
        table #keys {
            thead { tr { th { "name" } th { "id" } th { "key" } th { "team" } th { "models" } th { "limits" } th { "status" } th { "created" } } }
            tbody {
                @for k in keys {
                    tr data-key-id=(k.id) {
                        td { a.key-link href=(chrome.href(&format!("/keys/{}", k.id))) { (k.name) } }
                        td { code { (k.id) } }
                        td { code { (k.prefix) "…" } }
                        td { @match &k.team_id {
                            Some(id) => a href=(chrome.href(&format!("/teams/{id}"))) {
                                (teams.iter().find(|(t, _)| t == id).map_or(id.as_str(), |(_, name)| name.as_str())) },
                            None => "–",
                        } }
                        td { @if k.models.is_empty() { span.muted { "all" } } @else { (k.models.join(", ")) } }
                        td { (limits(k)) }
                        td { (key_status(k)) }
                        td { (k.created_at.get(..10).unwrap_or(&k.created_at)) }
                    }
                }
                @if keys.is_empty() { tr { td colspan="8" .muted { "No keys yet." } } }
            }
        }
    }
}

/// The page that shows a key's text, once.
fn created(chrome: &Chrome<'_>, created: &KeyCreated, title: &str, note: &str) -> Response {
    let body = html! {
        p.small { a href=(chrome.href("/keys")) { "← Keys" } }
        h1 { (title) }
        div.panel {
            p.flash.warn { "Copy the key now: it is shown this once, and only its digest is kept." }
            div.secret {
                code #new-key { (created.key) }
                button #copy-key type="button" data-copy="#new-key" { "Copy" }
            }
            p.muted { (note) }
            p { a.button href=(chrome.href(&format!("/keys/{}", created.view.id))) { "Open " (created.view.name) } }
        }
    };
    let frame = Frame {
        name: "key-created",
        section: "keys",
        title,
        live: None,
    };
    layout::page(chrome, frame, body)
}

/// `POST /keys`: makes a key and shows it once.
pub async fn create(
    State(state): State<UiState>,
    session: Session,
    Form(form): Form<LimitsForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let store = state.app.process.keys.store().as_ref();
    let made = match form.create_key() {
        Ok(request) => admin::create_key(store, request).await,
        Err(e) => Err(e),
    };
    match forms::settle(&state, made).await? {
        Ok(made) => {
            tracing::info!(key = %made.view.id, "dashboard: key created");
            let mut response = created(
                &session.chrome(),
                &made,
                "Key created",
                "It works on /v1/* at once; its limits and allowed models are those set here.",
            );
            *response.status_mut() = StatusCode::CREATED;
            Ok(response)
        }
        Err(e) => {
            let status = crate::error::GatewayError::admin_status(&e);
            render_list(&state, &session, &KeyParams::default(), Some(&e), status).await
        }
    }
}

/// The key `id`, if the session may see it.
async fn visible(state: &UiState, session: &Session, id: &str) -> Result<KeyView, UiError> {
    let store = state.app.process.keys.store().as_ref();
    let view = admin::show_key(store, id).await?;
    let allowed = match session.viewer.scope() {
        Scope::All => true,
        Scope::Team(team) => view.team_id.as_deref() == Some(team.as_str()),
        Scope::Key(own) => own == view.id,
    };
    if allowed {
        Ok(view)
    } else {
        Err(UiError::NotFound(format!("key `{id}`")))
    }
}

/// `GET /keys/{id}`.
pub async fn detail(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    render_detail(&state, &session, &id, None, StatusCode::OK).await
}

async fn render_detail(
    state: &UiState,
    session: &Session,
    id: &str,
    refused: Option<&AdminError>,
    status: StatusCode,
) -> Result<Response, UiError> {
    let view = visible(state, session, id).await?;
    let store = state.app.process.keys.store().as_ref();
    let mut filter = data::usage_filter(&Scope::Key(view.id.clone()));
    filter.from = Some((unix_now() - 30 * data::DAY) * 1000);
    let (recent, teams, month) = tokio::join!(
        store.usage(&filter, None, 10),
        async {
            if session.viewer.is_admin() {
                team_choices(store).await
            } else {
                Ok(Vec::new())
            }
        },
        data::total(
            store,
            data::cost_query(
                &Scope::Key(view.id.clone()),
                data::month_start(unix_now()),
                data::hour_end(unix_now()),
                Vec::new()
            )
        ),
    );
    let recent = recent.map_err(UiError::Store)?.records;
    let (mut teams, month) = (teams?, month?);
    let team_name = match &view.team_id {
        Some(id) => store
            .team(id)
            .await
            .map_err(UiError::Store)?
            .map(|t| t.name),
        None => None,
    };
    // The form offers the first teams; the key's own is always among them,
    // or saving would move the key out of it.
    if let (Some(id), Some(name)) = (&view.team_id, &team_name)
        && !teams.iter().any(|(t, _)| t == id)
    {
        teams.push((id.clone(), name.clone()));
    }
    let burn = match (view.budget_usd, view.budget_period) {
        (Some(usd), Some(period)) => {
            super::costs::burn_chart(
                store,
                &Scope::Key(view.id.clone()),
                (usd * 1e6) as i64,
                period.into(),
            )
            .await?
        }
        _ => None,
    };
    let chrome = session.chrome();
    let revoked = view.revoked_at.is_some();
    let filled = Filled {
        name: &view.name,
        team_id: view.team_id.as_deref(),
        models: &view.models,
        rpm: view.rpm,
        tpm: view.tpm,
        budget_usd: view.budget_usd,
        budget_period: view.budget_period,
        expires_at: view.expires_at.as_deref(),
        disabled: view.disabled,
    };
    let body = html! {
        p.small { a href=(chrome.href("/keys")) { "← Keys" } }
        h1 { "Key " (view.name) " " (key_status(&view)) }
        @if let Some(e) = refused { p.flash.error role="alert" { (e.to_string()) } }
        @if let Some(at) = &view.revoked_at { p.flash.error #revoked { "Revoked " (at) ": every request with it is refused." } }
        div.grid2 {
            div.panel {
                dl.facts {
                    dt { "id" } dd { code { (view.id) } }
                    dt { "key" } dd { code { (view.prefix) "…" } }
                    dt { "team" } dd {
                        @match (&view.team_id, &team_name) {
                            (Some(id), Some(name)) => a href=(chrome.href(&format!("/teams/{id}"))) { (name) },
                            (Some(id), None) => code { (id) },
                            (None, _) => "–",
                        }
                    }
                    dt { "allowed models" } dd { @if view.models.is_empty() { "all" } @else { (view.models.join(", ")) } }
                    dt { "limits" } dd { (limits(&view)) }
                    dt { "spent this budget period" } dd { (view.spent_usd.map_or("–".to_owned(), |s| format!("${s:.4}"))) }
                    dt { "spent this month" } dd { (usd(month.cost_micros)) " · " (count(month.requests)) " requests" }
                    dt { "expires" } dd { (view.expires_at.as_deref().unwrap_or("never")) }
                    dt { "created" } dd { (view.created_at) }
                    dt { "changed" } dd { (view.updated_at) }
                }
            }
            div.panel {
                h2 { "Recent requests" }
                table {
                    tbody {
                        @for r in &recent {
                            tr {
                                td { a href=(chrome.href(&format!("/requests/{}.{}", r.at, r.id))) { (time_ms(r.at)) } }
                                td { (r.model) } td { (r.status) } td.num { (usd(r.cost_micros)) } td.num { (micros(r.latency_us)) }
                            }
                        }
                        @if recent.is_empty() { tr { td.muted { "None in the last 30 days." } } }
                    }
                }
                p.small { a href={ (chrome.href("/requests")) "?key=" (view.id) } { "All of its requests →" } }
            }
        }
        @if let Some(burn) = &burn {
            div.panel #burn-down { h2 { "Budget this period" } (burn) }
        }
        @if session.viewer.is_admin() && !revoked {
            div.panel {
                h2 { "Change" }
                form #edit-key method="post" action=(chrome.href(&format!("/keys/{}", view.id))) {
                    (chrome.csrf_field())
                    (forms::fields(&filled, Some(&teams)))
                    p { button #edit-key-submit.primary type="submit" { "Save" } }
                }
            }
            div.grid2 {
                div.panel {
                    h2 { "Rotate" }
                    p.muted { "A new key text replaces this one; the old text keeps working for the grace period." }
                    form #rotate-key method="post" action=(chrome.href(&format!("/keys/{}/rotate", view.id))) {
                        (chrome.csrf_field())
                        label for="grace_hours" { "Grace period (hours)" }
                        input #grace_hours name="grace_hours" inputmode="numeric" value=(DEFAULT_GRACE_HOURS);
                        p { button #rotate-key-submit type="submit" { "Rotate" } }
                    }
                }
                div.panel {
                    h2 { "Revoke" }
                    p.muted { "For good: every replica refuses it within a second." }
                    form #revoke-key method="post" action=(chrome.href(&format!("/keys/{}/revoke", view.id)))
                        data-confirm=(format!("Revoke the key {}? This cannot be undone.", view.name)) {
                        (chrome.csrf_field())
                        button #revoke-key-submit.danger type="submit" { "Revoke" }
                    }
                }
            }
        }
    };
    let frame = Frame {
        name: "key",
        section: "keys",
        title: &view.name,
        live: None,
    };
    let mut response = layout::page(&chrome, frame, body);
    *response.status_mut() = status;
    Ok(response)
}

/// `POST /keys/{id}`: changes the key to what the form holds.
pub async fn update(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<LimitsForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let store = state.app.process.keys.store().as_ref();
    let changed = match form.update_key() {
        Ok(request) => admin::update_key(store, &id, request).await,
        Err(e) => Err(e),
    };
    match forms::settle(&state, changed).await? {
        Ok(_) => Ok(see_other(
            &session.chrome().href(&format!("/keys/{id}")),
            None,
        )),
        Err(e) => {
            let status = crate::error::GatewayError::admin_status(&e);
            render_detail(&state, &session, &id, Some(&e), status).await
        }
    }
}

/// The rotate form's fields.
#[derive(Debug, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    grace_hours: Option<String>,
}

/// `POST /keys/{id}/rotate`: a new text for the key, shown once.
pub async fn rotate(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RotateForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let hours = match form
        .grace_hours
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        None => DEFAULT_GRACE_HOURS,
        Some(h) => h
            .parse::<u64>()
            .ok()
            .filter(|h| *h <= 24 * 365)
            .ok_or_else(|| {
                UiError::Invalid(format!(
                    "grace_hours: `{h}` is not a number of hours up to a year"
                ))
            })?,
    };
    let store = state.app.process.keys.store().as_ref();
    let made = admin::rotate_key(store, &id, std::time::Duration::from_secs(hours * 3_600)).await;
    match made {
        Ok(made) => {
            state.app.process.keys.changed().await;
            tracing::info!(key = %id, "dashboard: key rotated");
            let until = rfc3339(unix_now() + i64::try_from(hours * 3_600).unwrap_or(0));
            Ok(created(
                &session.chrome(),
                &made,
                "Key rotated",
                &format!("The old text keeps working until {until}."),
            ))
        }
        Err(e @ AdminError::Revoked) => {
            render_detail(&state, &session, &id, Some(&e), StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /keys/{id}/revoke`: revokes the key for good.
pub async fn revoke(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let store = state.app.process.keys.store().as_ref();
    match admin::revoke_key(store, &id).await {
        Ok(_) => {
            state.app.process.keys.changed().await;
            tracing::info!(key = %id, "dashboard: key revoked");
            Ok(see_other(
                &session.chrome().href(&format!("/keys/{id}")),
                None,
            ))
        }
        Err(e) => Err(e.into()),
    }
}
