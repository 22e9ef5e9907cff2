//! The cluster port over the Kubernetes API (kube-rs).
//!
//! Reads are served from a watch cache per (kind, namespace), started on the
//! first touch, so that a reconcile with nothing to change costs no API
//! request. Reads from the server and writes are raw requests, so objects
//! stay JSON end to end. Writes are PUTs carrying the resourceVersion they were based on;
//! their results are written through to the cache. Every request waits for a
//! token (QPS / burst) and is bounded by the request timeout.
//!
//! Every write names the plugin's field manager. A PUT is an `Update`
//! operation to the API server: the manager comes to own the fields whose
//! values the write changed, and no others (see docs/argocd.md for what that
//! means with Istio's CRDs, whose lists are atomic).
//!
//! Events are written in the background (core/v1, as `kubectl describe`
//! shows them), filtered by [`EventFilter`]; a failed Event write is logged,
//! never returned.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ::kube::Resource as _;
use ::kube::api::{
    Api, ApiResource, DynamicObject, GetParams, GroupVersionKind, ListParams, PostParams,
    WatchEvent, WatchParams,
};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{OnceCell, watch};
use tokio::time::Instant;

use super::event_filter::{Decision, EventFilter};
use super::{Cluster, ClusterError, ObjectKey, REPORTING_COMPONENT, Resource, RolloutEvent};
use crate::model::ReplicaSetInfo;

/// The field manager of the plugin's writes unless `--field-manager` says
/// otherwise: the plugin's name.
pub const DEFAULT_FIELD_MANAGER: &str = env!("CARGO_PKG_NAME");

/// The `User-Agent` of every request the plugin sends.
const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("ROLLOUTS_PLUGIN_VERSION"));
/// Server-side bound of one watch request; below kube-rs' read timeout.
const WATCH_SECONDS: u32 = 290;
/// A watch with no traffic for this long is presumed dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 30);
/// Longest pause between attempts to re-establish a failed list or watch.
const MAX_WATCH_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct KubeClusterOptions {
    /// Sustained requests per second; 0 or less: unlimited.
    pub qps: f32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Bound of every request (a watch: of establishing it).
    pub request_timeout: Duration,
    /// The kubeconfig to use; `None`: `kube::Config::infer()` (KUBECONFIG,
    /// `~/.kube/config`, then the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// The field manager every write names (`managedFields[].manager`).
    pub field_manager: String,
}

impl Default for KubeClusterOptions {
    fn default() -> Self {
        KubeClusterOptions {
            qps: 20.0,
            burst: 40,
            request_timeout: Duration::from_secs(10),
            kubeconfig: None,
            field_manager: DEFAULT_FIELD_MANAGER.to_string(),
        }
    }
}

/// A [`Cluster`] backed by the Kubernetes API server.
pub struct KubeCluster {
    options: KubeClusterOptions,
    client: OnceCell<Client>,
    limiter: Arc<TokenBucket>,
    caches: Mutex<HashMap<(&'static Resource, String), Arc<WatchCache>>>,
    events: Mutex<EventFilter>,
}

impl KubeCluster {
    /// Nothing is connected until [`Cluster::init`] or the first call.
    pub fn new(options: KubeClusterOptions) -> Self {
        KubeCluster {
            limiter: Arc::new(TokenBucket::new(options.qps, options.burst)),
            options,
            client: OnceCell::new(),
            caches: Mutex::new(HashMap::new()),
            events: Mutex::new(EventFilter::default()),
        }
    }

    pub fn options(&self) -> &KubeClusterOptions {
        &self.options
    }

    /// The client, built on first use; a failed build is tried again next call.
    async fn client(&self) -> Result<&Client, ClusterError> {
        self.client.get_or_try_init(|| self.build_client()).await
    }

    async fn build_client(&self) -> Result<Client, ClusterError> {
        let failed = |message: String| ClusterError::Rejected {
            operation: "connecting to the Kubernetes API".to_string(),
            message,
        };
        let mut config = match &self.options.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    failed(format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| failed(format!("invalid kubeconfig {}: {e}", path.display())))?
            }
            None => Config::infer().await.map_err(|e| {
                failed(format!(
                    "no Kubernetes configuration found (kubeconfig or in-cluster): {e}"
                ))
            })?,
        };
        config.connect_timeout = Some(self.options.request_timeout);
        // The router retries with its own policy; hidden retries would also
        // bypass the rate limit and stretch the request timeout.
        config.default_retry = false;
        // Named requests: the API server's audit log and metrics tell the
        // plugin's traffic apart from the controller's (same identity).
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        ));
        let client = Client::try_from(config)
            .map_err(|e| failed(format!("cannot build the Kubernetes client: {e}")))?;
        tracing::info!("Kubernetes client ready");
        Ok(client)
    }

    fn api(&self, client: &Client, resource: &Resource, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(resource.group, resource.version, resource.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, resource.plural);
        Api::namespaced_with(client.clone(), namespace, &resource)
    }

    /// Runs one request: waits for a token, bounds it by the timeout, maps errors.
    async fn request<T>(
        &self,
        operation: impl Fn() -> String,
        key: Option<&ObjectKey>,
        call: impl Future<Output = Result<T, ::kube::Error>>,
    ) -> Result<T, ClusterError> {
        self.limiter.acquire().await;
        match tokio::time::timeout(self.options.request_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(map_error(error, &operation(), key)),
            Err(_) => Err(ClusterError::Transient {
                operation: operation(),
                message: format!(
                    "no answer within {:?} (request timeout)",
                    self.options.request_timeout
                ),
            }),
        }
    }

    async fn get_from_server(&self, key: &ObjectKey) -> Result<Value, ClusterError> {
        let operation = || format!("get {key}");
        let request = self
            .raw_request(key)
            .get(&key.name, &GetParams::default())
            .map_err(|e| rejected(operation(), e))?;
        self.send_raw(operation, key, request, "get").await
    }

    /// Requests about `key`'s kind in its namespace. Reads and writes go as
    /// raw requests: the object stays JSON from the wire to the core and
    /// back, with no typed object in between.
    fn raw_request(&self, key: &ObjectKey) -> ::kube::core::Request {
        let gvk =
            GroupVersionKind::gvk(key.resource.group, key.resource.version, key.resource.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, key.resource.plural);
        ::kube::core::Request::new(DynamicObject::url_path(&resource, Some(&key.namespace)))
    }

    async fn send_raw(
        &self,
        operation: impl Fn() -> String,
        key: &ObjectKey,
        mut request: http::Request<Vec<u8>>,
        verb: &'static str,
    ) -> Result<Value, ClusterError> {
        request.extensions_mut().insert(verb);
        let client = self.client().await?;
        let mut object: Value = self
            .request(&operation, Some(key), client.request(request))
            .await?;
        drop_managed_fields(&mut object);
        Ok(object)
    }

    /// The watch cache of (kind, namespace), started on first use.
    fn cache(
        &self,
        client: &Client,
        resource: &'static Resource,
        namespace: &str,
    ) -> Arc<WatchCache> {
        let mut caches = lock(&self.caches);
        if let Some(cache) = caches.get(&(resource, namespace.to_string())) {
            return cache.clone();
        }
        let cache = Arc::new(WatchCache::new());
        caches.insert((resource, namespace.to_string()), cache.clone());
        let watcher = Watcher {
            cache: Arc::downgrade(&cache),
            api: self.api(client, resource, namespace),
            limiter: self.limiter.clone(),
            timeout: self.options.request_timeout,
            label: format!("{} in namespace {namespace}", resource.plural),
        };
        tokio::spawn(watcher.run());
        cache
    }

    fn existing_cache(&self, key: &ObjectKey) -> Option<Arc<WatchCache>> {
        lock(&self.caches)
            .get(&(key.resource, key.namespace.clone()))
            .cloned()
    }
}

impl Cluster for KubeCluster {
    async fn init(&self) -> Result<(), ClusterError> {
        self.client().await.map(|_| ())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Value, ClusterError> {
        let client = self.client().await?;
        let cache = self.cache(client, key.resource, &key.namespace);
        if cache.wait_initial_sync(self.options.request_timeout).await
            && let Some(object) = cache.get(&key.name)
        {
            return Ok(object);
        }
        // Not synced, or not (yet) seen by the watch: ask the server.
        let object = self.get_from_server(key).await?;
        cache.store_if_newer(object.clone());
        Ok(object)
    }

    async fn get_fresh(&self, key: &ObjectKey) -> Result<Value, ClusterError> {
        let object = self.get_from_server(key).await?;
        if let Some(cache) = self.existing_cache(key) {
            cache.store_if_newer(object.clone());
        }
        Ok(object)
    }

    async fn replace(&self, key: &ObjectKey, object: Value) -> Result<Value, ClusterError> {
        let operation = || format!("replace {key}");
        let body = serde_json::to_vec(&object).map_err(|e| rejected(operation(), e))?;
        let params = PostParams {
            field_manager: Some(self.options.field_manager.clone()),
            ..PostParams::default()
        };
        let request = self
            .raw_request(key)
            .replace(&key.name, &params, body)
            .map_err(|e| rejected(operation(), e))?;
        let stored = self.send_raw(operation, key, request, "replace").await?;
        if let Some(cache) = self.existing_cache(key) {
            cache.store_if_newer(stored.clone());
        }
        Ok(stored)
    }

    async fn list_replica_sets(
        &self,
        namespace: &str,
        rollout_name: &str,
    ) -> Result<Vec<ReplicaSetInfo>, ClusterError> {
        let operation = || format!("list ReplicaSets in namespace {namespace}");
        let gvk = GroupVersionKind::gvk("apps", "v1", "ReplicaSet");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "replicasets");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client().await?.clone(), namespace, &resource);
        let list = self
            .request(operation, None, api.list(&ListParams::default()))
            .await?;
        let mut owned = Vec::new();
        for item in &list.items {
            let object = to_value(item, operation)?;
            if ReplicaSetInfo::is_owned_by(&object, rollout_name) {
                owned.push(ReplicaSetInfo::from_object(&object));
            }
        }
        Ok(owned)
    }

    async fn events(&self, events: Vec<RolloutEvent>) {
        let Some(client) = self.client.get() else {
            tracing::debug!("no Kubernetes client yet; events not reported");
            return;
        };
        let now = std::time::Instant::now();
        for event in events {
            let decision = lock(&self.events).decide(&event, now);
            if decision == Decision::Drop {
                tracing::debug!(rollout = %format!("{}/{}", event.namespace, event.rollout),
                    reason = event.reason, "event over the rollout's budget; not reported");
                continue;
            }
            let writer = EventWriter {
                client: client.clone(),
                limiter: self.limiter.clone(),
                timeout: self.options.request_timeout,
            };
            tokio::spawn(writer.write(event, decision));
        }
    }
}

/// Writes one Event in the background.
struct EventWriter {
    client: Client,
    limiter: Arc<TokenBucket>,
    timeout: Duration,
}

impl EventWriter {
    async fn write(self, event: RolloutEvent, decision: Decision) {
        use k8s_openapi::api::core::v1::Event;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let api: Api<Event> = Api::namespaced(self.client.clone(), &event.namespace);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        self.limiter.acquire().await;
        let written = match decision {
            Decision::Drop => return,
            Decision::Create { name } => {
                let body = core_event(&event, name, now);
                let params = PostParams::default();
                let call = api.create(&params, &body);
                tokio::time::timeout(self.timeout, call)
                    .await
                    .map(|r| r.map(drop))
            }
            Decision::Repeat { name, count } => {
                let patch = serde_json::json!({"count": count, "lastTimestamp": now});
                let params = ::kube::api::PatchParams::default();
                let patch = ::kube::api::Patch::Merge(&patch);
                let call = api.patch(&name, &params, &patch);
                tokio::time::timeout(self.timeout, call)
                    .await
                    .map(|r| r.map(drop))
            }
        };
        let failure = match written {
            Ok(Ok(())) => {
                tracing::debug!(reason = event.reason, rollout = %event.rollout, "event reported");
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        tracing::warn!(
            rollout = %format!("{}/{}", event.namespace, event.rollout),
            reason = event.reason,
            error = %failure,
            "cannot report an event on the rollout (the change itself was made)"
        );
    }
}

/// The core/v1 Event for `event`, named `name`.
fn core_event(
    event: &RolloutEvent,
    name: String,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> k8s_openapi::api::core::v1::Event {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(event.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("argoproj.io/v1alpha1".to_string()),
            kind: Some("Rollout".to_string()),
            name: Some(event.rollout.clone()),
            namespace: Some(event.namespace.clone()),
            uid: (!event.uid.is_empty()).then(|| event.uid.clone()),
            ..ObjectReference::default()
        },
        reason: Some(event.reason.to_string()),
        message: Some(event.message.clone()),
        type_: Some(event.event_type.as_str().to_string()),
        action: Some(event.action.to_string()),
        source: Some(EventSource {
            component: Some(REPORTING_COMPONENT.to_string()),
            host: None,
        }),
        reporting_component: Some(REPORTING_COMPONENT.to_string()),
        reporting_instance: Some(reporting_instance()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    }
}

/// The host the plugin runs on (the controller's pod name in a cluster).
fn reporting_instance() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(host) if status == 0 && !host.is_empty() => host.to_string(),
        _ => REPORTING_COMPONENT.to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn to_value(object: &DynamicObject, operation: impl Fn() -> String) -> Result<Value, ClusterError> {
    json_of(object).map_err(|e| ClusterError::Transient {
        operation: operation(),
        message: format!("cannot represent the answer as JSON: {e}"),
    })
}

/// The object as JSON, without `metadata.managedFields`.
fn json_of(object: &DynamicObject) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    drop_managed_fields(&mut value);
    Ok(value)
}

/// Removes `metadata.managedFields`: they are often the bulk of an object,
/// the plugin never reads them, and an update that omits them leaves them
/// unchanged on the server.
fn drop_managed_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

/// A request that could not even be built or encoded.
fn rejected(operation: String, error: impl std::fmt::Display) -> ClusterError {
    ClusterError::Rejected {
        operation,
        message: error.to_string(),
    }
}

/// 404 → NotFound, 409 → Conflict, 5xx / 429 / transport → Transient, other
/// 4xx → Rejected.
fn map_error(error: ::kube::Error, operation: &str, key: Option<&ObjectKey>) -> ClusterError {
    let transient = |message: String| ClusterError::Transient {
        operation: operation.to_string(),
        message,
    };
    let ::kube::Error::Api(status) = error else {
        return transient(error.to_string());
    };
    let message = if status.message.is_empty() {
        format!("HTTP {} {}", status.code, status.reason)
    } else {
        status.message.clone()
    };
    match (status.code, key) {
        (404, Some(key)) => ClusterError::NotFound(key.clone()),
        (409, Some(key)) => ClusterError::Conflict {
            key: key.clone(),
            message,
        },
        // Too many requests passes with time, like a server error.
        (429 | 500..=599, _) | (409, None) => transient(message),
        _ => ClusterError::Rejected {
            operation: operation.to_string(),
            message,
        },
    }
}

fn resource_version(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
}

fn name_of(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncState {
    /// The first list has not finished.
    Initial,
    /// Listed, and a watch keeps the objects current.
    Synced,
    /// The list or the watch failed: the objects may be out of date.
    Stale,
}

/// The objects of one kind in one namespace, kept by a [`Watcher`].
struct WatchCache {
    objects: Mutex<HashMap<String, Value>>,
    state: watch::Sender<SyncState>,
}

impl WatchCache {
    fn new() -> Self {
        WatchCache {
            objects: Mutex::new(HashMap::new()),
            state: watch::channel(SyncState::Initial).0,
        }
    }

    /// Waits (bounded) for the first list; true when the cache is current.
    async fn wait_initial_sync(&self, timeout: Duration) -> bool {
        let mut state = self.state.subscribe();
        // A timeout leaves the state Initial, which is not Synced.
        let _ = tokio::time::timeout(timeout, state.wait_for(|s| *s != SyncState::Initial)).await;
        *state.borrow() == SyncState::Synced
    }

    fn set_state(&self, state: SyncState) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }

    fn get(&self, name: &str) -> Option<Value> {
        lock(&self.objects).get(name).cloned()
    }

    /// Stores `object` unless the cache holds a newer version of it.
    fn store_if_newer(&self, object: Value) {
        let Some(name) = name_of(&object) else { return };
        let mut objects = lock(&self.objects);
        let newer_cached = objects.get(&name).is_some_and(|cached| {
            matches!((resource_version(cached), resource_version(&object)),
                     (Some(cached), Some(new)) if cached > new)
        });
        if !newer_cached {
            objects.insert(name, object);
        }
    }

    fn remove(&self, object: &Value) {
        let Some(name) = name_of(object) else { return };
        let mut objects = lock(&self.objects);
        let newer_cached = objects.get(&name).is_some_and(|cached| {
            matches!((resource_version(cached), resource_version(object)),
                     (Some(cached), Some(deleted)) if cached > deleted)
        });
        if !newer_cached {
            objects.remove(&name);
        }
    }

    fn reset(&self, items: Vec<Value>) {
        let objects: HashMap<String, Value> = items
            .into_iter()
            .filter_map(|item| name_of(&item).map(|name| (name, item)))
            .collect();
        *lock(&self.objects) = objects;
    }
}

/// Lists and watches one (kind, namespace) into a [`WatchCache`] for as long
/// as the cache is in use.
struct Watcher {
    cache: Weak<WatchCache>,
    api: Api<DynamicObject>,
    limiter: Arc<TokenBucket>,
    timeout: Duration,
    label: String,
}

/// Why a watch ended.
enum WatchEnd {
    /// The cache is no longer used.
    Unused,
    /// The resourceVersion is too old (410 Gone): list again.
    Relist,
}

impl Watcher {
    async fn run(self) {
        let mut backoff = Backoff::new();
        loop {
            let Some(version) = self.list(&mut backoff).await else {
                return;
            };
            match self.watch(version, &mut backoff).await {
                WatchEnd::Unused => return,
                WatchEnd::Relist => continue,
            }
        }
    }

    /// Lists until it succeeds; the list's resourceVersion, or None when unused.
    async fn list(&self, backoff: &mut Backoff) -> Option<String> {
        loop {
            self.limiter.acquire().await;
            let listed =
                tokio::time::timeout(self.timeout, self.api.list(&ListParams::default())).await;
            let cache = self.cache.upgrade()?;
            let failure = match listed {
                Ok(Ok(list)) => {
                    let items = list.items.iter().filter_map(|o| json_of(o).ok());
                    cache.reset(items.collect());
                    cache.set_state(SyncState::Synced);
                    backoff.reset();
                    tracing::debug!(watch = %self.label, "listed");
                    return Some(list.metadata.resource_version.unwrap_or_default());
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
            cache.set_state(SyncState::Stale);
            drop(cache);
            tracing::warn!(watch = %self.label, error = %failure, "list failed; retrying");
            backoff.wait().await;
        }
    }

    async fn watch(&self, mut version: String, backoff: &mut Backoff) -> WatchEnd {
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        loop {
            self.limiter.acquire().await;
            let opened =
                tokio::time::timeout(self.timeout, self.api.watch(&params, &version)).await;
            let Some(cache) = self.cache.upgrade() else {
                return WatchEnd::Unused;
            };
            let stream = match opened {
                Ok(Ok(stream)) => stream,
                Ok(Err(::kube::Error::Api(status))) if status.code == 410 => {
                    return WatchEnd::Relist;
                }
                failed => {
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no answer within {:?}", self.timeout),
                    };
                    cache.set_state(SyncState::Stale);
                    drop(cache);
                    tracing::warn!(watch = %self.label, %error, "watch failed; retrying");
                    backoff.wait().await;
                    continue;
                }
            };
            cache.set_state(SyncState::Synced);
            drop(cache);
            let mut stream = std::pin::pin!(stream);
            // A connection that went silent (no event, not even the server's
            // end of the watch) is given up and the watch re-established.
            while let Ok(Some(event)) = tokio::time::timeout(WATCH_IDLE, stream.next()).await {
                let Some(cache) = self.cache.upgrade() else {
                    return WatchEnd::Unused;
                };
                // A refused watch (403, 429, 503 while an API server starts)
                // still "opens": its status comes as the stream's first item.
                // Then the cache is not current, and the next attempt waits
                // (no tight loop against a server that refuses); only an
                // event shows that the watch works.
                if matches!(event, Ok(WatchEvent::Error(_)) | Err(_)) {
                    cache.set_state(SyncState::Stale);
                } else {
                    backoff.reset();
                }
                match event {
                    Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                        if let Ok(object) = json_of(&object) {
                            version = object_version(&object, version);
                            cache.store_if_newer(object);
                        }
                    }
                    Ok(WatchEvent::Deleted(object)) => {
                        if let Ok(object) = json_of(&object) {
                            version = object_version(&object, version);
                            cache.remove(&object);
                        }
                    }
                    Ok(WatchEvent::Bookmark(bookmark)) => {
                        version = bookmark.metadata.resource_version;
                    }
                    Ok(WatchEvent::Error(status)) if status.code == 410 => {
                        return WatchEnd::Relist;
                    }
                    Ok(WatchEvent::Error(status)) => {
                        tracing::warn!(watch = %self.label, error = %status.message, "watch error event");
                        drop(cache);
                        backoff.wait().await;
                        break;
                    }
                    Err(::kube::Error::Api(status)) if status.code == 410 => {
                        return WatchEnd::Relist;
                    }
                    Err(error) => {
                        tracing::warn!(watch = %self.label, %error, "watch stream broke");
                        drop(cache);
                        backoff.wait().await;
                        break;
                    }
                }
            }
            // The stream ended (server timeout or error): watch again from
            // the last version seen, which replays what was missed.
        }
    }
}

fn object_version(object: &Value, previous: String) -> String {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map_or(previous, str::to_string)
}

/// Doubling pauses between failed attempts, up to [`MAX_WATCH_BACKOFF`].
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);

    fn new() -> Self {
        Backoff(Self::FIRST)
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_WATCH_BACKOFF);
    }
}

/// Client-side rate limit: `burst` requests at once, refilled at `qps`.
/// Callers reserve a token and sleep until it is due, so they go in order.
struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(qps: f32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps: f64::from(qps),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    async fn acquire(&self) {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return;
        }
        let wait = {
            let mut state = lock(&self.state);
            let now = Instant::now();
            let (tokens, last) = *state;
            let refilled =
                (tokens + now.duration_since(last).as_secs_f64() * self.qps).min(self.burst);
            *state = (refilled - 1.0, now);
            if refilled >= 1.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((1.0 - refilled) / self.qps)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_a_burst_then_the_rate() {
        let bucket = TokenBucket::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..5 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(490) && elapsed <= Duration::from_millis(510),
            "five requests past the burst at 10 qps took {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_qps_is_unlimited() {
        let bucket = TokenBucket::new(0.0, 1);
        let start = Instant::now();
        for _ in 0..100 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn cache_keeps_the_newer_version() {
        let cache = WatchCache::new();
        let object = |rv: &str, v: i64| serde_json::json!({"metadata": {"name": "a", "resourceVersion": rv}, "v": v});
        cache.store_if_newer(object("5", 1));
        cache.store_if_newer(object("4", 2));
        assert_eq!(cache.get("a"), Some(object("5", 1)));
        cache.remove(&object("3", 0));
        assert_eq!(cache.get("a"), Some(object("5", 1)));
        cache.store_if_newer(object("6", 3));
        assert_eq!(cache.get("a"), Some(object("6", 3)));
        cache.remove(&object("7", 3));
        assert_eq!(cache.get("a"), None);
    }
}
