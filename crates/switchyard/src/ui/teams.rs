//! `/teams`: teams — list, create, change limits, budget and allowed models;
//! each team's keys, spend and budget burn-down.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use switchyard_store::KeyFilter;

use super::UiState;
use super::data;
use super::error::UiError;
use super::format::{count, usd};
use super::forms::{self, Filled, LimitsForm};
use super::layout::{self, Frame};
use super::session::{Scope, Session, see_other};
use crate::keys::admin::views::TeamView;
use crate::keys::admin::{self, AdminError};
use crate::keys::unix_now;

/// Teams on the page at most.
const PAGE: u32 = 200;

fn limits(view: &TeamView) -> String {
    forms::summary(view.rpm, view.tpm, view.budget_usd, view.budget_period)
}

/// The listing's query string.
#[derive(Debug, Default, Deserialize)]
pub struct TeamParams {
    /// The last id of the previous page.
    after: Option<String>,
}

/// `GET /teams`.
pub async fn page(
    State(state): State<UiState>,
    session: Session,
    Query(params): Query<TeamParams>,
) -> Result<Response, UiError> {
    render_list(&state, &session, &params, None, StatusCode::OK).await
}

async fn render_list(
    state: &UiState,
    session: &Session,
    params: &TeamParams,
    refused: Option<&AdminError>,
    status: StatusCode,
) -> Result<Response, UiError> {
    let store = state.app.process.keys.store().as_ref();
    let (teams, next): (Vec<TeamView>, Option<String>) = match session.viewer.scope() {
        Scope::All => {
            let listing = admin::list_teams(store, params.after.clone(), PAGE).await?;
            (listing.data, listing.next_cursor)
        }
        Scope::Team(team) => (vec![admin::show_team(store, &team).await?], None),
        Scope::Key(_) => (Vec::new(), None),
    };
    let now = unix_now();
    let month = data::month_start(now);
    let spend = data::costs(
        store,
        data::cost_query(
            &session.viewer.scope(),
            month,
            data::hour_end(now),
            vec![switchyard_store::GroupBy::Team],
        ),
    )
    .await?;
    let chrome = session.chrome();
    let body = html! {
        h1 { "Teams" }
        @if let Some(e) = refused { p.flash.error role="alert" { (e.to_string()) } }
        @if session.viewer.is_admin() {
            details.panel open[refused.is_some()] {
                summary { strong { "Create a team" } }
                form #create-team method="post" action=(chrome.href("/teams")) {
                    (chrome.csrf_field())
                    (forms::fields(&Filled { budget_period: Some(admin::views::Period::Month), ..Filled::default() }, None))
                    p { button #create-team-submit.primary type="submit" { "Create team" } }
                }
            }
        }
        div.table-wrap {
            table #teams {
                thead { tr { th { "name" } th { "id" } th { "models" } th { "limits" } th.num { "requests this month" } th.num { "spend this month" } } }
                tbody {
                    @for t in &teams {
                        @let row = spend.iter().find(|r| r.group.first() == Some(&t.id));
                        tr data-team-id=(t.id) {
                            td { a.team-link href=(chrome.href(&format!("/teams/{}", t.id))) { (t.name) }
                                @if t.disabled { " " span.badge.warn { "disabled" } } }
                            td { code { (t.id) } }
                            td { @if t.models.is_empty() { span.muted { "all" } } @else { (t.models.join(", ")) } }
                            td { (limits(t)) }
                            td.num { (count(row.map_or(0, |r| r.requests))) }
                            td.num { (usd(row.map_or(0, |r| r.cost_micros))) }
                        }
                    }
                    @if teams.is_empty() { tr { td colspan="6" .muted { "No teams yet." } } }
                }
            }
        }
        @if let Some(next) = next {
            div.pager { span {} a.button #next-page href={ (chrome.href("/teams")) "?after=" (next) } { "More →" } }
        }
    };
    let frame = Frame {
        name: "teams",
        section: "teams",
        title: "Teams",
        live: None,
    };
    let mut response = layout::page(&chrome, frame, body);
    *response.status_mut() = status;
    Ok(response)
}

/// `POST /teams`.
pub async fn create(
    State(state): State<UiState>,
    session: Session,
    Form(form): Form<LimitsForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let store = state.app.process.keys.store().as_ref();
    let made = match form.create_team() {
        Ok(request) => admin::create_team(store, request).await,
        Err(e) => Err(e),
    };
    match forms::settle(&state, made).await? {
        Ok(team) => Ok(see_other(
            &session.chrome().href(&format!("/teams/{}", team.id)),
            None,
        )),
        Err(e) => {
            let status = crate::error::GatewayError::admin_status(&e);
            render_list(&state, &session, &TeamParams::default(), Some(&e), status).await
        }
    }
}

/// `GET /teams/{id}`.
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
    let visible = match session.viewer.scope() {
        Scope::All => true,
        Scope::Team(team) => team == id,
        Scope::Key(_) => false,
    };
    let store = state.app.process.keys.store().as_ref();
    let view = match admin::show_team(store, id).await {
        Ok(view) if visible => view,
        Ok(_) | Err(AdminError::NotFound(_)) => {
            return Err(UiError::NotFound(format!("team `{id}`")));
        }
        Err(e) => return Err(e.into()),
    };
    let filter = KeyFilter {
        team_id: Some(view.id.clone()),
        ..KeyFilter::default()
    };
    let keys = admin::list_keys(store, &filter, None, PAGE).await?.data;
    let now = unix_now();
    let month = data::total(
        store,
        data::cost_query(
            &Scope::Team(view.id.clone()),
            data::month_start(now),
            data::hour_end(now),
            Vec::new(),
        ),
    )
    .await?;
    let burn = match (view.budget_usd, view.budget_period) {
        (Some(usd), Some(period)) => {
            super::costs::burn_chart(
                store,
                &Scope::Team(view.id.clone()),
                (usd * 1e6) as i64,
                period.into(),
            )
            .await?
        }
        _ => None,
    };
    let chrome = session.chrome();
    let filled = Filled {
        name: &view.name,
        team_id: None,
        models: &view.models,
        rpm: view.rpm,
        tpm: view.tpm,
        budget_usd: view.budget_usd,
        budget_period: view.budget_period,
        expires_at: None,
        disabled: view.disabled,
    };
    let body = html! {
        p.small { a href=(chrome.href("/teams")) { "← Teams" } }
        h1 { "Team " (view.name) }
        @if let Some(e) = refused { p.flash.error role="alert" { (e.to_string()) } }
        @if let Some(at) = &view.deleted_at { p.flash.error { "Deleted " (at) "." } }
        div.grid2 {
            div.panel {
                dl.facts {
                    dt { "id" } dd { code { (view.id) } }
                    dt { "allowed models" } dd { @if view.models.is_empty() { "all" } @else { (view.models.join(", ")) } }
                    dt { "limits" } dd { (limits(&view)) }
                    dt { "spent this budget period" } dd { (view.spent_usd.map_or("–".to_owned(), |s| format!("${s:.4}"))) }
                    dt { "spent this month" } dd { (usd(month.cost_micros)) " · " (count(month.requests)) " requests" }
                    dt { "created" } dd { (view.created_at) }
                }
            }
            div.panel {
                h2 { "Keys" }
                table #team-keys {
                    tbody {
                        @for k in &keys {
                            tr { td { a href=(chrome.href(&format!("/keys/{}", k.id))) { (k.name) } } td { code { (k.prefix) "…" } }
                                td { @if k.revoked_at.is_some() { span.badge.bad { "revoked" } } @else if k.disabled { span.badge.warn { "disabled" } } @else { span.badge.ok { "active" } } } }
                        }
                        @if keys.is_empty() { tr { td.muted { "No keys in this team." } } }
                    }
                }
                p.small { a href={ (chrome.href("/requests")) "?team=" (view.id) } { "Its requests →" } }
            }
        }
        @if let Some(burn) = &burn {
            div.panel #burn-down { h2 { "Budget this period" } (burn) }
        }
        @if session.viewer.is_admin() && view.deleted_at.is_none() {
            div.panel {
                h2 { "Change" }
                form #edit-team method="post" action=(chrome.href(&format!("/teams/{}", view.id))) {
                    (chrome.csrf_field())
                    (forms::fields(&filled, None))
                    p { button #edit-team-submit.primary type="submit" { "Save" } }
                }
            }
        }
    };
    let frame = Frame {
        name: "team",
        section: "teams",
        title: &view.name,
        live: None,
    };
    let mut response = layout::page(&chrome, frame, body);
    *response.status_mut() = status;
    Ok(response)
}

/// `POST /teams/{id}`: changes the team to what the form holds.
pub async fn update(
    State(state): State<UiState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<LimitsForm>,
) -> Result<Response, UiError> {
    session.check_change(&form.csrf)?;
    let store = state.app.process.keys.store().as_ref();
    let changed = match form.update_team() {
        Ok(request) => admin::update_team(store, &id, request).await,
        Err(e) => Err(e),
    };
    match forms::settle(&state, changed).await? {
        Ok(_) => Ok(see_other(
            &session.chrome().href(&format!("/teams/{id}")),
            None,
        )),
        Err(e) => {
            let status = crate::error::GatewayError::admin_status(&e);
            render_detail(&state, &session, &id, Some(&e), status).await
        }
    }
}
