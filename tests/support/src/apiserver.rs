//! An HTTP stand-in for the Kubernetes API server, for tests.
//!
//! Serves namespaced get / list / create / update / merge and JSON patch /
//! delete / watch of Istio VirtualServices and DestinationRules (every
//! served version shares one storage) and `apps/v1` ReplicaSets on loopback,
//! with a global resourceVersion counter, Kubernetes `Status` errors, request
//! counters and injectable faults (conformance FORMAT.md "Faults").
//!
//! Watch requests are never faulted: a fault is meant for the call a test
//! makes, not for the background watch of a caching client.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

const ISTIO_GROUP: &str = "networking.istio.io";
const ISTIO_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];
/// How long a `timeout` fault holds a request before dropping it.
const TIMEOUT_FAULT_HOLD: Duration = Duration::from_secs(30);

/// The resources served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Res {
    VirtualServices,
    DestinationRules,
    ReplicaSets,
}

impl Res {
    /// Accepts a kind (`VirtualService`) or a plural resource (`virtualservices`).
    pub fn parse(name: &str) -> Option<Res> {
        match name {
            "VirtualService" | "virtualservices" => Some(Res::VirtualServices),
            "DestinationRule" | "destinationrules" => Some(Res::DestinationRules),
            "ReplicaSet" | "replicasets" => Some(Res::ReplicaSets),
            _ => None,
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Res::VirtualServices => "virtualservices",
            Res::DestinationRules => "destinationrules",
            Res::ReplicaSets => "replicasets",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Res::VirtualServices => "VirtualService",
            Res::DestinationRules => "DestinationRule",
            Res::ReplicaSets => "ReplicaSet",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Res::ReplicaSets => "apps",
            _ => ISTIO_GROUP,
        }
    }

    fn serves(self, group: &str, version: &str) -> bool {
        match self {
            Res::ReplicaSets => group == "apps" && version == "v1",
            _ => group == ISTIO_GROUP && ISTIO_VERSIONS.contains(&version),
        }
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultOn {
    Get,
    List,
    Write,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Conflict,
    Unavailable,
    Error,
    Timeout,
    Disconnect,
}

/// One injected fault, as a conformance case spells it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Fault {
    pub on: FaultOn,
    #[serde(default)]
    pub resource: Option<String>,
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn new(on: FaultOn, kind: FaultKind, times: u32) -> Fault {
        Fault {
            on,
            resource: None,
            kind,
            times,
        }
    }

    pub fn on_resource(mut self, resource: &str) -> Fault {
        self.resource = Some(resource.to_string());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    List,
    Watch,
    Write,
}

type Key = (Res, String, String);

#[derive(Clone)]
struct Event {
    rv: u64,
    res: Res,
    namespace: String,
    kind: &'static str,
    object: Value,
}

struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Event>,
    faults: Vec<Fault>,
    watchers: Vec<Arc<AtomicU64>>,
    /// History up to here was dropped: older watches get 410 Expired.
    compacted: u64,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    /// Bumped whenever a watch stream hands a frame to the connection.
    progress: watch::Sender<()>,
    /// Bumped to end every open watch stream.
    closer: watch::Sender<u64>,
    writes: AtomicU64,
    reads: AtomicU64,
    lists: AtomicU64,
    watches: AtomicU64,
}

/// A running stand-in; stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ApiServer {
    /// Starts serving on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in API server on loopback");
        let addr = listener.local_addr().expect("stand-in local address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 1,
                uid: 0,
                objects: BTreeMap::new(),
                history: Vec::new(),
                faults: Vec::new(),
                watchers: Vec::new(),
                compacted: 0,
            }),
            events: broadcast::channel(4096).0,
            progress: watch::channel(()).0,
            closer: watch::channel(0).0,
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            watches: AtomicU64::new(0),
        });
        let accept_shared = shared.clone();
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accept_shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    // Errors here are clients going away or injected disconnects.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        ApiServer {
            shared,
            addr,
            accept,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig pointing at this server (plain http, a dummy token).
    pub fn kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             users:\n- name: standin\n  user:\n    token: standin-token\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\n\
             current-context: standin\n",
            self.base_url()
        );
        std::fs::write(path, text)
    }

    /// Creates or replaces objects (by `kind`, namespace, name), bumping their
    /// resourceVersion and notifying watchers. Not counted as writes.
    pub fn apply(&self, objects: Vec<Value>, default_namespace: &str) {
        let mut store = self.lock();
        for mut object in objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let res = Res::parse(&kind)
                .unwrap_or_else(|| panic!("stand-in does not serve kind {kind:?}"));
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(default_namespace)
                .to_string();
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .expect("applied object needs metadata.name")
                .to_string();
            object["metadata"]["namespace"] = json!(namespace);
            let key = (res, namespace, name);
            match store.objects.get(&key).cloned() {
                Some(old) => {
                    preserve_system_fields(&old, &mut object);
                    store.commit(&self.shared.events, key, object, "MODIFIED");
                }
                None => {
                    store.stamp_new(&mut object);
                    store.commit(&self.shared.events, key, object, "ADDED");
                }
            }
        }
    }

    /// Deletes an object; false when there was none.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let res = Res::parse(kind).unwrap_or_else(|| panic!("stand-in does not serve {kind:?}"));
        let mut store = self.lock();
        store
            .remove(
                &self.shared.events,
                &(res, namespace.to_string(), name.to_string()),
            )
            .is_some()
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = Res::parse(kind).unwrap_or_else(|| panic!("stand-in does not serve {kind:?}"));
        self.lock()
            .objects
            .get(&(res, namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Create, update, patch and delete requests received (faulted ones included).
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Single-object GET requests received (faulted ones included).
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(Ordering::SeqCst)
    }

    /// List requests received (watches excluded).
    pub fn lists(&self) -> u64 {
        self.shared.lists.load(Ordering::SeqCst)
    }

    /// Watch requests received.
    pub fn watches(&self) -> u64 {
        self.shared.watches.load(Ordering::SeqCst)
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        let mut store = self.lock();
        store.prune_watchers();
        store.watchers.len()
    }

    /// Ends every open watch stream (as a server restart or a load balancer
    /// would); clients watch again from the last version they saw.
    pub fn close_watches(&self) {
        self.shared.closer.send_modify(|epoch| *epoch += 1);
    }

    /// Forgets the change history and moves the resourceVersion on (as other
    /// writes to etcd do): a watch from any version issued before is answered
    /// with a 410 Expired event, and the client must list again.
    pub fn compact(&self) {
        let mut store = self.lock();
        store.history.clear();
        store.compacted = store.next_rv();
    }

    pub fn inject(&self, faults: Vec<Fault>) {
        self.lock().faults.extend(faults);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Waits until every open watch stream has handed every change so far to
    /// its connection (bounded: panics after 5 s).
    pub async fn wait_watchers_caught_up(&self) {
        let mut progress = self.shared.progress.subscribe();
        let wait = async {
            loop {
                progress.borrow_and_update();
                {
                    let mut store = self.lock();
                    store.prune_watchers();
                    let target = store.rv;
                    if store
                        .watchers
                        .iter()
                        .all(|w| w.load(Ordering::SeqCst) >= target)
                    {
                        return;
                    }
                }
                if progress.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("watch streams did not catch up within 5 s");
    }

    /// Waits until at least `n` watch streams are open (bounded: panics after 5 s).
    pub async fn wait_open_watches(&self, n: usize) {
        let mut progress = self.shared.progress.subscribe();
        let wait = async {
            while self.open_watches() < n {
                if progress.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap_or_else(|_| panic!("{n} watch streams were not open within 5 s"));
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.shared)
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Store> {
    shared.store.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn stamp_new(&mut self, object: &mut Value) {
        self.uid += 1;
        let meta = &mut object["metadata"];
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uid));
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        meta["generation"] = json!(1);
    }

    /// Stores `object` under a new resourceVersion and publishes the event.
    fn commit(
        &mut self,
        events: &broadcast::Sender<Event>,
        key: Key,
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.publish(events, key, object.clone(), kind, rv);
        object
    }

    fn remove(&mut self, events: &broadcast::Sender<Event>, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.publish(events, key.clone(), object.clone(), "DELETED", rv);
        Some(object)
    }

    fn publish(
        &mut self,
        events: &broadcast::Sender<Event>,
        key: Key,
        object: Value,
        kind: &'static str,
        rv: u64,
    ) {
        let event = Event {
            rv,
            res: key.0,
            namespace: key.1,
            kind,
            object,
        };
        self.history.push(event.clone());
        // No receiver is fine: nobody is watching.
        let _ = events.send(event);
    }

    fn prune_watchers(&mut self) {
        self.watchers.retain(|w| Arc::strong_count(w) > 1);
    }

    /// Takes one use of the first fault matching the request.
    fn take_fault(&mut self, verb: Verb, res: Res) -> Option<FaultKind> {
        if verb == Verb::Watch {
            return None;
        }
        let fault = self.faults.iter_mut().find(|f| {
            f.times > 0
                && f.resource
                    .as_deref()
                    .is_none_or(|r| Res::parse(r) == Some(res))
                && match f.on {
                    FaultOn::Any => true,
                    FaultOn::Get => verb == Verb::Get,
                    FaultOn::List => verb == Verb::List,
                    FaultOn::Write => verb == Verb::Write,
                }
        })?;
        fault.times -= 1;
        Some(fault.kind)
    }
}

/// Keeps what the server owns (uid, creation time, generation) across a replace,
/// bumping the generation when the spec changed.
fn preserve_system_fields(old: &Value, new: &mut Value) {
    for field in ["uid", "creationTimestamp"] {
        if let Some(v) = old["metadata"].get(field) {
            new["metadata"][field] = v.clone();
        }
    }
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
    new["metadata"]["generation"] = json!(if old.get("spec") != new.get("spec") {
        generation + 1
    } else {
        generation
    });
}

type HttpReply = Response<HttpBody>;

/// A response body: a whole JSON document, or a watch stream.
enum HttpBody {
    Full(Full<Bytes>),
    Stream(WatchBody),
}

impl Body for HttpBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            HttpBody::Full(full) => Pin::new(full).poll_frame(cx),
            HttpBody::Stream(stream) => Pin::new(stream).poll_frame(cx),
        }
    }
}

/// The body of a watch: lines from the stream's task. Every item carries the
/// resourceVersion it accounts for (lines for other namespaces are empty), so
/// the body knows how far the stream has been handed to the connection.
struct WatchBody {
    lines: mpsc::Receiver<(Option<Bytes>, u64)>,
    delivered: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

impl Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            match self.lines.poll_recv(cx) {
                Poll::Ready(Some((line, rv))) => {
                    self.delivered.fetch_max(rv, Ordering::SeqCst);
                    self.shared.progress.send_modify(|_| {});
                    if let Some(line) = line {
                        return Poll::Ready(Some(Ok(Frame::data(line))));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn json_reply(code: StatusCode, body: &Value) -> HttpReply {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(HttpBody::Full(Full::new(Bytes::from(body.to_string()))))
        .expect("static response parts are valid")
}

/// A Kubernetes `Status` failure.
fn status(code: u16, reason: &str, message: String, details: Value) -> HttpReply {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    });
    json_reply(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

fn details(res: Res, name: &str) -> Value {
    json!({"name": name, "group": res.group(), "kind": res.plural()})
}

fn qualified(res: Res) -> String {
    if res == Res::ReplicaSets {
        "replicasets.apps".to_string()
    } else {
        format!("{}.{}", res.plural(), ISTIO_GROUP)
    }
}

fn not_found(res: Res, name: &str) -> HttpReply {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", qualified(res)),
        details(res, name),
    )
}

fn conflict(res: Res, name: &str) -> HttpReply {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            qualified(res)
        ),
        details(res, name),
    )
}

fn invalid(res: Res, name: &str, message: String) -> HttpReply {
    status(
        422,
        "Invalid",
        format!("{} \"{name}\" is invalid: {message}", res.kind()),
        details(res, name),
    )
}

fn bad_request(message: String) -> HttpReply {
    status(400, "BadRequest", message, json!({}))
}

/// The error hyper sees for an injected disconnect: it closes the connection.
#[derive(Debug)]
pub struct Disconnect;

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected disconnect")
    }
}

impl std::error::Error for Disconnect {}

struct Target {
    res: Res,
    group: String,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", ns, resource] => (Some(*ns), *resource, None),
        ["namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name)),
        [resource] => (None, *resource, None),
        _ => return None,
    };
    let res = Res::parse(resource).filter(|_| resource.chars().all(|c| c.is_ascii_lowercase()))?;
    res.serves(group, version).then(|| Target {
        res,
        group: group.to_string(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    })
}

fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<HttpReply, Disconnect> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/version" => {
            return Ok(json_reply(
                StatusCode::OK,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-standin",
                        "platform": "linux/amd64"}),
            ));
        }
        "/api" => {
            return Ok(json_reply(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": []}),
            ));
        }
        "/apis" => return Ok(json_reply(StatusCode::OK, &api_group_list())),
        _ => {}
    }
    let Some(target) = parse_path(&path) else {
        return Ok(status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        ));
    };
    let params = query_params(req.uri().query());
    let method = req.method().clone();
    let verb = match (&method, &target.name) {
        (&Method::GET, Some(_)) => Verb::Get,
        (&Method::GET, None) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            Verb::Watch
        }
        (&Method::GET, None) => Verb::List,
        _ => Verb::Write,
    };
    match verb {
        Verb::Get => shared.reads.fetch_add(1, Ordering::SeqCst),
        Verb::List => shared.lists.fetch_add(1, Ordering::SeqCst),
        Verb::Watch => shared.watches.fetch_add(1, Ordering::SeqCst),
        Verb::Write => shared.writes.fetch_add(1, Ordering::SeqCst),
    };
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Disconnect),
    };
    let fault = lock(&shared).take_fault(verb, target.res);
    if let Some(kind) = fault {
        let name = target.name.as_deref().unwrap_or_default();
        return match kind {
            FaultKind::Conflict => Ok(conflict(target.res, name)),
            FaultKind::Unavailable => Ok(status(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request (injected)".to_string(),
                json!({}),
            )),
            FaultKind::Error => Ok(status(
                500,
                "InternalError",
                "Internal error occurred: injected fault".to_string(),
                json!({}),
            )),
            FaultKind::Timeout => {
                tokio::time::sleep(TIMEOUT_FAULT_HOLD).await;
                Err(Disconnect)
            }
            FaultKind::Disconnect => Err(Disconnect),
        };
    }
    let namespace = target.namespace.clone();
    Ok(match (method, verb) {
        (_, Verb::Get) => get_one(&shared, &target),
        (_, Verb::List) => list(&shared, &target, &params),
        (_, Verb::Watch) => start_watch(&shared, &target, &params),
        (Method::POST, _) if namespace.is_some() && target.name.is_none() => {
            create(&shared, &target, &body)
        }
        (Method::PUT, _) if target.name.is_some() => update(&shared, &target, &body),
        (Method::PATCH, _) if target.name.is_some() => {
            patch(&shared, &target, &content_type, &body)
        }
        (Method::DELETE, _) if target.name.is_some() => delete(&shared, &target),
        (method, _) => status(
            405,
            "MethodNotAllowed",
            format!("method {method} is not supported on {path}"),
            json!({}),
        ),
    })
}

fn api_group_list() -> Value {
    let version = |v: &str, g: &str| json!({"groupVersion": format!("{g}/{v}"), "version": v});
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": ISTIO_GROUP,
                "versions": ISTIO_VERSIONS.iter().map(|v| version(v, ISTIO_GROUP)).collect::<Vec<_>>(),
                "preferredVersion": version("v1", ISTIO_GROUP),
            },
            {
                "name": "apps",
                "versions": [version("v1", "apps")],
                "preferredVersion": version("v1", "apps"),
            }
        ]
    })
}

/// The object as the requested version shows it.
fn as_served(target: &Target, mut object: Value) -> Value {
    object["apiVersion"] = json!(format!("{}/{}", target.group, target.version));
    object["kind"] = json!(target.res.kind());
    object
}

fn key_of(target: &Target) -> Key {
    (
        target.res,
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    )
}

fn get_one(shared: &Shared, target: &Target) -> HttpReply {
    let store = lock(shared);
    match store.objects.get(&key_of(target)) {
        Some(object) => json_reply(StatusCode::OK, &as_served(target, object.clone())),
        None => not_found(target.res, target.name.as_deref().unwrap_or_default()),
    }
}

fn list(shared: &Shared, target: &Target, params: &BTreeMap<String, String>) -> HttpReply {
    let selector = match Selector::parse(params.get("labelSelector").map_or("", String::as_str)) {
        Ok(selector) => selector,
        Err(message) => return bad_request(message),
    };
    let store = lock(shared);
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((res, ns, _), object)| {
            *res == target.res
                && target.namespace.as_ref().is_none_or(|n| n == ns)
                && selector.matches(object)
        })
        .map(|(_, object)| as_served(target, object.clone()))
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.res.kind()),
            "apiVersion": format!("{}/{}", target.group, target.version),
            "metadata": {"resourceVersion": store.rv.to_string()},
            "items": items,
        }),
    )
}

fn start_watch(
    shared: &Arc<Shared>,
    target: &Target,
    params: &BTreeMap<String, String>,
) -> HttpReply {
    let selector = match Selector::parse(params.get("labelSelector").map_or("", String::as_str)) {
        Ok(selector) => selector,
        Err(message) => return bad_request(message),
    };
    let since: Option<u64> = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .filter(|rv| *rv > 0);
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let delivered = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel(1);
    let mut closed = shared.closer.subscribe();
    let (backlog, mut live, start_rv, expired) = {
        let mut store = lock(shared);
        let expired = since.is_some_and(|since| since < store.compacted);
        let backlog: Vec<Event> = match since {
            Some(since) => store
                .history
                .iter()
                .filter(|e| e.rv > since)
                .cloned()
                .collect(),
            None => store
                .objects
                .iter()
                .map(|((res, ns, _), object)| Event {
                    rv: store.rv,
                    res: *res,
                    namespace: ns.clone(),
                    kind: "ADDED",
                    object: object.clone(),
                })
                .collect(),
        };
        store.watchers.push(delivered.clone());
        (backlog, shared.events.subscribe(), store.rv, expired)
    };
    shared.progress.send_modify(|_| {});
    let res = target.res;
    let namespace = target.namespace.clone();
    let served = Target {
        res,
        group: target.group.clone(),
        version: target.version.clone(),
        namespace: None,
        name: None,
    };
    let line = move |event: &Event| -> Option<Bytes> {
        let matches = event.res == res
            && namespace.as_ref().is_none_or(|n| *n == event.namespace)
            && selector.matches(&event.object);
        matches.then(|| {
            let mut text =
                json!({"type": event.kind, "object": as_served(&served, event.object.clone())})
                    .to_string();
            text.push('\n');
            Bytes::from(text)
        })
    };
    let api_version = format!("{}/{}", target.group, target.version);
    let kind = target.res.kind();
    tokio::spawn(async move {
        let stream = async {
            if expired {
                let gone = json!({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410}});
                let _ = tx
                    .send((Some(Bytes::from(format!("{gone}\n"))), start_rv))
                    .await;
                return Ok(());
            }
            // Everything up to start_rv is in the backlog: mark it as handed over
            // once the backlog is.
            for event in &backlog {
                tx.send((line(event), event.rv)).await.map_err(|_| ())?;
            }
            tx.send((None, start_rv)).await.map_err(|_| ())?;
            if bookmarks {
                let bookmark = json!({"type": "BOOKMARK", "object": {
                    "kind": kind, "apiVersion": api_version,
                    "metadata": {"resourceVersion": start_rv.to_string()}}});
                tx.send((Some(Bytes::from(format!("{bookmark}\n"))), start_rv))
                    .await
                    .map_err(|_| ())?;
            }
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    _ = closed.changed() => break,
                };
                match received {
                    Ok(event) if event.rv <= start_rv => {}
                    Ok(event) => tx.send((line(&event), event.rv)).await.map_err(|_| ())?,
                    // Lagging or closed: end the stream, the client re-lists.
                    Err(_) => break,
                }
            }
            Ok::<(), ()>(())
        };
        let _ = tokio::time::timeout(timeout, stream).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(HttpBody::Stream(WatchBody {
            lines: rx,
            delivered,
            shared: shared.clone(),
        }))
        .expect("static response parts are valid")
}

fn parse_body(target: &Target, body: &[u8]) -> Result<Value, Box<HttpReply>> {
    let name = target.name.as_deref().unwrap_or_default();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(Box::new(invalid(
            target.res,
            name,
            "the body is not a JSON object".into(),
        ))),
        Err(e) => Err(Box::new(invalid(
            target.res,
            name,
            format!("the body is not valid JSON: {e}"),
        ))),
    }
}

fn create(shared: &Shared, target: &Target, body: &[u8]) -> HttpReply {
    let mut object = match parse_body(target, body) {
        Ok(object) => object,
        Err(reply) => return *reply,
    };
    let Some(name) = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return invalid(
            target.res,
            "",
            "metadata.name: Required value: name is required".into(),
        );
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    if let Some(ns) = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        && ns != namespace
    {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    object["metadata"]["namespace"] = json!(namespace);
    let key = (target.res, namespace, name.clone());
    let mut store = lock(shared);
    if store.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(target.res)),
            details(target.res, &name),
        );
    }
    store.stamp_new(&mut object);
    let stored = store.commit(&shared.events, key, object, "ADDED");
    json_reply(StatusCode::CREATED, &as_served(target, stored))
}

/// Checks the name and resourceVersion of a new version of `key` and stores it.
fn store_update(
    shared: &Shared,
    store: &mut Store,
    target: &Target,
    mut object: Value,
    rv_required: bool,
) -> HttpReply {
    let name = target.name.clone().unwrap_or_default();
    let res = target.res;
    let key = key_of(target);
    let Some(old) = store.objects.get(&key).cloned() else {
        return not_found(res, &name);
    };
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == name => {}
        Some(n) => {
            return invalid(
                res,
                &name,
                format!("metadata.name: Invalid value: \"{n}\": field is immutable"),
            );
        }
        None => {
            return bad_request("name is required in the body".into());
        }
    }
    match object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv)
            if Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str) =>
        {
            return conflict(res, &name);
        }
        None if rv_required => {
            return invalid(
                res,
                &name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                    .into(),
            );
        }
        _ => {}
    }
    object["metadata"]["namespace"] = json!(key.1);
    preserve_system_fields(&old, &mut object);
    let stored = store.commit(&shared.events, key, object, "MODIFIED");
    json_reply(StatusCode::OK, &as_served(target, stored))
}

fn update(shared: &Shared, target: &Target, body: &[u8]) -> HttpReply {
    match parse_body(target, body) {
        Ok(object) => store_update(shared, &mut lock(shared), target, object, true),
        Err(reply) => *reply,
    }
}

fn patch(shared: &Shared, target: &Target, content_type: &str, body: &[u8]) -> HttpReply {
    let name = target.name.clone().unwrap_or_default();
    // One lock for read, patch and store: a patch is atomic, as on a server.
    let mut store = lock(shared);
    let Some(current) = store.objects.get(&key_of(target)).cloned() else {
        return not_found(target.res, &name);
    };
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let patched = match media {
        "application/merge-patch+json" => {
            let patch = match parse_body(target, body) {
                Ok(patch) => patch,
                Err(reply) => return *reply,
            };
            let mut doc = current;
            merge_patch(&mut doc, &patch);
            doc
        }
        "application/json-patch+json" => {
            let ops: Vec<Value> = match serde_json::from_slice(body) {
                Ok(ops) => ops,
                Err(e) => {
                    return invalid(target.res, &name, format!("the JSON patch is invalid: {e}"));
                }
            };
            match json_patch(current, &ops) {
                Ok(doc) => doc,
                Err(message) => return invalid(target.res, &name, message),
            }
        }
        other => {
            return status(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format ({other:?}): accepted media types include: application/json-patch+json, application/merge-patch+json"
                ),
                json!({}),
            );
        }
    };
    // A patch that sets a resourceVersion is checked like an update; one
    // without keeps the stored version, so it applies to what is stored.
    store_update(shared, &mut store, target, patched, false)
}

/// RFC 7386.
fn merge_patch(doc: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = json!({});
    }
    if let Some(map) = doc.as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// RFC 6902.
fn json_patch(mut doc: Value, ops: &[Value]) -> Result<Value, String> {
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {i}: missing \"{name}\""))
        };
        let path = field("path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {i}: missing \"value\""))
        };
        match field("op")? {
            "add" => pointer_add(&mut doc, path, value()?)?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "replace" => {
                pointer_remove(&mut doc, path)?;
                pointer_add(&mut doc, path, value()?)?;
            }
            "move" => {
                let moved = pointer_remove(&mut doc, field("from")?)?;
                pointer_add(&mut doc, path, moved)?;
            }
            "copy" => {
                let copied = doc
                    .pointer(field("from")?)
                    .cloned()
                    .ok_or_else(|| format!("operation {i}: \"from\" does not exist"))?;
                pointer_add(&mut doc, path, copied)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("operation {i}: unknown op {other:?}")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| format!("invalid array index in {path:?}"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let removed = match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last),
        Some(Value::Array(items)) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| format!("doc is missing path: {path:?}"))
}

fn delete(shared: &Shared, target: &Target) -> HttpReply {
    let mut store = lock(shared);
    match store.remove(&shared.events, &key_of(target)) {
        Some(object) => json_reply(StatusCode::OK, &as_served(target, object)),
        None => not_found(target.res, target.name.as_deref().unwrap_or_default()),
    }
}

/// A label selector: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
struct Selector(Vec<Requirement>);

enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Selector {
    fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    terms.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        terms.push(&text[start..]);
        let mut requirements = Vec::new();
        for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let rest = rest.trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("invalid label selector term {term:?}"))?;
                Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
            };
            let requirement = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotIn(k.trim().into(), vec![v.trim().into()])
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::In(k.trim().into(), vec![v.trim().into()])
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), set(rest)?)
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else if term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(term.into())
            } else {
                return Err(format!("unable to parse requirement: {term:?}"));
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    fn matches(&self, object: &Value) -> bool {
        let label = |k: &str| {
            object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
        })
    }
}

/// A minimal HTTP/1.1 client for tests: one request per connection.
pub mod client {
    use super::*;

    pub struct Answer {
        pub status: u16,
        pub body: Value,
    }

    /// Sends one request; an error is a dropped connection.
    pub async fn request(
        base_url: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, hyper::Error> {
        let response = send(base_url, method, path, content_type, body).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Sends one request and returns the response with its body unread
    /// (for watches).
    pub async fn send(
        base_url: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        let authority = base_url.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect to the stand-in");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority);
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = builder
            .body(Full::new(bytes))
            .expect("test request parts are valid");
        sender.send_request(request).await
    }

    /// Reads the next watch event line (bounded: panics after 5 s).
    pub async fn next_event(body: &mut Incoming, pending: &mut Vec<u8>) -> Option<Value> {
        loop {
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("a watch line is JSON"));
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("a watch event within 5 s")?
                .ok()?;
            if let Ok(data) = frame.into_data() {
                pending.extend_from_slice(&data);
            }
        }
    }
}
