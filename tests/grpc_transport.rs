//! The router served over go-plugin's gRPC protocol, driven in-process over
//! a unix socket by tonic clients, as go-plugin's gRPC client would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use istio_router::cluster::{Cluster, ClusterError, InMemoryCluster, ObjectKey};
use istio_router::istio::IstioRouter;
use istio_router::model::ReplicaSetInfo;
use istio_router::transport::grpc::proto::health::HealthCheckRequest;
use istio_router::transport::grpc::proto::health::health_check_response::ServingStatus;
use istio_router::transport::grpc::proto::health::health_client::HealthClient;
use istio_router::transport::grpc::proto::plugin::conn_info::Knock;
use istio_router::transport::grpc::proto::plugin::grpc_broker_client::GrpcBrokerClient;
use istio_router::transport::grpc::proto::plugin::grpc_controller_client::GrpcControllerClient;
use istio_router::transport::grpc::proto::plugin::grpc_stdio_client::GrpcStdioClient;
use istio_router::transport::grpc::proto::plugin::{ConnInfo, Empty};
use istio_router::transport::grpc::proto::trafficrouter as pb;
use istio_router::transport::grpc::proto::trafficrouter::traffic_router_plugin_client::TrafficRouterPluginClient;
use istio_router::transport::grpc::{self, GrpcError};
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const PLUGIN: &str = "argoproj-labs/istio";
/// Bound on every wait: an event that does not come fails the test.
const WAIT: Duration = Duration::from_secs(10);

type Router = IstioRouter<InMemoryCluster>;

struct Plugin {
    router: Arc<Router>,
    channel: Channel,
    server: JoinHandle<Result<(), GrpcError>>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Plugin {
    async fn start() -> Plugin {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("plugin.sock");
        let listener = UnixListener::bind(&socket).expect("bind unix socket");
        let router = Arc::new(IstioRouter::new(InMemoryCluster::new(), PLUGIN));
        router
            .cluster()
            .apply([virtual_service()], "default")
            .expect("apply VirtualService");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(grpc::serve(listener, Arc::clone(&router), async move {
            // A dropped sender also stops the server.
            let _ = stopped.await;
        }));
        let channel = grpc::connect(&socket).await.expect("connect");
        Plugin {
            router,
            channel,
            server,
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn client(&self) -> TrafficRouterPluginClient<Channel> {
        TrafficRouterPluginClient::new(self.channel.clone())
    }

    fn cluster(&self) -> &InMemoryCluster {
        self.router.cluster()
    }

    fn http_routes(&self) -> Value {
        self.cluster()
            .object("VirtualService", "default", "rollout-vsvc")
            .expect("VirtualService stored")["spec"]["http"]
            .clone()
    }

    /// Waits for `serve` to return.
    async fn stopped(self) -> Result<(), GrpcError> {
        within(self.server).await.expect("serve task panicked")
    }
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting")
}

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "rollout-vsvc", "namespace": "default"},
        "spec": {
            "hosts": ["istio-rollout.dev.argoproj.io"],
            "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": "stable-svc"}, "weight": 100},
                    {"destination": {"host": "canary-svc"}, "weight": 0}
                ]
            }]
        }
    })
}

fn rollout_with_config(config: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "rollout-example", "namespace": "default"},
        "spec": {"strategy": {"canary": {
            "canaryService": "canary-svc",
            "stableService": "stable-svc",
            "trafficRouting": {
                "managedRoutes": [{"name": "header-1"}, {"name": "mirror-1"}],
                "plugins": {PLUGIN: config}
            }
        }}}
    })
}

fn rollout() -> Vec<u8> {
    let config = json!({"virtualService": {"name": "rollout-vsvc", "routes": ["primary"]}});
    serde_json::to_vec(&rollout_with_config(config)).expect("serialise Rollout")
}

fn set_weight(rollout_json: Vec<u8>, weight: i32) -> pb::SetWeightRequest {
    pb::SetWeightRequest {
        rollout_json,
        desired_weight: weight,
        additional_destinations: vec![],
    }
}

fn exact(value: &str) -> pb::StringMatch {
    pb::StringMatch {
        exact: value.into(),
        ..Default::default()
    }
}

fn header_route(name: &str, matches: Vec<pb::HeaderRoutingMatch>) -> pb::SetHeaderRouteRequest {
    pb::SetHeaderRouteRequest {
        rollout_json: rollout(),
        set_header_route: Some(pb::SetHeaderRoute {
            name: name.into(),
            r#match: matches,
        }),
    }
}

fn weights(routes: &Value) -> Vec<(String, i64)> {
    routes
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["name"] == "primary"))
        .and_then(|primary| primary["route"].as_array())
        .expect("primary route with destinations")
        .iter()
        .map(|d| {
            (
                d["destination"]["host"].as_str().unwrap_or_default().into(),
                d["weight"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

fn route_names(routes: &Value) -> Vec<&str> {
    routes
        .as_array()
        .expect("http routes")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn health_check_reports_the_plugin_serving() {
    let plugin = Plugin::start().await;
    let response = HealthClient::new(plugin.channel.clone())
        .check(HealthCheckRequest {
            service: grpc::HEALTH_SERVICE.into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn init_and_type_answer_like_the_net_rpc_plugin() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();
    let init = client
        .init_plugin(pb::InitPluginRequest {})
        .await
        .expect("InitPlugin")
        .into_inner();
    assert_eq!(init.error_string, "");
    let kind = client
        .r#type(pb::TypeRequest {})
        .await
        .expect("Type")
        .into_inner();
    assert_eq!(kind.r#type, "Istio");
}

#[tokio::test]
async fn set_weight_writes_the_virtual_service_and_verify_weight_follows() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();

    let before = client
        .verify_weight(set_weight(rollout(), 30))
        .await
        .expect("VerifyWeight")
        .into_inner();
    assert_eq!(before.verified(), pb::Verified::NotVerified);
    assert_eq!(before.error.unwrap_or_default().error_string, "");

    let set = client
        .set_weight(set_weight(rollout(), 30))
        .await
        .expect("SetWeight")
        .into_inner();
    assert_eq!(set.error_string, "");
    assert_eq!(
        weights(&plugin.http_routes()),
        [
            ("stable-svc".to_string(), 70),
            ("canary-svc".to_string(), 30)
        ]
    );

    let after = client
        .verify_weight(set_weight(rollout(), 30))
        .await
        .expect("VerifyWeight")
        .into_inner();
    assert_eq!(after.verified(), pb::Verified::Verified);
}

#[tokio::test]
async fn header_and_mirror_routes_are_added_and_removed() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();

    let header = client
        .set_header_route(header_route(
            "header-1",
            vec![pb::HeaderRoutingMatch {
                header_name: "Custom-Header".into(),
                header_value: Some(exact("Mozilla")),
            }],
        ))
        .await
        .expect("SetHeaderRoute")
        .into_inner();
    assert_eq!(header.error_string, "");
    let routes = plugin.http_routes();
    assert_eq!(route_names(&routes), ["header-1", "primary"]);
    assert_eq!(
        routes[0]["match"],
        json!([{"headers": {"Custom-Header": {"exact": "Mozilla"}}}])
    );
    assert_eq!(
        routes[0]["route"],
        json!([{"destination": {"host": "canary-svc"}, "weight": 100}])
    );

    let mirror = client
        .set_mirror_route(pb::SetMirrorRouteRequest {
            rollout_json: rollout(),
            set_mirror_route: Some(pb::SetMirrorRoute {
                name: "mirror-1".into(),
                r#match: vec![pb::RouteMatch {
                    method: Some(exact("GET")),
                    path: None,
                    headers: Default::default(),
                }],
                percentage: Some(35),
            }),
        })
        .await
        .expect("SetMirrorRoute")
        .into_inner();
    assert_eq!(mirror.error_string, "");
    let routes = plugin.http_routes();
    let mirror_route = routes
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["name"] == "mirror-1"))
        .expect("mirror route added");
    assert_eq!(mirror_route["match"], json!([{"method": {"exact": "GET"}}]));
    assert_eq!(mirror_route["mirror"], json!({"host": "canary-svc"}));
    assert_eq!(mirror_route["mirrorPercentage"], json!({"value": 35}));

    let removed = client
        .remove_managed_routes(pb::RolloutRequest {
            rollout_json: rollout(),
        })
        .await
        .expect("RemoveManagedRoutes")
        .into_inner();
    assert_eq!(removed.error_string, "");
    assert_eq!(route_names(&plugin.http_routes()), ["primary"]);
}

#[tokio::test]
async fn hash_and_deadline_calls_succeed_without_writes() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();

    let hash = client
        .update_hash(pb::UpdateHashRequest {
            rollout_json: rollout(),
            canary_hash: "abc123".into(),
            stable_hash: "def456".into(),
            additional_destinations: vec![],
        })
        .await
        .expect("UpdateHash")
        .into_inner();
    assert_eq!(hash.error_string, "");

    let deadline = client
        .get_weight_update_deadline(pb::RolloutRequest {
            rollout_json: rollout(),
        })
        .await
        .expect("GetWeightUpdateDeadline")
        .into_inner();
    assert_eq!(deadline.deadline, None);
    assert_eq!(deadline.error.unwrap_or_default().error_string, "");

    let clear = client
        .clear_weight_update_deadline(pb::RolloutRequest {
            rollout_json: rollout(),
        })
        .await
        .expect("ClearWeightUpdateDeadline")
        .into_inner();
    assert_eq!(clear.error_string, "");
    assert_eq!(plugin.cluster().writes(), 0);
}

#[tokio::test]
async fn failures_come_back_in_the_error_string() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();

    let unknown_key = rollout_with_config(json!({
        "virtualService": {"name": "rollout-vsvc", "routes": ["primary"]},
        "virtualServise": {"name": "typo"}
    }));
    let reply = client
        .set_weight(set_weight(
            serde_json::to_vec(&unknown_key).expect("serialise"),
            30,
        ))
        .await
        .expect("SetWeight")
        .into_inner();
    assert!(
        reply.error_string.contains("virtualServise"),
        "{}",
        reply.error_string
    );

    let mut wrong_type = rollout_with_config(json!({}));
    wrong_type["spec"]["replicas"] = json!("three");
    let reply = client
        .verify_weight(set_weight(
            serde_json::to_vec(&wrong_type).expect("serialise"),
            30,
        ))
        .await
        .expect("VerifyWeight")
        .into_inner();
    assert_eq!(reply.verified(), pb::Verified::NotVerified);
    let error = reply.error.unwrap_or_default().error_string;
    assert!(error.contains("spec.replicas"), "{error}");

    let reply = client
        .remove_managed_routes(pb::RolloutRequest {
            rollout_json: b"{\"metadata\": ".to_vec(),
        })
        .await
        .expect("RemoveManagedRoutes")
        .into_inner();
    assert!(
        reply.error_string.contains("not valid JSON"),
        "{}",
        reply.error_string
    );

    let reply = client
        .set_weight(set_weight(rollout(), 130))
        .await
        .expect("SetWeight")
        .into_inner();
    assert_ne!(reply.error_string, "");

    assert_eq!(plugin.cluster().writes(), 0);
    assert_eq!(
        weights(&plugin.http_routes()),
        [
            ("stable-svc".to_string(), 100),
            ("canary-svc".to_string(), 0)
        ]
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_makes_serve_return() {
    let plugin = Plugin::start().await;
    // The host holds these two streams open for the whole session.
    let mut stdio = GrpcStdioClient::new(plugin.channel.clone())
        .stream_stdio(())
        .await
        .expect("StreamStdio")
        .into_inner();
    let (_knocks, inbound) = mpsc::channel::<ConnInfo>(1);
    let mut broker = GrpcBrokerClient::new(plugin.channel.clone())
        .start_stream(ReceiverStream::new(inbound))
        .await
        .expect("StartStream")
        .into_inner();

    GrpcControllerClient::new(plugin.channel.clone())
        .shutdown(Empty {})
        .await
        .expect("Shutdown answered");

    assert!(matches!(within(stdio.message()).await, Ok(None)));
    assert!(matches!(within(broker.message()).await, Ok(None)));
    plugin.stopped().await.expect("serve returns cleanly");
}

#[tokio::test]
async fn the_shutdown_future_makes_serve_return() {
    let mut plugin = Plugin::start().await;
    drop(plugin.stop.take());
    plugin.stopped().await.expect("serve returns cleanly");
}

#[tokio::test]
async fn broker_knocks_are_refused_with_an_ack() {
    let plugin = Plugin::start().await;
    let (knocks, inbound) = mpsc::channel(1);
    let mut broker = GrpcBrokerClient::new(plugin.channel.clone())
        .start_stream(ReceiverStream::new(inbound))
        .await
        .expect("StartStream")
        .into_inner();
    knocks
        .send(ConnInfo {
            service_id: 7,
            knock: Some(Knock {
                knock: true,
                ack: false,
                error: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("send knock");
    let ack = within(broker.message())
        .await
        .expect("broker stream")
        .expect("an answer to the knock");
    assert_eq!(ack.service_id, 7);
    let knock = ack.knock.expect("knock fields");
    assert!(knock.knock && knock.ack);
    assert!(knock.error.contains('7'), "{}", knock.error);
}

/// A cluster whose reads never answer, like an API server that hangs; it
/// reports each read it receives.
struct HungCluster {
    reads: mpsc::UnboundedSender<()>,
}

impl Cluster for HungCluster {
    async fn get(&self, _key: &ObjectKey) -> Result<Value, ClusterError> {
        let _ = self.reads.send(());
        std::future::pending().await
    }

    async fn replace(&self, _key: &ObjectKey, _object: Value) -> Result<Value, ClusterError> {
        std::future::pending().await
    }

    async fn list_replica_sets(
        &self,
        _namespace: &str,
        _rollout_name: &str,
    ) -> Result<Vec<ReplicaSetInfo>, ClusterError> {
        std::future::pending().await
    }
}

/// `serve` returns after the drain timeout even while a call is stuck, so
/// the process can exit before the host kills it.
#[tokio::test]
async fn a_hung_call_does_not_hold_shutdown_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("plugin.sock");
    let listener = UnixListener::bind(&socket).expect("bind unix socket");
    let (reads, mut read_started) = mpsc::unbounded_channel();
    let router = Arc::new(IstioRouter::new(HungCluster { reads }, PLUGIN));
    let server = tokio::spawn(grpc::serve(listener, router, std::future::pending()));
    let channel = grpc::connect(&socket).await.expect("connect");

    let mut client = TrafficRouterPluginClient::new(channel.clone());
    tokio::spawn(async move { client.set_weight(set_weight(rollout(), 30)).await });
    within(read_started.recv())
        .await
        .expect("SetWeight reads the cluster");

    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .expect("Shutdown answered");
    within(server)
        .await
        .expect("serve task panicked")
        .expect("serve returns cleanly");
}

/// After a refused request: nothing was written, and the connection still
/// serves a request within the limits.
async fn still_serves_without_writes(
    plugin: &Plugin,
    client: &mut TrafficRouterPluginClient<Channel>,
) {
    assert_eq!(plugin.cluster().writes(), 0);
    let reply = client
        .set_weight(set_weight(rollout(), 30))
        .await
        .expect("SetWeight")
        .into_inner();
    assert_eq!(reply.error_string, "");
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_with_a_clear_error() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();
    // A valid Rollout padded past the limit with an annotation.
    let mut big = rollout_with_config(json!({
        "virtualService": {"name": "rollout-vsvc", "routes": ["primary"]}
    }));
    big["metadata"]["annotations"] = json!({"pad": "x".repeat(grpc::MAX_MESSAGE_SIZE)});
    let status = client
        .set_weight(set_weight(serde_json::to_vec(&big).expect("serialise"), 30))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("the limit is: {} bytes", grpc::MAX_MESSAGE_SIZE)),
        "{}",
        status.message()
    );
    still_serves_without_writes(&plugin, &mut client).await;
}

#[tokio::test]
async fn a_message_of_many_tiny_elements_is_refused_before_it_is_decoded() {
    let plugin = Plugin::start().await;
    let mut client = plugin.client();
    // 400 000 empty additional destinations: 2 bytes each on the wire,
    // about 0.8 MB, which prost would grow into tens of MB.
    let mut request = set_weight(rollout(), 30);
    request.additional_destinations = vec![pb::WeightDestination::default(); 400_000];
    let status = client.set_weight(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().starts_with("a request of ")
            && status.message().ends_with(" (4 per byte + 1048576)"),
        "{}",
        status.message()
    );
    still_serves_without_writes(&plugin, &mut client).await;
}
