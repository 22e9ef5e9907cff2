//! argo-rollouts' argument types as the controller sends them (Go field and
//! type names, as in the type definitions of
//! `tests/fixtures/real-controller/host/04-UpdateHash.wire.bin`; gob matches
//! fields by name).
//! Only the fields a traffic router reads; a Go pointer is an `Option`,
//! which gob flattens.

use std::collections::BTreeMap;

use gobwire::Gob;

#[derive(Gob, Debug, Default, Clone)]
pub struct TypeMeta {
    #[gob(name = "Kind")]
    pub kind: String,
    #[gob(name = "APIVersion")]
    pub api_version: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct ObjectMeta {
    #[gob(name = "Name")]
    pub name: String,
    #[gob(name = "Namespace")]
    pub namespace: String,
    #[gob(name = "UID")]
    pub uid: String,
    #[gob(name = "Labels")]
    pub labels: BTreeMap<String, String>,
    #[gob(name = "Annotations")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct StringMatch {
    #[gob(name = "Exact")]
    pub exact: String,
    #[gob(name = "Prefix")]
    pub prefix: String,
    #[gob(name = "Regex")]
    pub regex: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct HeaderRoutingMatch {
    #[gob(name = "HeaderName")]
    pub header_name: String,
    #[gob(name = "HeaderValue")]
    pub header_value: Option<StringMatch>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetHeaderRoute {
    #[gob(name = "Name")]
    pub name: String,
    #[gob(name = "Match")]
    pub matches: Vec<HeaderRoutingMatch>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RouteMatch {
    #[gob(name = "Method")]
    pub method: Option<StringMatch>,
    #[gob(name = "Path")]
    pub path: Option<StringMatch>,
    #[gob(name = "Headers")]
    pub headers: BTreeMap<String, StringMatch>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetMirrorRoute {
    #[gob(name = "Name")]
    pub name: String,
    #[gob(name = "Match")]
    pub matches: Vec<RouteMatch>,
    #[gob(name = "Percentage")]
    pub percentage: Option<i32>,
}

/// `intstr.IntOrString`: `Type` 0 is an int, 1 a string.
#[derive(Gob, Debug, Default, Clone)]
pub struct IntOrString {
    #[gob(name = "Type")]
    pub ty: i64,
    #[gob(name = "IntVal")]
    pub int_val: i32,
    #[gob(name = "StrVal")]
    pub str_val: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutPause {
    #[gob(name = "Duration")]
    pub duration: Option<IntOrString>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetCanaryScale {
    #[gob(name = "Weight")]
    pub weight: Option<i32>,
    #[gob(name = "Replicas")]
    pub replicas: Option<i32>,
    #[gob(name = "MatchTrafficWeight")]
    pub match_traffic_weight: bool,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct CanaryStep {
    #[gob(name = "SetWeight")]
    pub set_weight: Option<i32>,
    #[gob(name = "Pause")]
    pub pause: Option<RolloutPause>,
    #[gob(name = "SetCanaryScale")]
    pub set_canary_scale: Option<SetCanaryScale>,
    #[gob(name = "SetHeaderRoute")]
    pub set_header_route: Option<SetHeaderRoute>,
    #[gob(name = "SetMirrorRoute")]
    pub set_mirror_route: Option<SetMirrorRoute>,
}

/// Go spells the type `MangedRoutes`.
#[derive(Gob, Debug, Default, Clone)]
#[gob(name = "MangedRoutes")]
pub struct ManagedRoute {
    #[gob(name = "Name")]
    pub name: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutTrafficRouting {
    /// `map[string]json.RawMessage`: the JSON as bytes.
    #[gob(name = "Plugins")]
    pub plugins: BTreeMap<String, Vec<u8>>,
    #[gob(name = "ManagedRoutes")]
    pub managed_routes: Vec<ManagedRoute>,
    #[gob(name = "MaxTrafficWeight")]
    pub max_traffic_weight: Option<i32>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct PingPongSpec {
    #[gob(name = "PingService")]
    pub ping_service: String,
    #[gob(name = "PongService")]
    pub pong_service: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct CanaryStrategy {
    #[gob(name = "CanaryService")]
    pub canary_service: String,
    #[gob(name = "StableService")]
    pub stable_service: String,
    #[gob(name = "Steps")]
    pub steps: Vec<CanaryStep>,
    #[gob(name = "TrafficRouting")]
    pub traffic_routing: Option<RolloutTrafficRouting>,
    #[gob(name = "DynamicStableScale")]
    pub dynamic_stable_scale: bool,
    #[gob(name = "PingPong")]
    pub ping_pong: Option<PingPongSpec>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutStrategy {
    #[gob(name = "Canary")]
    pub canary: Option<CanaryStrategy>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutSpec {
    #[gob(name = "Replicas")]
    pub replicas: Option<i32>,
    #[gob(name = "Strategy")]
    pub strategy: RolloutStrategy,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct WeightDestination {
    #[gob(name = "Weight")]
    pub weight: i32,
    #[gob(name = "ServiceName")]
    pub service_name: String,
    #[gob(name = "PodTemplateHash")]
    pub pod_template_hash: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct TrafficWeights {
    #[gob(name = "Canary")]
    pub canary: WeightDestination,
    #[gob(name = "Stable")]
    pub stable: WeightDestination,
    #[gob(name = "Additional")]
    pub additional: Vec<WeightDestination>,
    #[gob(name = "Verified")]
    pub verified: Option<bool>,
}

/// A value, not a pointer, in `RolloutStatus`: always on the wire.
#[derive(Gob, Debug, Default, Clone)]
pub struct CanaryStatus {
    #[gob(name = "Weights")]
    pub weights: Option<TrafficWeights>,
    #[gob(name = "StablePingPong")]
    pub stable_ping_pong: String,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct RolloutStatus {
    #[gob(name = "Abort")]
    pub abort: bool,
    #[gob(name = "CurrentPodHash")]
    pub current_pod_hash: String,
    #[gob(name = "CurrentStepIndex")]
    pub current_step_index: Option<i32>,
    #[gob(name = "Canary")]
    pub canary: CanaryStatus,
    #[gob(name = "StableRS")]
    pub stable_rs: String,
    #[gob(name = "PromoteFull")]
    pub promote_full: bool,
}

/// `TypeMeta` and `ObjectMeta` are embedded: fields named after their types.
#[derive(Gob, Debug, Default, Clone)]
pub struct Rollout {
    #[gob(name = "TypeMeta")]
    pub type_meta: TypeMeta,
    #[gob(name = "ObjectMeta")]
    pub object_meta: ObjectMeta,
    #[gob(name = "Spec")]
    pub spec: RolloutSpec,
    #[gob(name = "Status")]
    pub status: RolloutStatus,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct UpdateHashArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "CanaryHash")]
    pub canary_hash: String,
    #[gob(name = "StableHash")]
    pub stable_hash: String,
    #[gob(name = "AdditionalDestinations")]
    pub additional_destinations: Vec<WeightDestination>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetWeightAndVerifyWeightArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "DesiredWeight")]
    pub desired_weight: i32,
    #[gob(name = "AdditionalDestinations")]
    pub additional_destinations: Vec<WeightDestination>,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetHeaderArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "SetHeaderRoute")]
    pub set_header_route: SetHeaderRoute,
}

#[derive(Gob, Debug, Default, Clone)]
pub struct SetMirrorArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
    #[gob(name = "SetMirrorRoute")]
    pub set_mirror_route: SetMirrorRoute,
}

/// The argument of RemoveManagedRoutes, GetWeightUpdateDeadline and
/// ClearWeightUpdateDeadline (registered under three names).
#[derive(Gob, Debug, Default, Clone)]
pub struct RemoveManagedRoutesArgs {
    #[gob(name = "Rollout")]
    pub rollout: Rollout,
}
