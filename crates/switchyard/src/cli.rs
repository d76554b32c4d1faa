//! `switchyard keys …` and `switchyard teams …`: the admin operations on the
//! store itself, with no server running (servers pick the changes up from
//! the change feed within `store.poll_interval`).
//!
//! The store is `--store URL` (or `SWITCHYARD_STORE_URL`), else the
//! configuration's `store.url`. A new or rotated key's text is printed alone
//! on stdout, so a script can capture it; `--json` prints the same JSON as the
//! admin API.
//!
//! `switchyard prices` (in `prices.rs`) prints a price list; `switchyard
//! report` (in `report.rs`) reports usage and cost from the store.

mod prices;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_store::{KeyFilter, Store};

use crate::config::{self, Redis, Source};
use crate::keys::admin::views::{
    CreateKey, CreateTeam, KeyView, Listing, Period, TeamView, UpdateKey, UpdateTeam,
};
use crate::keys::admin::{self, AdminError};
use crate::keys::broadcast;

pub use prices::{PricesArgs, prices};
pub use report::{ReportArgs, report};

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreAt {
    /// The store (`sqlite://…` or `postgres://…`); default: the config's `store.url`.
    #[arg(long, global = true, env = "SWITCHYARD_STORE_URL")]
    store: Option<String>,
    /// The YAML configuration whose `store.url` is used.
    #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
}

/// Where the store is, and how answers are printed.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where the store is.
    #[command(flatten)]
    at: StoreAt,
    /// Print JSON, as the admin API answers.
    #[arg(long, global = true)]
    json: bool,
}

/// `switchyard keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; its text is printed once, and only its digest is stored.
    Create {
        /// A label for people.
        #[arg(long)]
        name: String,
        /// Its limits, team, models and expiry.
        #[command(flatten)]
        fields: KeyFields,
    },
    /// List keys, by id.
    List {
        /// Only the keys of this team.
        #[arg(long)]
        team: Option<String>,
        /// Only keys whose secret starts with this (`sk-sy-AbC12`).
        #[arg(long)]
        prefix: Option<String>,
        /// Revoked keys too.
        #[arg(long)]
        all: bool,
        /// Keys per page (1–200); every page is printed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one key.
    Show {
        /// Its id (`key_…`).
        id: String,
    },
    /// Change a key's fields.
    Update {
        /// Its id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Its limits, team, models and expiry.
        #[command(flatten)]
        fields: KeyFields,
        /// Enable or disable it.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Give a key a new secret; the old one works for the grace period.
    Rotate {
        /// Its id.
        id: String,
        /// How long the old secret keeps working.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Revoke a key for good.
    Revoke {
        /// Its id.
        id: String,
    },
}

/// The fields a key is made or changed with.
#[derive(Debug, Args)]
pub struct KeyFields {
    /// Its team's id.
    #[arg(long)]
    team: Option<String>,
    /// Its models and limits.
    #[command(flatten)]
    limits: LimitFields,
    /// When it stops working (RFC 3339).
    #[arg(long)]
    expires_at: Option<String>,
}

/// `switchyard teams …`
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// Make a team.
    Create {
        /// Unique among teams.
        #[arg(long)]
        name: String,
        /// Its models and limits.
        #[command(flatten)]
        fields: LimitFields,
    },
    /// List the teams, by id.
    List {
        /// Teams per page (1–200); every page is printed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one team.
    Show {
        /// Its id (`team_…`).
        id: String,
    },
    /// Change a team's fields.
    Update {
        /// Its id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Its models and limits.
        #[command(flatten)]
        fields: LimitFields,
        /// Enable or disable it (and so its keys).
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Delete a team without live keys.
    Delete {
        /// Its id.
        id: String,
    },
}

/// The models and limits of a key or a team (a team's are shared by its keys).
#[derive(Debug, Args)]
pub struct LimitFields {
    /// Allowed model globs, comma-separated (`gpt-*,claude-*`).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Spend allowed per budget period, in USD.
    #[arg(long)]
    budget_usd: Option<f64>,
    /// `day`, `week`, `month` or `total` (UTC).
    #[arg(long, value_enum)]
    budget_period: Option<Period>,
}

/// Runs `switchyard keys …`.
pub async fn keys(command: KeysCommand, args: StoreArgs) -> ExitCode {
    let Some(opened) = open(&args.at).await else {
        return ExitCode::FAILURE;
    };
    let writes = !matches!(command, KeysCommand::List { .. } | KeysCommand::Show { .. });
    let code = keys_on(opened.store.as_ref(), command, args.json).await;
    if writes && code == ExitCode::SUCCESS {
        opened.changed().await;
    }
    code
}

async fn keys_on(store: &dyn Store, command: KeysCommand, json: bool) -> ExitCode {
    match command {
        KeysCommand::Create { name, fields } => {
            let request = CreateKey {
                name,
                team_id: fields.team,
                models: fields.limits.models.unwrap_or_default(),
                rpm: fields.limits.rpm,
                tpm: fields.limits.tpm,
                budget_usd: fields.limits.budget_usd,
                budget_period: fields.limits.budget_period,
                expires_at: fields.expires_at,
                ..CreateKey::default()
            };
            finish(admin::create_key(store, request).await, |created| {
                if json {
                    print_json(created);
                } else {
                    eprintln!(
                        "created {} ({}): the key is shown this once",
                        created.view.id, created.view.name
                    );
                    println!("{}", created.key);
                }
            })
        }
        KeysCommand::List {
            team,
            prefix,
            all,
            limit,
        } => {
            let filter = KeyFilter {
                team_id: team,
                prefix,
                include_revoked: all,
            };
            let keys =
                match every_page(|after| admin::list_keys(store, &filter, after, limit)).await {
                    Ok(keys) => keys,
                    Err(e) => return failed(&e),
                };
            if json {
                print_json(&keys);
            } else {
                print_keys(&keys);
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Show { id } => finish(admin::show_key(store, &id).await, print_json),
        KeysCommand::Update {
            id,
            name,
            fields,
            disabled,
        } => {
            let request = UpdateKey {
                name,
                team_id: fields.team.map(Some),
                models: fields.limits.models,
                rpm: fields.limits.rpm.map(Some),
                tpm: fields.limits.tpm.map(Some),
                budget_usd: fields.limits.budget_usd.map(Some),
                budget_period: fields.limits.budget_period,
                expires_at: fields.expires_at.map(Some),
                disabled,
                metadata: None,
            };
            finish(admin::update_key(store, &id, request).await, print_json)
        }
        KeysCommand::Rotate { id, grace } => {
            finish(admin::rotate_key(store, &id, grace).await, |created| {
                if json {
                    print_json(created);
                } else {
                    eprintln!(
                        "rotated {}: the old key works for {}",
                        created.view.id,
                        humantime::format_duration(grace)
                    );
                    println!("{}", created.key);
                }
            })
        }
        KeysCommand::Revoke { id } => {
            finish(admin::revoke_key(store, &id).await, |key: &KeyView| {
                if json {
                    print_json(key);
                } else {
                    println!("revoked {} ({})", key.id, key.name);
                }
            })
        }
    }
}

/// Runs `switchyard teams …`.
pub async fn teams(command: TeamsCommand, args: StoreArgs) -> ExitCode {
    let Some(opened) = open(&args.at).await else {
        return ExitCode::FAILURE;
    };
    let writes = !matches!(
        command,
        TeamsCommand::List { .. } | TeamsCommand::Show { .. }
    );
    let code = teams_on(opened.store.as_ref(), command, args.json).await;
    if writes && code == ExitCode::SUCCESS {
        opened.changed().await;
    }
    code
}

async fn teams_on(store: &dyn Store, command: TeamsCommand, json: bool) -> ExitCode {
    match command {
        TeamsCommand::Create { name, fields } => {
            let request = CreateTeam {
                name,
                models: fields.models.unwrap_or_default(),
                rpm: fields.rpm,
                tpm: fields.tpm,
                budget_usd: fields.budget_usd,
                budget_period: fields.budget_period,
                ..CreateTeam::default()
            };
            finish(
                admin::create_team(store, request).await,
                |team: &TeamView| {
                    if json {
                        print_json(team);
                    } else {
                        println!("{}", team.id);
                    }
                },
            )
        }
        TeamsCommand::List { limit } => {
            let teams = match every_page(|after| admin::list_teams(store, after, limit)).await {
                Ok(teams) => teams,
                Err(e) => return failed(&e),
            };
            if json {
                print_json(&teams);
            } else {
                for team in &teams {
                    println!("{}\t{}\t{}", team.id, team.name, state(team.disabled, None));
                }
            }
            ExitCode::SUCCESS
        }
        TeamsCommand::Show { id } => finish(admin::show_team(store, &id).await, print_json),
        TeamsCommand::Update {
            id,
            name,
            fields,
            disabled,
        } => {
            let request = UpdateTeam {
                name,
                models: fields.models,
                rpm: fields.rpm.map(Some),
                tpm: fields.tpm.map(Some),
                budget_usd: fields.budget_usd.map(Some),
                budget_period: fields.budget_period,
                disabled,
                metadata: None,
            };
            finish(admin::update_team(store, &id, request).await, print_json)
        }
        TeamsCommand::Delete { id } => {
            finish(admin::delete_team(store, &id).await, |team: &TeamView| {
                if json {
                    print_json(team);
                } else {
                    println!("deleted {} ({})", team.id, team.name);
                }
            })
        }
    }
}

/// The store named by `--store`, or by the configuration, and the Redis on
/// which the configuration's replicas hear of changes.
struct Opened {
    store: Arc<dyn Store>,
    announce: Option<Redis>,
}

impl Opened {
    /// Tells running gateways of a change (they also find it by polling).
    async fn changed(&self) {
        if let Some(redis) = &self.announce {
            broadcast::publish(redis).await;
        }
    }
}

/// Opens the store named by `--store`, or by the configuration.
async fn open(at: &StoreAt) -> Option<Opened> {
    let (url, options, announce) = match &at.store {
        Some(url) => (url.clone(), switchyard_store::StoreOptions::default(), None),
        None => {
            let checked = config::load(&Source::resolve(at.config.clone()));
            let Some(config) = checked.config else {
                eprint!("{}", checked.problems);
                eprintln!("the configuration is not valid (or pass --store URL)");
                return None;
            };
            (config.store.url, config.store.options, config.redis)
        }
    };
    match switchyard_store::open(&url, &options).await {
        Ok(store) => Some(Opened { store, announce }),
        Err(e) => {
            eprintln!("cannot use the store: {e}");
            None
        }
    }
}

/// Every item of a listing, page after page.
async fn every_page<T, F>(mut page: impl FnMut(Option<String>) -> F) -> admin::Result<Vec<T>>
where
    F: Future<Output = admin::Result<Listing<T>>>,
{
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let listing = page(after).await?;
        items.extend(listing.data);
        match listing.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => return Ok(items),
        }
    }
}

fn finish<T>(result: admin::Result<T>, print: impl FnOnce(&T)) -> ExitCode {
    match result {
        Ok(value) => {
            print(&value);
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &AdminError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: {e}"),
    }
}

fn print_keys(keys: &[KeyView]) {
    for key in keys {
        println!(
            "{}\t{}\t{}…\t{}\t{}",
            key.id,
            key.name,
            key.prefix,
            key.team_id.as_deref().unwrap_or("-"),
            state(key.disabled, key.revoked_at.as_deref()),
        );
    }
}

fn state(disabled: bool, revoked_at: Option<&str>) -> &'static str {
    match (revoked_at, disabled) {
        (Some(_), _) => "revoked",
        (None, true) => "disabled",
        (None, false) => "active",
    }
}
