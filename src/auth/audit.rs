//! The audit trail: who did what, from where, to which project, repository, digest or tag.
//! Kept in `auth.redb` under a bound on rows and age, pruned oldest first in batches as events
//! are added; optionally appended to a JSON-lines file as well, for log shippers.
//!
//! Events (`audit_event`) have no free-text field, so a secret has nowhere to go.
//! Events are committed without an fsync of their own (redb's eventual durability): a power
//! cut may lose the newest ones, which is the price of recording pulls at request rate; the
//! next administrative write, or a clean shutdown, makes them durable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Durability, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

pub use crate::auth::audit_event::{
    Actor, AuditAction, AuditEvent, Detail, FailReason, Repository, Tag,
};
use crate::auth::db::{self, AuthDb, AUDIT};
use crate::auth::error::AuthError;

/// How much of the trail is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditLimits {
    pub max_rows: u64,
    /// Events older than this are pruned; `None` keeps them until `max_rows` pushes them out.
    pub max_age: Option<Duration>,
    /// Rows removed at once when a bound is passed, so most inserts prune nothing.
    pub prune_batch: u64,
    /// Also append every event as one JSON line to this file.
    pub jsonl: Option<PathBuf>,
}

impl Default for AuditLimits {
    fn default() -> AuditLimits {
        AuditLimits {
            max_rows: 100_000,
            max_age: Some(Duration::from_secs(90 * 86_400)),
            prune_batch: 1_000,
            jsonl: None,
        }
    }
}

/// Which events to list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    pub since_ms: Option<u64>,
    pub user: Option<String>,
    pub project: Option<String>,
    /// At most this many (0: 100).
    pub limit: usize,
}

struct State {
    rows: u64,
    next_seq: u64,
    oldest_ms: Option<u64>,
    jsonl: Option<File>,
}

/// The trail over an [`AuthDb`].
pub struct AuditLog {
    db: Arc<AuthDb>,
    limits: AuditLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    pub fn open(db: Arc<AuthDb>, limits: AuditLimits) -> Result<AuditLog, AuthError> {
        let (rows, next_seq, oldest_ms) = db.read(|txn| {
            let t = txn.open_table(AUDIT)?;
            let first = t.first()?.map(|(k, _)| k.value().0);
            let last_seq = t.last()?.map_or(0, |(k, _)| k.value().1);
            Ok((t.len()?, last_seq + 1, first))
        })?;
        let jsonl = match &limits.jsonl {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AuthError::Io {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(AuditLog {
            db,
            limits,
            state: Mutex::new(State {
                rows,
                next_seq,
                oldest_ms,
                jsonl,
            }),
        })
    }

    /// Adds `event`, pruning the oldest rows in the same commit when a bound is passed.
    pub fn record(&self, event: &AuditEvent) -> Result<(), AuthError> {
        self.record_all(std::slice::from_ref(event))
    }

    /// Adds `events` in one commit, pruning the oldest rows when a bound is passed.
    pub fn record_all(&self, events: &[AuditEvent]) -> Result<(), AuthError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.db.now_ms();
        let values: Vec<Vec<u8>> = events.iter().map(db::to_json).collect();
        let mut txn = self.db.raw().begin_write()?;
        txn.set_durability(Durability::Eventual);
        let (rows, oldest) = {
            let mut t = txn.open_table(AUDIT)?;
            let mut rows = st.rows;
            let mut oldest = st.oldest_ms;
            for (event, value) in events.iter().zip(&values) {
                let mut seq = st.next_seq;
                while t.get((event.at_ms, seq))?.is_some() {
                    seq += 1;
                }
                st.next_seq = seq + 1;
                t.insert((event.at_ms, seq), value.as_slice())?;
                rows += 1;
                oldest = Some(oldest.map_or(event.at_ms, |o| o.min(event.at_ms)));
            }
            let batch = self.limits.prune_batch.max(1);
            if rows > self.limits.max_rows {
                let target = self.limits.max_rows.saturating_sub(batch - 1);
                rows -= remove_oldest(&mut t, rows - target, |_| true)?;
            }
            let cutoff = self
                .limits
                .max_age
                .map(|age| now.saturating_sub(age.as_millis() as u64));
            if let (Some(cutoff), Some(o)) = (cutoff, oldest) {
                if o < cutoff {
                    rows -=
                        remove_oldest(&mut t, batch.max(events.len() as u64), |at| at < cutoff)?;
                }
            }
            let first = t.first()?.map(|(k, _)| k.value().0);
            (rows, first)
        };
        txn.commit()?;
        st.rows = rows;
        st.oldest_ms = oldest;
        if let Some(f) = &mut st.jsonl {
            let mut lines = Vec::new();
            for v in values {
                lines.extend_from_slice(&v);
                lines.push(b'\n');
            }
            if let Err(e) = f.write_all(&lines) {
                tracing::warn!(error = %e, "appending to the audit JSON-lines file failed");
            }
        }
        Ok(())
    }

    /// Rows kept now.
    pub fn len(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Matching events, newest first.
    pub fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuthError> {
        list(&self.db, filter)
    }
}

/// Matching events of `db`, newest first (also without an open [`AuditLog`]).
pub fn list(db: &AuthDb, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AuthError> {
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    db.read(|txn| {
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for row in t.range((filter.since_ms.unwrap_or(0), 0)..)?.rev() {
            let (_, v) = row?;
            let e: AuditEvent = db::from_json(v.value(), "audit")?;
            let user_ok = filter
                .user
                .as_ref()
                .is_none_or(|u| e.actor.name().as_deref() == Some(u.as_str()));
            let project_ok = filter
                .project
                .as_ref()
                .is_none_or(|p| e.project.as_ref().is_some_and(|ep| ep.as_str() == p));
            if user_ok && project_ok {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    })
}

/// Removes up to `n` of the oldest rows while `keep_going(at_ms)`; returns how many.
fn remove_oldest(
    t: &mut redb::Table<(u64, u64), &[u8]>,
    n: u64,
    keep_going: impl Fn(u64) -> bool,
) -> Result<u64, AuthError> {
    let mut removed = 0;
    while removed < n {
        let first = t.first()?.map(|(k, _)| k.value());
        let Some(key) = first else { break };
        if !keep_going(key.0) {
            break;
        }
        t.remove(key)?;
        removed += 1;
    }
    Ok(removed)
}
