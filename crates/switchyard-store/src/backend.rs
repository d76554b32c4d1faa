//! The backends' side of [`Store`]: the same methods as plain `async fn`s, boxed once
//! here for every backend.

use std::future::Future;

use futures_util::future::BoxFuture;

use crate::{
    Change, KeyFilter, KeyMatch, KeyPatch, KeyRecord, LiveKey, NewKey, NewSecret, NewTeam, Page,
    PageRequest, Result, SecretRecord, SessionRecord, SpendDelta, SpendScope, Store, TeamPatch,
    TeamRecord,
};

/// What a database backend implements; see [`Store`] for each method's meaning.
pub(crate) trait Backend: Send + Sync + 'static {
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    fn create_team(&self, team: NewTeam) -> impl Future<Output = Result<TeamRecord>> + Send;
    fn team(&self, id: &str) -> impl Future<Output = Result<Option<TeamRecord>>> + Send;
    fn list_teams(
        &self,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<TeamRecord>>> + Send;
    fn update_team(
        &self,
        id: &str,
        patch: TeamPatch,
    ) -> impl Future<Output = Result<TeamRecord>> + Send;
    fn delete_team(&self, id: &str) -> impl Future<Output = Result<TeamRecord>> + Send;
    fn create_key(
        &self,
        key: NewKey,
        secret: NewSecret,
    ) -> impl Future<Output = Result<KeyRecord>> + Send;
    fn key(&self, id: &str) -> impl Future<Output = Result<Option<KeyRecord>>> + Send;
    fn key_by_digest(
        &self,
        digest: &[u8; 32],
    ) -> impl Future<Output = Result<Option<KeyMatch>>> + Send;
    fn list_keys(
        &self,
        filter: &KeyFilter,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>>> + Send;
    fn update_key(
        &self,
        id: &str,
        patch: KeyPatch,
    ) -> impl Future<Output = Result<KeyRecord>> + Send;
    fn rotate_key(
        &self,
        id: &str,
        secret: NewSecret,
        grace_until: i64,
    ) -> impl Future<Output = Result<KeyRecord>> + Send;
    fn revoke_key(&self, id: &str) -> impl Future<Output = Result<KeyRecord>> + Send;
    fn secrets(&self, key_id: &str) -> impl Future<Output = Result<Vec<SecretRecord>>> + Send;
    fn live_keys(&self, page: &PageRequest) -> impl Future<Output = Result<Page<LiveKey>>> + Send;
    fn changes_after(
        &self,
        seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;
    fn last_change(&self) -> impl Future<Output = Result<i64>> + Send;
    fn trim_changes(&self, before: i64) -> impl Future<Output = Result<u64>> + Send;
    fn add_spend(&self, deltas: &[SpendDelta]) -> impl Future<Output = Result<()>> + Send;
    fn claim_alert(
        &self,
        scope: SpendScope,
        scope_id: &str,
        period_start: i64,
        threshold_pct: u8,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn release_alert(
        &self,
        scope: SpendScope,
        scope_id: &str,
        period_start: i64,
        threshold_pct: u8,
    ) -> impl Future<Output = Result<()>> + Send;
    fn spend(
        &self,
        scope: SpendScope,
        scope_id: &str,
        period_start: i64,
    ) -> impl Future<Output = Result<i64>> + Send;
    fn create_session(&self, session: &SessionRecord) -> impl Future<Output = Result<()>> + Send;
    fn session(
        &self,
        digest: &[u8; 32],
        now: i64,
    ) -> impl Future<Output = Result<Option<SessionRecord>>> + Send;
    fn delete_session(&self, digest: &[u8; 32]) -> impl Future<Output = Result<()>> + Send;
}

impl<B: Backend + crate::usage::UsageBackend> Store for B {
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Backend::ping(self))
    }
    fn create_team<'a>(&'a self, team: NewTeam) -> BoxFuture<'a, Result<TeamRecord>> {
        Box::pin(Backend::create_team(self, team))
    }
    fn team<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TeamRecord>>> {
        Box::pin(Backend::team(self, id))
    }
    fn list_teams<'a>(&'a self, page: &'a PageRequest) -> BoxFuture<'a, Result<Page<TeamRecord>>> {
        Box::pin(Backend::list_teams(self, page))
    }
    fn update_team<'a>(
        &'a self,
        id: &'a str,
        patch: TeamPatch,
    ) -> BoxFuture<'a, Result<TeamRecord>> {
        Box::pin(Backend::update_team(self, id, patch))
    }
    fn delete_team<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<TeamRecord>> {
        Box::pin(Backend::delete_team(self, id))
    }
    fn create_key<'a>(
        &'a self,
        key: NewKey,
        secret: NewSecret,
    ) -> BoxFuture<'a, Result<KeyRecord>> {
        Box::pin(Backend::create_key(self, key, secret))
    }
    fn key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<KeyRecord>>> {
        Box::pin(Backend::key(self, id))
    }
    fn key_by_digest<'a>(
        &'a self,
        digest: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<KeyMatch>>> {
        Box::pin(Backend::key_by_digest(self, digest))
    }
    fn list_keys<'a>(
        &'a self,
        filter: &'a KeyFilter,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, Result<Page<KeyRecord>>> {
        Box::pin(Backend::list_keys(self, filter, page))
    }
    fn update_key<'a>(&'a self, id: &'a str, patch: KeyPatch) -> BoxFuture<'a, Result<KeyRecord>> {
        Box::pin(Backend::update_key(self, id, patch))
    }
    fn rotate_key<'a>(
        &'a self,
        id: &'a str,
        secret: NewSecret,
        grace_until: i64,
    ) -> BoxFuture<'a, Result<KeyRecord>> {
        Box::pin(Backend::rotate_key(self, id, secret, grace_until))
    }
    fn revoke_key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<KeyRecord>> {
        Box::pin(Backend::revoke_key(self, id))
    }
    fn secrets<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Vec<SecretRecord>>> {
        Box::pin(Backend::secrets(self, key_id))
    }
    fn live_keys<'a>(&'a self, page: &'a PageRequest) -> BoxFuture<'a, Result<Page<LiveKey>>> {
        Box::pin(Backend::live_keys(self, page))
    }
    fn changes_after(&self, seq: i64, limit: u32) -> BoxFuture<'_, Result<Vec<Change>>> {
        Box::pin(Backend::changes_after(self, seq, limit))
    }
    fn last_change(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(Backend::last_change(self))
    }
    fn trim_changes(&self, before: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Backend::trim_changes(self, before))
    }
    fn add_spend<'a>(&'a self, deltas: &'a [SpendDelta]) -> BoxFuture<'a, Result<()>> {
        Box::pin(Backend::add_spend(self, deltas))
    }
    fn claim_alert<'a>(
        &'a self,
        scope: SpendScope,
        scope_id: &'a str,
        period_start: i64,
        threshold_pct: u8,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Backend::claim_alert(
            self,
            scope,
            scope_id,
            period_start,
            threshold_pct,
        ))
    }
    fn release_alert<'a>(
        &'a self,
        scope: SpendScope,
        scope_id: &'a str,
        period_start: i64,
        threshold_pct: u8,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Backend::release_alert(
            self,
            scope,
            scope_id,
            period_start,
            threshold_pct,
        ))
    }
    fn spend<'a>(
        &'a self,
        scope: SpendScope,
        scope_id: &'a str,
        period_start: i64,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(Backend::spend(self, scope, scope_id, period_start))
    }
    fn create_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(Backend::create_session(self, session))
    }
    fn session<'a>(
        &'a self,
        digest: &'a [u8; 32],
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>>> {
        Box::pin(Backend::session(self, digest, now))
    }
    fn delete_session<'a>(&'a self, digest: &'a [u8; 32]) -> BoxFuture<'a, Result<()>> {
        Box::pin(Backend::delete_session(self, digest))
    }
}
