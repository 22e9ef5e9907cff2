//! The `Plugin` service's calls: argument types as argo-rollouts registers
//! them (`rollout/trafficrouting/plugin/rpc/rpc.go`), decoded from gob into
//! the model.

use serde_json::Value;

use super::gob::{Body, Field, GobError, Reader, Schema, ValueDecoder};
use crate::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};

/// A decoded call of service `Plugin`.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    InitPlugin,
    Type,
    UpdateHash {
        rollout: Rollout,
        canary_hash: String,
        stable_hash: String,
        additional: Vec<WeightDestination>,
    },
    SetWeight {
        rollout: Rollout,
        desired_weight: i32,
        additional: Vec<WeightDestination>,
    },
    VerifyWeight {
        rollout: Rollout,
        desired_weight: i32,
        additional: Vec<WeightDestination>,
    },
    SetHeaderRoute {
        rollout: Rollout,
        route: SetHeaderRoute,
    },
    SetMirrorRoute {
        rollout: Rollout,
        route: SetMirrorRoute,
    },
    RemoveManagedRoutes {
        rollout: Rollout,
    },
    GetWeightUpdateDeadline {
        rollout: Rollout,
    },
    ClearWeightUpdateDeadline {
        rollout: Rollout,
    },
}

impl Call {
    /// The Rollout the call is about, if any (for logs).
    pub fn rollout(&self) -> Option<&Rollout> {
        match self {
            Call::InitPlugin | Call::Type => None,
            Call::UpdateHash { rollout, .. }
            | Call::SetWeight { rollout, .. }
            | Call::VerifyWeight { rollout, .. }
            | Call::SetHeaderRoute { rollout, .. }
            | Call::SetMirrorRoute { rollout, .. }
            | Call::RemoveManagedRoutes { rollout }
            | Call::GetWeightUpdateDeadline { rollout }
            | Call::ClearWeightUpdateDeadline { rollout } => Some(rollout),
        }
    }
}

/// Why a request's arguments cannot be used; its text is the net/rpc error.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("rpc: can't find method {0}")]
    UnknownMethod(String),
    #[error("rpc: service/method request ill-formed: {0}")]
    IllFormed(String),
    #[error("rpc: can't find service {0}")]
    UnknownService(String),
    #[error("{method}: argument is {got}, want {want}")]
    WrongArgument {
        method: String,
        got: String,
        want: &'static str,
    },
    #[error("{method}: decoding {want}: {source}")]
    Decode {
        method: String,
        want: &'static str,
        #[source]
        source: GobError,
    },
    #[error("{method}: {source}")]
    Model {
        method: String,
        #[source]
        source: crate::model::ModelError,
    },
}

/// Which argument each method takes: `None` for a nil interface.
fn argument_of(method: &str) -> Option<Option<(&'static str, &'static Schema)>> {
    Some(match method {
        "InitPlugin" | "Type" => None,
        "UpdateHash" => Some(("UpdateHashArgs", &UPDATE_HASH_ARGS)),
        "SetWeight" | "VerifyWeight" => Some((
            "SetWeightAndVerifyWeightArgs",
            &SET_WEIGHT_AND_VERIFY_WEIGHT_ARGS,
        )),
        "SetHeaderRoute" => Some(("SetHeaderArgs", &SET_HEADER_ARGS)),
        "SetMirrorRoute" => Some(("SetMirrorArgs", &SET_MIRROR_ARGS)),
        "RemoveManagedRoutes" => Some(("RemoveManagedRoutesArgs", &ROLLOUT_ONLY_ARGS)),
        "GetWeightUpdateDeadline" => Some(("GetWeightUpdateDeadlineArgs", &ROLLOUT_ONLY_ARGS)),
        "ClearWeightUpdateDeadline" => Some(("ClearWeightUpdateDeadlineArgs", &ROLLOUT_ONLY_ARGS)),
        _ => return None,
    })
}

/// Decodes the body of a `Plugin.*` request into a [`Call`], checking the
/// registered name against the method.
pub fn decode_call(
    values: &mut ValueDecoder,
    service_method: &str,
    body: &Body,
) -> Result<Call, CallError> {
    let Some((service, method)) = service_method.rsplit_once('.') else {
        return Err(CallError::IllFormed(service_method.to_string()));
    };
    if service != "Plugin" {
        return Err(CallError::UnknownService(service_method.to_string()));
    }
    let expected =
        argument_of(method).ok_or_else(|| CallError::UnknownMethod(service_method.to_string()))?;
    let wrong = |got: String, want: &'static str| CallError::WrongArgument {
        method: service_method.to_string(),
        got,
        want,
    };
    let (name, schema, type_id, bytes) = match (expected, body) {
        (None, Body::Nil) => {
            return Ok(if method == "Type" {
                Call::Type
            } else {
                Call::InitPlugin
            });
        }
        (None, Body::Interface { name, .. }) => {
            return Err(wrong(
                format!("interface holding {name}"),
                "a nil interface",
            ));
        }
        (Some((want, _)), Body::Nil) => return Err(wrong("a nil interface".into(), want)),
        (
            Some((want, schema)),
            Body::Interface {
                name,
                type_id,
                value,
            },
        ) => {
            if name != want {
                return Err(wrong(format!("interface holding {name}"), want));
            }
            (want, schema, *type_id, value)
        }
        (expected, Body::Plain { type_id, .. }) => {
            return Err(wrong(
                format!(
                    "a non-interface value of {}",
                    values.types.describe(*type_id)
                ),
                expected.map_or("a nil interface", |(want, _)| want),
            ));
        }
    };
    let decode_err = |source| CallError::Decode {
        method: service_method.to_string(),
        want: name,
        source,
    };
    let mut r = Reader::new(bytes);
    let args = values
        .decode(schema, type_id, &mut r, 0)
        .map_err(decode_err)?;
    let model_err = |source| CallError::Model {
        method: service_method.to_string(),
        source,
    };
    let rollout =
        Rollout::from_json(flatten_rollout(args.get("Rollout").cloned())).map_err(model_err)?;
    let field = |key: &str| args.get(key).cloned().unwrap_or(Value::Null);
    let string = |key: &str| field(key).as_str().unwrap_or_default().to_string();
    let weight = || -> Result<i32, CallError> {
        let w = field("DesiredWeight").as_i64().unwrap_or(0);
        i32::try_from(w).map_err(|_| {
            decode_err(GobError::Mismatch(format!(
                "DesiredWeight {w} out of range"
            )))
        })
    };
    let additional = || -> Result<Vec<WeightDestination>, CallError> {
        crate::model::from_value(
            match field("AdditionalDestinations") {
                Value::Null => Value::Array(Vec::new()),
                v => v,
            },
            "AdditionalDestinations",
        )
        .map_err(model_err)
    };
    Ok(match method {
        "UpdateHash" => Call::UpdateHash {
            rollout,
            canary_hash: string("CanaryHash"),
            stable_hash: string("StableHash"),
            additional: additional()?,
        },
        "SetWeight" => Call::SetWeight {
            rollout,
            desired_weight: weight()?,
            additional: additional()?,
        },
        "VerifyWeight" => Call::VerifyWeight {
            rollout,
            desired_weight: weight()?,
            additional: additional()?,
        },
        "SetHeaderRoute" => Call::SetHeaderRoute {
            rollout,
            route: crate::model::from_value(
                object_or_empty(field("SetHeaderRoute")),
                "SetHeaderRoute",
            )
            .map_err(model_err)?,
        },
        "SetMirrorRoute" => Call::SetMirrorRoute {
            rollout,
            route: crate::model::from_value(
                object_or_empty(field("SetMirrorRoute")),
                "SetMirrorRoute",
            )
            .map_err(model_err)?,
        },
        "RemoveManagedRoutes" => Call::RemoveManagedRoutes { rollout },
        "GetWeightUpdateDeadline" => Call::GetWeightUpdateDeadline { rollout },
        _ => Call::ClearWeightUpdateDeadline { rollout },
    })
}

/// Moves the embedded TypeMeta's fields (decoded under `""`) to the top, as
/// Kubernetes JSON has them.
fn flatten_rollout(rollout: Option<Value>) -> Value {
    match rollout {
        Some(Value::Object(mut m)) => {
            if let Some(Value::Object(type_meta)) = m.remove("") {
                m.extend(type_meta);
            }
            Value::Object(m)
        }
        Some(v) => v,
        None => Value::Object(Default::default()),
    }
}

/// Gob omits a zero struct field; the model wants an object.
fn object_or_empty(v: Value) -> Value {
    match v {
        Value::Null => Value::Object(Default::default()),
        v => v,
    }
}

macro_rules! fields {
    ($($go:literal => $json:literal : $schema:expr),* $(,)?) => {
        Schema::Struct(&[$(Field { go: $go, json: $json, schema: $schema }),*])
    };
}

// The Go side of `crate::model`: Go field names on the wire, Kubernetes JSON
// names out. Pointers are flattened by gob, so `*int32` is an int.

static STRING_MAP: Schema = Schema::Map(&Schema::Str);

static WEIGHT_DESTINATION: Schema = fields! {
    "Weight" => "weight": &Schema::Int,
    "ServiceName" => "serviceName": &Schema::Str,
    "PodTemplateHash" => "podTemplateHash": &Schema::Str,
};
static WEIGHT_DESTINATIONS: Schema = Schema::Slice(&WEIGHT_DESTINATION);

static STRING_MATCH: Schema = fields! {
    "Exact" => "exact": &Schema::Str,
    "Prefix" => "prefix": &Schema::Str,
    "Regex" => "regex": &Schema::Str,
};

static HEADER_ROUTING_MATCH: Schema = fields! {
    "HeaderName" => "headerName": &Schema::Str,
    "HeaderValue" => "headerValue": &STRING_MATCH,
};

static SET_HEADER_ROUTE: Schema = fields! {
    "Name" => "name": &Schema::Str,
    "Match" => "match": &Schema::Slice(&HEADER_ROUTING_MATCH),
};

static ROUTE_MATCH: Schema = fields! {
    "Method" => "method": &STRING_MATCH,
    "Path" => "path": &STRING_MATCH,
    "Headers" => "headers": &Schema::Map(&STRING_MATCH),
};

static SET_MIRROR_ROUTE: Schema = fields! {
    "Name" => "name": &Schema::Str,
    "Match" => "match": &Schema::Slice(&ROUTE_MATCH),
    "Percentage" => "percentage": &Schema::Int,
};

static TYPE_META: Schema = fields! {
    "Kind" => "kind": &Schema::Str,
    "APIVersion" => "apiVersion": &Schema::Str,
};

static OBJECT_META: Schema = fields! {
    "Name" => "name": &Schema::Str,
    "Namespace" => "namespace": &Schema::Str,
    "UID" => "uid": &Schema::Str,
    "Labels" => "labels": &STRING_MAP,
    "Annotations" => "annotations": &STRING_MAP,
};

static CANARY_STEP: Schema = fields! {
    "SetWeight" => "setWeight": &Schema::Int,
    "Pause" => "pause": &fields! { "Duration" => "duration": &Schema::IntOrString },
    "SetCanaryScale" => "setCanaryScale": &fields! {
        "Weight" => "weight": &Schema::Int,
        "Replicas" => "replicas": &Schema::Int,
        "MatchTrafficWeight" => "matchTrafficWeight": &Schema::Bool,
    },
    "SetHeaderRoute" => "setHeaderRoute": &SET_HEADER_ROUTE,
    "SetMirrorRoute" => "setMirrorRoute": &SET_MIRROR_ROUTE,
};

static TRAFFIC_ROUTING: Schema = fields! {
    "Plugins" => "plugins": &Schema::Map(&Schema::RawJson),
    "ManagedRoutes" => "managedRoutes": &Schema::Slice(&fields! { "Name" => "name": &Schema::Str }),
    "MaxTrafficWeight" => "maxTrafficWeight": &Schema::Int,
};

static CANARY_STRATEGY: Schema = fields! {
    "CanaryService" => "canaryService": &Schema::Str,
    "StableService" => "stableService": &Schema::Str,
    "PingPong" => "pingPong": &fields! {
        "PingService" => "pingService": &Schema::Str,
        "PongService" => "pongService": &Schema::Str,
    },
    "DynamicStableScale" => "dynamicStableScale": &Schema::Bool,
    "TrafficRouting" => "trafficRouting": &TRAFFIC_ROUTING,
    "Steps" => "steps": &Schema::Slice(&CANARY_STEP),
};

static ROLLOUT_SPEC: Schema = fields! {
    "Replicas" => "replicas": &Schema::Int,
    "Strategy" => "strategy": &fields! { "Canary" => "canary": &CANARY_STRATEGY },
};

static ROLLOUT_STATUS: Schema = fields! {
    "Abort" => "abort": &Schema::Bool,
    "PromoteFull" => "promoteFull": &Schema::Bool,
    "StableRS" => "stableRS": &Schema::Str,
    "CurrentPodHash" => "currentPodHash": &Schema::Str,
    "CurrentStepIndex" => "currentStepIndex": &Schema::Int,
    "Canary" => "canary": &fields! {
        "StablePingPong" => "stablePingPong": &Schema::Str,
        "Weights" => "weights": &fields! {
            "Canary" => "canary": &WEIGHT_DESTINATION,
            "Stable" => "stable": &WEIGHT_DESTINATION,
            "Additional" => "additional": &WEIGHT_DESTINATIONS,
            "Verified" => "verified": &Schema::Bool,
        },
    },
};

/// `TypeMeta` and `ObjectMeta` are embedded in Go; gob sends them as fields
/// of those names. The JSON flattens TypeMeta, which [`flatten_rollout`]
/// cannot do in a static table, so its fields land under their own key.
static ROLLOUT: Schema = fields! {
    "TypeMeta" => "": &TYPE_META,
    "ObjectMeta" => "metadata": &OBJECT_META,
    "Spec" => "spec": &ROLLOUT_SPEC,
    "Status" => "status": &ROLLOUT_STATUS,
};

static UPDATE_HASH_ARGS: Schema = fields! {
    "Rollout" => "Rollout": &ROLLOUT,
    "CanaryHash" => "CanaryHash": &Schema::Str,
    "StableHash" => "StableHash": &Schema::Str,
    "AdditionalDestinations" => "AdditionalDestinations": &WEIGHT_DESTINATIONS,
};

static SET_WEIGHT_AND_VERIFY_WEIGHT_ARGS: Schema = fields! {
    "Rollout" => "Rollout": &ROLLOUT,
    "DesiredWeight" => "DesiredWeight": &Schema::Int,
    "AdditionalDestinations" => "AdditionalDestinations": &WEIGHT_DESTINATIONS,
};

static SET_HEADER_ARGS: Schema = fields! {
    "Rollout" => "Rollout": &ROLLOUT,
    "SetHeaderRoute" => "SetHeaderRoute": &SET_HEADER_ROUTE,
};

static SET_MIRROR_ARGS: Schema = fields! {
    "Rollout" => "Rollout": &ROLLOUT,
    "SetMirrorRoute" => "SetMirrorRoute": &SET_MIRROR_ROUTE,
};

static ROLLOUT_ONLY_ARGS: Schema = fields! {
    "Rollout" => "Rollout": &ROLLOUT,
};
