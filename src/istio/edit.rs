//! Read → core → write-if-changed, with conflicts retried from a fresh read.
//! The one place where the router touches the cluster for writes (see
//! "Writes" in docs/behaviour.md).

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use super::IstioError;
use super::core::CoreError;
use crate::cluster::{Cluster, ClusterError, ObjectKey};

/// How often a failed request is tried again before the call gives up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Attempts of one write while it conflicts, the first included. Each
    /// conflict means another writer's update landed in between, and
    /// argo-rollouts reconciles up to `--rollout-threads` (10 by default)
    /// Rollouts at once, each of which may write the same VirtualService:
    /// the budget outlasts that many racing writers.
    pub conflict_attempts: u32,
    /// Pause before retrying a transient failure, doubled each time
    /// (a conflict is retried at once: the fresh read is the remedy).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            conflict_attempts: 20,
            backoff: Duration::from_millis(25),
        }
    }
}

impl RetryPolicy {
    async fn pause(&self, attempt: u32, error: &ClusterError) {
        if matches!(error, ClusterError::Transient { .. }) {
            tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt.saturating_sub(1))).await;
        }
    }
}

fn cluster_error(verb: &str, key: &ObjectKey, error: ClusterError) -> IstioError {
    IstioError::Cluster {
        context: format!("{verb} {key}"),
        error,
    }
}

/// Where a read may be served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A watch cache is fine (the usual case).
    Cached,
    /// Straight from the API server (after a conflict).
    Latest,
}

/// Sends a request that changes nothing, again while it fails transiently.
pub async fn retrying<T, F, Fut>(retry: &RetryPolicy, mut request: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Err(e @ ClusterError::Transient { .. }) if attempt < retry.attempts => {
                retry.pause(attempt, &e).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Reads one object, retrying transient failures. NotFound is returned as is.
pub async fn read<C: Cluster>(
    cluster: &C,
    key: &ObjectKey,
    freshness: Freshness,
    retry: &RetryPolicy,
) -> Result<Value, IstioError> {
    retrying(retry, || async {
        match freshness {
            Freshness::Cached => cluster.get(key).await,
            Freshness::Latest => cluster.get_fresh(key).await,
        }
    })
    .await
    .map_err(|e| cluster_error("reading", key, e))
}

/// What to do when an object is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Fail,
    Skip,
}

/// Which outcomes of an edit on a cached copy are checked on a fresh read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Errors only: a write based on a stale copy conflicts and is redone
    /// from a fresh read anyway.
    Errors,
    /// Errors and changes: for VerifyWeight, whose "not yet" is the answer.
    ErrorsAndChanges,
}

/// Reads an object and applies `edit` to it. A cached copy may lag behind
/// the API server by a watch event, so an outcome to confirm is computed
/// again on a fresh read: no error (and no "not yet") is ever reported from
/// a stale cache, while the steady state stays cache-only.
pub async fn read_and_edit<C, F>(
    cluster: &C,
    key: &ObjectKey,
    retry: &RetryPolicy,
    confirm: Confirm,
    edit: F,
) -> Result<(Value, bool), IstioError>
where
    C: Cluster,
    F: Fn(&mut Value) -> Result<bool, CoreError>,
{
    let mut doc = read(cluster, key, Freshness::Cached, retry).await?;
    match edit(&mut doc) {
        Ok(false) => return Ok((doc, false)),
        Ok(true) if confirm == Confirm::Errors => return Ok((doc, true)),
        // The arguments are wrong whatever the object holds.
        Err(e @ CoreError::Argument(_)) => return Err(e.into()),
        _ => {}
    }
    let mut doc = read(cluster, key, Freshness::Latest, retry).await?;
    let changed = edit(&mut doc)?;
    Ok((doc, changed))
}

/// Applies `edit(target, doc)` to the object of every target and writes
/// the ones it changed. All objects are read and edited before the first
/// write, so a rejected edit writes nothing. Returns the number of objects
/// written.
pub async fn edit_all<C, T, F>(
    cluster: &C,
    targets: &[(ObjectKey, T)],
    if_missing: IfMissing,
    retry: &RetryPolicy,
    edit: F,
) -> Result<usize, IstioError>
where
    C: Cluster,
    F: Fn(&T, &mut Value) -> Result<bool, CoreError>,
{
    let mut pending = Vec::new();
    for (key, target) in targets {
        let edited = read_and_edit(cluster, key, retry, Confirm::Errors, |doc| {
            edit(target, doc)
        });
        match edited.await {
            Ok((doc, true)) => pending.push((key, target, doc)),
            Ok((_, false)) => {}
            Err(IstioError::Cluster {
                error: ClusterError::NotFound(_),
                ..
            }) if if_missing == IfMissing::Skip => {}
            Err(e) => return Err(e),
        }
    }
    let written = pending.len();
    for (key, target, doc) in pending {
        write_with_retry(cluster, key, doc, retry, |doc| edit(target, doc)).await?;
    }
    Ok(written)
}

async fn write_with_retry<C, F>(
    cluster: &C,
    key: &ObjectKey,
    mut doc: Value,
    retry: &RetryPolicy,
    edit: F,
) -> Result<(), IstioError>
where
    C: Cluster,
    F: Fn(&mut Value) -> Result<bool, CoreError>,
{
    // Transient failures and conflicts each have their own budget.
    let (mut attempt, mut conflicts) = (1, 1);
    loop {
        let error = match cluster.replace(key, doc).await {
            Ok(_) => {
                tracing::info!(object = %key, "updated");
                return Ok(());
            }
            Err(e @ ClusterError::Conflict { .. }) if conflicts < retry.conflict_attempts => {
                conflicts += 1;
                e
            }
            Err(e @ ClusterError::Transient { .. }) if attempt < retry.attempts => {
                retry.pause(attempt, &e).await;
                attempt += 1;
                e
            }
            Err(e) => return Err(cluster_error("writing", key, e)),
        };
        tracing::debug!(object = %key, attempt, conflicts, error = %error, "write failed, retrying from a fresh read");
        doc = read(cluster, key, Freshness::Latest, retry).await?;
        if !edit(&mut doc)? {
            // Someone else already made the change.
            return Ok(());
        }
    }
}
