//! What can go wrong in the store. No variant carries SQL text or a stored value, so
//! an error may be logged or shown as it is.

use std::io;

/// A store operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record asked for does not exist.
    #[error("not found")]
    NotFound,
    /// Another record already has this value of `field` (`id`, `name`, `digest`).
    #[error("a record with the same {field} exists")]
    Conflict {
        /// The field whose value is taken.
        field: &'static str,
    },
    /// `field` names a record that does not exist (or was deleted).
    #[error("{field} names no live record")]
    Missing {
        /// The field at fault.
        field: &'static str,
    },
    /// A team that still has keys that are not revoked cannot be deleted.
    #[error("the team still has keys that are not revoked")]
    TeamHasKeys,
    /// A revoked key cannot be rotated.
    #[error("the key is revoked")]
    Revoked,
    /// Spend deltas for one scope and period add up to more than an `i64` of micro-USD.
    #[error("the spend deltas overflow")]
    Overflow,
    /// The store URL's scheme is neither `sqlite:` nor `postgres:`.
    #[error("unsupported store URL: it must start with sqlite:// or postgres://")]
    Scheme,
    /// An in-memory SQLite database was asked for: the store needs a file, which its
    /// writer and readers open apart (and which outlives the process).
    #[error("an in-memory SQLite database cannot be the store: name a file")]
    InMemory,
    /// The store URL cannot be used (its text is left out: it may hold a password).
    #[error("invalid store URL")]
    Url,
    /// The database cannot be reached or answered too late.
    #[error("store unavailable: {0}")]
    Unavailable(Unavailable),
    /// The database refused a statement for a reason not listed above.
    #[error("the database refused the statement (SQLSTATE {code})")]
    Refused {
        /// The SQLSTATE (PostgreSQL) or extended result code (SQLite).
        code: String,
    },
    /// A stored value cannot be read back.
    #[error("stored {what} cannot be read")]
    Corrupt {
        /// Which value.
        what: &'static str,
    },
    /// The embedded migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(MigrateFailure),
}

/// Why the database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// No connection came free within the acquire timeout.
    #[error("timed out waiting for a connection")]
    Timeout,
    /// The pool was closed.
    #[error("the connection pool is closed")]
    Closed,
    /// An I/O error on the connection.
    #[error("i/o error ({0})")]
    Io(io::ErrorKind),
    /// TLS setup or handshake failed.
    #[error("TLS failed")]
    Tls,
    /// The database spoke unexpectedly.
    #[error("protocol error")]
    Protocol,
}

/// Why the migrations were not applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateFailure {
    /// An applied migration's file was edited since: add a new one instead.
    #[error("migration {0} was applied but its file has changed since")]
    Modified(i64),
    /// The database has a migration this build does not know: it is older than the data.
    #[error("the database has migration {0}, which this build does not know")]
    Unknown(i64),
    /// A migration failed part-way and left the database dirty.
    #[error("migration {0} is partly applied")]
    Dirty(i64),
    /// A migration's statements failed.
    #[error("migration {0} failed")]
    Failed(i64),
    /// Anything else (locking, reading the migrations table).
    #[error("the migrations table could not be read or locked")]
    Other,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match error {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::PoolTimedOut => Self::Unavailable(Unavailable::Timeout),
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                Self::Unavailable(Unavailable::Closed)
            }
            sqlx::Error::Io(e) => Self::Unavailable(Unavailable::Io(e.kind())),
            sqlx::Error::Tls(_) => Self::Unavailable(Unavailable::Tls),
            sqlx::Error::Protocol(_) => Self::Unavailable(Unavailable::Protocol),
            sqlx::Error::Configuration(_) => Self::Url,
            sqlx::Error::Database(e) => match e.kind() {
                ErrorKind::UniqueViolation => Self::Conflict {
                    field: conflict_field(e.constraint().unwrap_or(e.message())),
                },
                ErrorKind::ForeignKeyViolation => Self::Missing { field: "team_id" },
                _ => Self::Refused {
                    code: e.code().map(|c| c.into_owned()).unwrap_or_default(),
                },
            },
            sqlx::Error::Migrate(e) => Self::Migrate(MigrateFailure::from(*e)),
            _ => Self::Corrupt { what: "row" },
        }
    }
}

/// The field a unique violation is about, from PostgreSQL's constraint name
/// (`teams_name_key`) or SQLite's message (`UNIQUE constraint failed: teams.name`).
fn conflict_field(constraint: &str) -> &'static str {
    if constraint.contains("name") {
        "name"
    } else if constraint.contains("digest") || constraint.contains("key_secrets") {
        "digest"
    } else {
        "id"
    }
}

impl From<sqlx::migrate::MigrateError> for MigrateFailure {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        match error {
            MigrateError::VersionMismatch(v) => Self::Modified(v),
            MigrateError::VersionMissing(v) => Self::Unknown(v),
            MigrateError::Dirty(v) => Self::Dirty(v),
            MigrateError::ExecuteMigration(_, v) => Self::Failed(v),
            _ => Self::Other,
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error.into())
    }
}
