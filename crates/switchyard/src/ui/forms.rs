//! The fields of the key and team forms, as a browser sends them (every
//! field text; an empty one is "not set"), read into the admin operations'
//! requests, which check them as the admin API's are checked.

use serde::Deserialize;

use crate::keys::admin::AdminError;
use crate::keys::admin::views::{CreateKey, CreateTeam, Period, UpdateKey, UpdateTeam};

/// The key form and the team form (a team has no `team_id` and no `expires_at`).
#[derive(Debug, Default, Deserialize)]
pub struct LimitsForm {
    /// The session's CSRF token (missing: refused as a wrong one).
    #[serde(default)]
    pub csrf: String,
    name: Option<String>,
    team_id: Option<String>,
    /// Comma-separated globs; empty: every model.
    models: Option<String>,
    rpm: Option<String>,
    tpm: Option<String>,
    budget_usd: Option<String>,
    budget_period: Option<String>,
    /// RFC 3339 or a date.
    expires_at: Option<String>,
    /// `on` when the box is ticked (a form sends nothing otherwise).
    disabled: Option<String>,
}

type Parsed<T> = Result<T, AdminError>;

fn text(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(field: &'static str, value: Option<&String>) -> Parsed<Option<T>> {
    text(value)
        .map(|v| {
            v.replace(['_', ','], "")
                .parse::<T>()
                .map_err(|_| AdminError::Invalid {
                    field,
                    message: format!("`{v}` is not a number"),
                })
        })
        .transpose()
}

fn period(value: Option<&String>) -> Parsed<Option<Period>> {
    text(value)
        .map(|v| {
            serde_json::from_value::<Period>(serde_json::Value::String(v.clone())).map_err(|_| {
                AdminError::Invalid {
                    field: "budget_period",
                    message: format!("`{v}` is not day, week, month or total"),
                }
            })
        })
        .transpose()
}

fn globs(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split([',', '\n'])
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The limits a key's and a team's forms share, read.
struct Limits {
    models: Vec<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    budget_usd: Option<f64>,
    /// Only with a budget.
    budget_period: Option<Period>,
}

impl LimitsForm {
    fn limits(&self) -> Parsed<Limits> {
        let budget_usd = number("budget_usd", self.budget_usd.as_ref())?;
        Ok(Limits {
            models: globs(self.models.as_ref()),
            rpm: number("rpm", self.rpm.as_ref())?,
            tpm: number("tpm", self.tpm.as_ref())?,
            budget_usd,
            budget_period: match budget_usd {
                Some(_) => period(self.budget_period.as_ref())?,
                None => None,
            },
        })
    }

    /// A new key.
    pub fn create_key(&self) -> Parsed<CreateKey> {
        let l = self.limits()?;
        Ok(CreateKey {
            name: text(self.name.as_ref()).unwrap_or_default(),
            team_id: text(self.team_id.as_ref()),
            models: l.models,
            rpm: l.rpm,
            tpm: l.tpm,
            budget_usd: l.budget_usd,
            budget_period: l.budget_period,
            expires_at: text(self.expires_at.as_ref()),
            disabled: self.disabled.is_some(),
            metadata: None,
        })
    }

    /// A key's change: every field of the form is set to what it holds (an
    /// empty one is cleared).
    pub fn update_key(&self) -> Parsed<UpdateKey> {
        let l = self.limits()?;
        Ok(UpdateKey {
            name: text(self.name.as_ref()),
            team_id: Some(text(self.team_id.as_ref())),
            models: Some(l.models),
            rpm: Some(l.rpm),
            tpm: Some(l.tpm),
            budget_usd: Some(l.budget_usd),
            budget_period: l.budget_period,
            expires_at: Some(text(self.expires_at.as_ref())),
            disabled: Some(self.disabled.is_some()),
            metadata: None,
        })
    }

    /// A new team.
    pub fn create_team(&self) -> Parsed<CreateTeam> {
        let l = self.limits()?;
        Ok(CreateTeam {
            name: text(self.name.as_ref()).unwrap_or_default(),
            models: l.models,
            rpm: l.rpm,
            tpm: l.tpm,
            budget_usd: l.budget_usd,
            budget_period: l.budget_period,
            disabled: self.disabled.is_some(),
            metadata: None,
        })
    }

    /// A team's change, as [`LimitsForm::update_key`].
    pub fn update_team(&self) -> Parsed<UpdateTeam> {
        let l = self.limits()?;
        Ok(UpdateTeam {
            name: text(self.name.as_ref()),
            models: Some(l.models),
            rpm: Some(l.rpm),
            tpm: Some(l.tpm),
            budget_usd: Some(l.budget_usd),
            budget_period: l.budget_period,
            disabled: Some(self.disabled.is_some()),
            metadata: None,
        })
    }
}

/// What became of a change asked through a form: done (and taken in by
/// this replica's key directory), or refused for a reason the form's page
/// shows again (`Ok(Err(…))`), or an error page.
pub async fn settle<T>(
    state: &super::UiState,
    changed: Parsed<T>,
) -> Result<Parsed<T>, super::UiError> {
    match changed {
        Ok(done) => {
            state.app.process.keys.changed().await;
            Ok(Ok(done))
        }
        Err(
            e @ (AdminError::Invalid { .. } | AdminError::Conflict { .. } | AdminError::Revoked),
        ) => Ok(Err(e)),
        Err(e) => Err(e.into()),
    }
}

/// A key's or team's limits in one line: `120 rpm · $25 / month`.
pub fn summary(
    rpm: Option<i64>,
    tpm: Option<i64>,
    budget_usd: Option<f64>,
    period: Option<Period>,
) -> String {
    let mut parts = Vec::new();
    if let Some(rpm) = rpm {
        parts.push(format!("{} rpm", super::format::count(rpm)));
    }
    if let Some(tpm) = tpm {
        parts.push(format!("{} tpm", super::format::count(tpm)));
    }
    if let (Some(budget), Some(period)) = (budget_usd, period) {
        parts.push(format!("${budget} / {}", period_name(period)));
    }
    if parts.is_empty() {
        "–".to_owned()
    } else {
        parts.join(" · ")
    }
}

/// The fields of a key's or team's form, filled with what it has.
#[derive(Debug, Default)]
pub struct Filled<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its team.
    pub team_id: Option<&'a str>,
    /// Its globs.
    pub models: &'a [String],
    /// Its limits.
    pub rpm: Option<i64>,
    /// See `rpm`.
    pub tpm: Option<i64>,
    /// Its budget, USD.
    pub budget_usd: Option<f64>,
    /// The budget's period.
    pub budget_period: Option<Period>,
    /// When it expires (RFC 3339).
    pub expires_at: Option<&'a str>,
    /// Whether it is disabled.
    pub disabled: bool,
}

/// The name of a budget period as the forms send it.
pub fn period_name(period: Period) -> &'static str {
    match period {
        Period::Day => "day",
        Period::Week => "week",
        Period::Month => "month",
        Period::Total => "total",
    }
}

/// The budget periods, in the order the forms list them.
pub const PERIODS: [Period; 4] = [Period::Month, Period::Week, Period::Day, Period::Total];

/// The inputs of a key's or team's form, filled with `filled`; a key's has
/// its team (one of `teams`: id and name) and its expiry too.
pub fn fields(filled: &Filled<'_>, teams: Option<&[(String, String)]>) -> maud::Markup {
    let number = |n: Option<i64>| n.map(|n| n.to_string());
    maud::html! {
        div.form-grid {
            div { label for="name" { "Name" } input #name name="name" value=(filled.name) required maxlength="128"; }
            @if let Some(teams) = teams {
                div { label for="team_id" { "Team" }
                    select #team_id name="team_id" {
                        option value="" { "(no team)" }
                        @for (id, name) in teams {
                            option value=(id) selected[filled.team_id == Some(id.as_str())] { (name) " · " (id) }
                        }
                    } }
            }
            div { label for="models" { "Allowed models (globs, comma-separated; empty: all)" }
                input #models name="models" value=(filled.models.join(", ")) placeholder="gpt-4.1*, claude-*"; }
            div { label for="rpm" { "Requests per minute" } input #rpm name="rpm" inputmode="numeric" value=[number(filled.rpm)] placeholder="no limit"; }
            div { label for="tpm" { "Tokens per minute" } input #tpm name="tpm" inputmode="numeric" value=[number(filled.tpm)] placeholder="no limit"; }
            div { label for="budget_usd" { "Budget (USD)" } input #budget_usd name="budget_usd" inputmode="decimal" value=[filled.budget_usd] placeholder="no budget"; }
            div { label for="budget_period" { "Budget period" }
                select #budget_period name="budget_period" {
                    @for p in PERIODS {
                        option value=(period_name(p)) selected[filled.budget_period == Some(p)] { (period_name(p)) }
                    }
                } }
            @if teams.is_some() {
                div { label for="expires_at" { "Expires (RFC 3339 or date; empty: never)" }
                    input #expires_at name="expires_at" value=[filled.expires_at] placeholder="2027-01-31"; }
            }
            div { label { input type="checkbox" name="disabled" checked[filled.disabled] style="width:auto"; " disabled" } }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_unset_and_bad_numbers_name_their_field() {
        let form = LimitsForm {
            name: Some(" app ".into()),
            models: Some("gpt-4.1*, claude-*,,".into()),
            rpm: Some("1,200".into()),
            tpm: Some(String::new()),
            budget_usd: Some("25.5".into()),
            budget_period: Some("month".into()),
            ..LimitsForm::default()
        };
        let key = form.create_key().unwrap();
        assert_eq!(key.name, "app");
        assert_eq!(key.models, ["gpt-4.1*", "claude-*"]);
        assert_eq!(
            (key.rpm, key.tpm, key.budget_usd),
            (Some(1_200), None, Some(25.5))
        );
        assert_eq!(key.budget_period, Some(Period::Month));
        assert!(!key.disabled);
        let change = form.update_key().unwrap();
        assert_eq!(change.tpm, Some(None), "an empty field clears the limit");
        assert_eq!(change.team_id, Some(None));
        let bad = LimitsForm {
            rpm: Some("lots".into()),
            ..LimitsForm::default()
        };
        assert!(matches!(
            bad.create_key(),
            Err(AdminError::Invalid { field: "rpm", .. })
        ));
        let bad = LimitsForm {
            budget_usd: Some("10".into()),
            budget_period: Some("fortnight".into()),
            ..LimitsForm::default()
        };
        assert!(matches!(
            bad.create_team(),
            Err(AdminError::Invalid {
                field: "budget_period",
                ..
            })
        ));
    }
}
