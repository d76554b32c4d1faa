//! [`Backend`](crate::backend::Backend) for both databases, from one text: the SQL is the
//! same for both (see [`sql`](crate::sql)), and so is the logic around it.
//!
//! `backend!(Store, Database)` implements it, in a module of its own, for a type of the
//! calling module that has `fn reader(&self) -> &Pool<Database>` (reads) and
//! `async fn begin(&self) -> Result<Transaction<'static, Database>>` (a transaction
//! that may write, serialized with every other writer) and `async fn
//! begin_off_feed(&self)` (the same for writes that append no change, which need not
//! wait for the feed's writers); `Database` is the name of sqlx's type (`Sqlite`,
//! `Postgres`).

macro_rules! backend {
    ($store:ident, $db:ident) => {
        mod queries {
            use sqlx::types::Json;
            use sqlx::$db;

            use super::$store;

            use $crate::backend::Backend;
            use $crate::row::{self, ChangeRow, KeyRow, SecretRow, TeamRow, now};
            use $crate::sql;
            use $crate::{
                Change, ChangeKind, KeyFilter, KeyMatch, KeyPatch, KeyRecord, LiveKey, NewKey,
                NewSecret, NewTeam, Page, PageRequest, Result, SecretRecord, SessionRecord,
                SpendDelta, SpendScope, StoreError, TeamPatch, TeamRecord,
            };

            type Tx = sqlx::Transaction<'static, $db>;
            type Query = sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>;

            fn bind_team(query: Query, t: &TeamRecord) -> Query {
                query
                    .bind(t.id.as_str())
                    .bind(t.name.as_str())
                    .bind(Json(&t.models))
                    .bind(t.limits.rpm)
                    .bind(t.limits.tpm)
                    .bind(t.limits.budget.map(|b| b.micros))
                    .bind(t.limits.budget.map(|b| b.period.as_str()))
                    .bind(t.disabled)
                    .bind(Json(&t.metadata))
                    .bind(t.created_at)
                    .bind(t.updated_at)
                    .bind(t.deleted_at)
            }

            fn bind_key(query: Query, k: &KeyRecord) -> Query {
                query
                    .bind(k.id.as_str())
                    .bind(k.name.as_str())
                    .bind(k.team_id.as_deref())
                    .bind(Json(&k.models))
                    .bind(k.limits.rpm)
                    .bind(k.limits.tpm)
                    .bind(k.limits.budget.map(|b| b.micros))
                    .bind(k.limits.budget.map(|b| b.period.as_str()))
                    .bind(k.expires_at)
                    .bind(k.disabled)
                    .bind(k.revoked_at)
                    .bind(Json(&k.metadata))
                    .bind(k.created_at)
                    .bind(k.updated_at)
            }

            /// Writes the whole team row and its change, then commits.
            async fn save_team(
                mut tx: Tx,
                team: &TeamRecord,
                statement: &'static str,
            ) -> Result<()> {
                bind_team(sqlx::query(statement), team)
                    .execute(&mut *tx)
                    .await?;
                append_change(&mut tx, ChangeKind::Team, &team.id, team.updated_at).await?;
                Ok(tx.commit().await?)
            }

            /// Writes the whole key row and its change, then commits.
            async fn save_key(mut tx: Tx, key: &KeyRecord) -> Result<()> {
                bind_key(sqlx::query(sql::UPDATE_KEY), key)
                    .execute(&mut *tx)
                    .await?;
                append_change(&mut tx, ChangeKind::Key, &key.id, key.updated_at).await?;
                Ok(tx.commit().await?)
            }

            async fn append_change(tx: &mut Tx, kind: ChangeKind, id: &str, at: i64) -> Result<()> {
                sqlx::query(sql::INSERT_CHANGE)
                    .bind(kind.as_str())
                    .bind(id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn insert_secret(
                tx: &mut Tx,
                key_id: &str,
                secret: NewSecret,
                at: i64,
            ) -> Result<()> {
                sqlx::query(sql::INSERT_SECRET)
                    .bind(secret.digest.to_vec())
                    .bind(key_id)
                    .bind(secret.prefix)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// The live team `id`, read inside `tx`.
            async fn live_team(tx: &mut Tx, id: &str) -> Result<TeamRecord> {
                let row: Option<TeamRow> = sqlx::query_as(sql::TEAM)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                match row.map(TeamRecord::try_from).transpose()? {
                    Some(team) if team.deleted_at.is_none() => Ok(team),
                    _ => Err(StoreError::NotFound),
                }
            }

            /// Refuses a `team_id` that names no live team.
            async fn check_team(tx: &mut Tx, team_id: Option<&str>) -> Result<()> {
                let Some(team_id) = team_id else {
                    return Ok(());
                };
                let live: bool = sqlx::query_scalar(sql::TEAM_IS_LIVE)
                    .bind(team_id)
                    .fetch_one(&mut **tx)
                    .await?;
                if live {
                    Ok(())
                } else {
                    Err(StoreError::Missing { field: "team_id" })
                }
            }

            async fn key_in(tx: &mut Tx, id: &str) -> Result<KeyRecord> {
                let row: Option<KeyRow> = sqlx::query_as(sql::KEY)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.map(KeyRecord::try_from)
                    .transpose()?
                    .ok_or(StoreError::NotFound)
            }

            impl Backend for $store {
                async fn ping(&self) -> Result<()> {
                    sqlx::query(sql::PING).execute(self.reader()).await?;
                    Ok(())
                }

                async fn create_team(&self, new: NewTeam) -> Result<TeamRecord> {
                    let team = TeamRecord::created(new, now());
                    save_team(self.begin().await?, &team, sql::INSERT_TEAM).await?;
                    Ok(team)
                }

                async fn team(&self, id: &str) -> Result<Option<TeamRecord>> {
                    let row: Option<TeamRow> = sqlx::query_as(sql::TEAM)
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?;
                    row.map(TeamRecord::try_from).transpose()
                }

                async fn list_teams(&self, page: &PageRequest) -> Result<Page<TeamRecord>> {
                    let rows: Vec<TeamRow> = sqlx::query_as(sql::LIST_TEAMS)
                        .bind(page.after.as_deref())
                        .bind(row::fetch_limit(page.limit))
                        .fetch_all(self.reader())
                        .await?;
                    Ok(row::page(
                        row::records(rows)?,
                        page.limit,
                        |t: &TeamRecord| &t.id,
                    ))
                }

                async fn update_team(&self, id: &str, patch: TeamPatch) -> Result<TeamRecord> {
                    let mut tx = self.begin().await?;
                    let mut team = live_team(&mut tx, id).await?;
                    team.patch(patch, now());
                    save_team(tx, &team, sql::UPDATE_TEAM).await?;
                    Ok(team)
                }

                async fn delete_team(&self, id: &str) -> Result<TeamRecord> {
                    let mut tx = self.begin().await?;
                    let mut team = live_team(&mut tx, id).await?;
                    let has_keys: bool = sqlx::query_scalar(sql::TEAM_HAS_KEYS)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    if has_keys {
                        return Err(StoreError::TeamHasKeys);
                    }
                    let at = now();
                    team.deleted_at = Some(at);
                    team.updated_at = at;
                    save_team(tx, &team, sql::UPDATE_TEAM).await?;
                    Ok(team)
                }

                async fn create_key(&self, new: NewKey, secret: NewSecret) -> Result<KeyRecord> {
                    let at = now();
                    let key = KeyRecord::created(new, secret.prefix.clone(), at);
                    let mut tx = self.begin().await?;
                    check_team(&mut tx, key.team_id.as_deref()).await?;
                    bind_key(sqlx::query(sql::INSERT_KEY), &key)
                        .execute(&mut *tx)
                        .await?;
                    insert_secret(&mut tx, &key.id, secret, at).await?;
                    append_change(&mut tx, ChangeKind::Key, &key.id, at).await?;
                    tx.commit().await?;
                    Ok(key)
                }

                async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
                    let row: Option<KeyRow> = sqlx::query_as(sql::KEY)
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?;
                    row.map(KeyRecord::try_from).transpose()
                }

                async fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<KeyMatch>> {
                    let row: Option<SecretRow> = sqlx::query_as(sql::SECRET)
                        .bind(digest.to_vec())
                        .fetch_optional(self.reader())
                        .await?;
                    let Some(secret) = row.map(SecretRecord::try_from).transpose()? else {
                        return Ok(None);
                    };
                    let key =
                        Backend::key(self, &secret.key_id)
                            .await?
                            .ok_or(StoreError::Corrupt {
                                what: "key of a secret",
                            })?;
                    Ok(Some(KeyMatch { key, secret }))
                }

                async fn list_keys(
                    &self,
                    filter: &KeyFilter,
                    page: &PageRequest,
                ) -> Result<Page<KeyRecord>> {
                    let rows: Vec<KeyRow> = sqlx::query_as(sql::LIST_KEYS)
                        .bind(filter.team_id.as_deref())
                        .bind(filter.include_revoked)
                        .bind(page.after.as_deref())
                        .bind(filter.prefix.as_deref())
                        .bind(row::fetch_limit(page.limit))
                        .fetch_all(self.reader())
                        .await?;
                    Ok(row::page(
                        row::records(rows)?,
                        page.limit,
                        |k: &KeyRecord| &k.id,
                    ))
                }

                async fn update_key(&self, id: &str, patch: KeyPatch) -> Result<KeyRecord> {
                    let mut tx = self.begin().await?;
                    let mut key = key_in(&mut tx, id).await?;
                    if let Some(Some(team_id)) = &patch.team_id {
                        check_team(&mut tx, Some(team_id)).await?;
                    }
                    key.patch(patch, now());
                    save_key(tx, &key).await?;
                    Ok(key)
                }

                async fn rotate_key(
                    &self,
                    id: &str,
                    secret: NewSecret,
                    grace_until: i64,
                ) -> Result<KeyRecord> {
                    let mut tx = self.begin().await?;
                    let mut key = key_in(&mut tx, id).await?;
                    if key.revoked_at.is_some() {
                        return Err(StoreError::Revoked);
                    }
                    let at = now();
                    sqlx::query(sql::EXPIRE_SECRETS)
                        .bind(id)
                        .bind(grace_until)
                        .execute(&mut *tx)
                        .await?;
                    key.prefix = secret.prefix.clone();
                    key.updated_at = at;
                    insert_secret(&mut tx, id, secret, at).await?;
                    save_key(tx, &key).await?;
                    Ok(key)
                }

                async fn revoke_key(&self, id: &str) -> Result<KeyRecord> {
                    let mut tx = self.begin().await?;
                    let mut key = key_in(&mut tx, id).await?;
                    if key.revoked_at.is_some() {
                        return Ok(key);
                    }
                    let at = now();
                    key.revoked_at = Some(at);
                    key.updated_at = at;
                    save_key(tx, &key).await?;
                    Ok(key)
                }

                async fn secrets(&self, key_id: &str) -> Result<Vec<SecretRecord>> {
                    let rows: Vec<SecretRow> = sqlx::query_as(sql::SECRETS)
                        .bind(key_id)
                        .fetch_all(self.reader())
                        .await?;
                    row::records(rows)
                }

                async fn live_keys(&self, page: &PageRequest) -> Result<Page<LiveKey>> {
                    let keys = Backend::list_keys(self, &KeyFilter::default(), page).await?;
                    let (Some(first), Some(last)) = (keys.items.first(), keys.items.last()) else {
                        return Ok(row::live(keys, Vec::new()));
                    };
                    let rows: Vec<SecretRow> = sqlx::query_as(sql::LIVE_SECRETS)
                        .bind(first.id.as_str())
                        .bind(last.id.as_str())
                        .bind(now())
                        .fetch_all(self.reader())
                        .await?;
                    Ok(row::live(keys, row::records(rows)?))
                }

                async fn changes_after(&self, seq: i64, limit: u32) -> Result<Vec<Change>> {
                    let rows: Vec<ChangeRow> = sqlx::query_as(sql::CHANGES_AFTER)
                        .bind(seq)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await?;
                    row::records(rows)
                }

                async fn last_change(&self) -> Result<i64> {
                    Ok(sqlx::query_scalar(sql::LAST_CHANGE)
                        .fetch_one(self.reader())
                        .await?)
                }

                async fn trim_changes(&self, before: i64) -> Result<u64> {
                    let mut tx = self.begin_off_feed().await?;
                    let done = sqlx::query(sql::TRIM_CHANGES)
                        .bind(before)
                        .bind(i64::MAX)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected())
                }

                async fn add_spend(&self, deltas: &[SpendDelta]) -> Result<()> {
                    let sums = row::merged(deltas)?;
                    if sums.is_empty() {
                        return Ok(());
                    }
                    let at = now();
                    let mut tx = self.begin_off_feed().await?;
                    for ((scope, scope_id, period_start), micros) in sums {
                        sqlx::query(sql::ADD_SPEND)
                            .bind(scope.as_str())
                            .bind(scope_id)
                            .bind(period_start)
                            .bind(micros)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(tx.commit().await?)
                }

                async fn claim_alert(
                    &self,
                    scope: SpendScope,
                    scope_id: &str,
                    period_start: i64,
                    threshold_pct: u8,
                ) -> Result<bool> {
                    let mut tx = self.begin_off_feed().await?;
                    let claimed = sqlx::query(sql::CLAIM_ALERT)
                        .bind(scope.as_str())
                        .bind(scope_id)
                        .bind(period_start)
                        .bind(i64::from(threshold_pct))
                        .bind(now())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(claimed == 1)
                }

                async fn release_alert(
                    &self,
                    scope: SpendScope,
                    scope_id: &str,
                    period_start: i64,
                    threshold_pct: u8,
                ) -> Result<()> {
                    let mut tx = self.begin_off_feed().await?;
                    sqlx::query(sql::RELEASE_ALERT)
                        .bind(scope.as_str())
                        .bind(scope_id)
                        .bind(period_start)
                        .bind(i64::from(threshold_pct))
                        .execute(&mut *tx)
                        .await?;
                    Ok(tx.commit().await?)
                }

                async fn spend(
                    &self,
                    scope: SpendScope,
                    scope_id: &str,
                    period_start: i64,
                ) -> Result<i64> {
                    let spent: Option<i64> = sqlx::query_scalar(sql::SPEND)
                        .bind(scope.as_str())
                        .bind(scope_id)
                        .bind(period_start)
                        .fetch_optional(self.reader())
                        .await?;
                    Ok(spent.unwrap_or(0))
                }

                async fn create_session(&self, session: &SessionRecord) -> Result<()> {
                    let mut tx = self.begin_off_feed().await?;
                    sqlx::query(sql::TRIM_SESSIONS)
                        .bind(session.created_at)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(sql::CREATE_SESSION)
                        .bind(session.digest.to_vec())
                        .bind(session.key_id.as_deref())
                        .bind(session.credential.to_vec())
                        .bind(session.created_at)
                        .bind(session.expires_at)
                        .execute(&mut *tx)
                        .await?;
                    Ok(tx.commit().await?)
                }

                async fn session(
                    &self,
                    digest: &[u8; 32],
                    now: i64,
                ) -> Result<Option<SessionRecord>> {
                    let row: Option<(Option<String>, Vec<u8>, i64, i64)> =
                        sqlx::query_as(sql::SESSION)
                            .bind(digest.to_vec())
                            .bind(now)
                            .fetch_optional(self.reader())
                            .await?;
                    let Some((key_id, credential, created_at, expires_at)) = row else {
                        return Ok(None);
                    };
                    let credential = <[u8; 32]>::try_from(credential.as_slice()).map_err(|_| {
                        StoreError::Corrupt {
                            what: "session credential",
                        }
                    })?;
                    Ok(Some(SessionRecord {
                        digest: *digest,
                        key_id,
                        credential,
                        created_at,
                        expires_at,
                    }))
                }

                async fn delete_session(&self, digest: &[u8; 32]) -> Result<()> {
                    let mut tx = self.begin_off_feed().await?;
                    sqlx::query(sql::DELETE_SESSION)
                        .bind(digest.to_vec())
                        .execute(&mut *tx)
                        .await?;
                    Ok(tx.commit().await?)
                }
            }
        }
    };
}

pub(crate) use backend;
