//! The `Plugin` service's calls: argument types as argo-rollouts registers
//! them (`rollout/trafficrouting/plugin/rpc/rpc.go`), decoded from gob into
//! the model.

use super::gob::{Body, DeError, Field, GobDeserializer, GobError, Reader, Schema, ValueDecoder};
use crate::model::{
    CanaryStep, HeaderRoutingMatch, ManagedRoute, ModelError, Rollout, RouteMatch, SetHeaderRoute,
    SetMirrorRoute, StringMatch, WeightDestination, from_deserializer,
};
use crate::router::Call;

/// Why a request's arguments cannot be used; its text is the net/rpc error.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("rpc: can't find method {method} (service Plugin has {})", Call::NAMES.join(", "))]
    UnknownMethod { method: String },
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
    #[error("{method}: decoding {want}: {error}")]
    Decode {
        method: String,
        want: &'static str,
        error: GobError,
    },
    #[error("{method}: {error}")]
    Model {
        method: String,
        error: crate::model::ModelError,
    },
}

/// The argument a method takes, and how it becomes a [`Call`].
enum Argument {
    /// A nil interface.
    Nil(fn() -> Call),
    /// An interface holding the Go type `want`.
    Value {
        want: &'static str,
        schema: &'static Schema,
        build: fn(&mut Args) -> Result<Call, CallError>,
    },
}

/// The argument of each method, by the name argo-rollouts registers it under.
fn argument_of(method: &str) -> Option<Argument> {
    let value = |want, schema, build| Argument::Value {
        want,
        schema,
        build,
    };
    Some(match method {
        "InitPlugin" => Argument::Nil(|| Call::InitPlugin),
        "Type" => Argument::Nil(|| Call::Type),
        "UpdateHash" => value("UpdateHashArgs", &UPDATE_HASH_ARGS, |a| {
            Ok(Call::UpdateHash {
                rollout: a.rollout()?,
                canary_hash: a.string("CanaryHash"),
                stable_hash: a.string("StableHash"),
                additional: a.additional()?,
            })
        }),
        "SetWeight" => value(
            "SetWeightAndVerifyWeightArgs",
            &SET_WEIGHT_AND_VERIFY_WEIGHT_ARGS,
            |a| {
                Ok(Call::SetWeight {
                    rollout: a.rollout()?,
                    desired_weight: a.weight()?,
                    additional: a.additional()?,
                })
            },
        ),
        "VerifyWeight" => value(
            "SetWeightAndVerifyWeightArgs",
            &SET_WEIGHT_AND_VERIFY_WEIGHT_ARGS,
            |a| {
                Ok(Call::VerifyWeight {
                    rollout: a.rollout()?,
                    desired_weight: a.weight()?,
                    additional: a.additional()?,
                })
            },
        ),
        "SetHeaderRoute" => value("SetHeaderArgs", &SET_HEADER_ARGS, |a| {
            Ok(Call::SetHeaderRoute {
                rollout: a.rollout()?,
                route: a.header_route()?,
            })
        }),
        "SetMirrorRoute" => value("SetMirrorArgs", &SET_MIRROR_ARGS, |a| {
            Ok(Call::SetMirrorRoute {
                rollout: a.rollout()?,
                route: a.mirror_route()?,
            })
        }),
        "RemoveManagedRoutes" => value("RemoveManagedRoutesArgs", &ROLLOUT_ONLY_ARGS, |a| {
            Ok(Call::RemoveManagedRoutes {
                rollout: a.rollout()?,
            })
        }),
        "GetWeightUpdateDeadline" => {
            value("GetWeightUpdateDeadlineArgs", &ROLLOUT_ONLY_ARGS, |a| {
                Ok(Call::GetWeightUpdateDeadline {
                    rollout: a.rollout()?,
                })
            })
        }
        "ClearWeightUpdateDeadline" => {
            value("ClearWeightUpdateDeadlineArgs", &ROLLOUT_ONLY_ARGS, |a| {
                Ok(Call::ClearWeightUpdateDeadline {
                    rollout: a.rollout()?,
                })
            })
        }
        _ => return None,
    })
}

/// The fields of one request's argument struct, each decoded straight into
/// the model as it is read; what a field's model rejects is kept and
/// reported when the call asks for the field, in the call's order.
struct Args<'a> {
    method: &'a str,
    want: &'static str,
    rollout: Option<Result<Rollout, ModelError>>,
    canary_hash: String,
    stable_hash: String,
    desired_weight: i64,
    additional: Option<Result<Vec<WeightDestination>, ModelError>>,
    header_route: Option<Result<SetHeaderRoute, ModelError>>,
    mirror_route: Option<Result<SetMirrorRoute, ModelError>>,
}

impl<'a> Args<'a> {
    fn new(method: &'a str, want: &'static str) -> Self {
        Args {
            method,
            want,
            rollout: None,
            canary_hash: String::new(),
            stable_hash: String::new(),
            desired_weight: 0,
            additional: None,
            header_route: None,
            mirror_route: None,
        }
    }

    /// Decodes one field of the argument struct.
    fn read(&mut self, field: &'static Field, de: GobDeserializer<'_, '_>) -> Result<(), DeError> {
        use serde::Deserialize;
        match field.go {
            "Rollout" => self.rollout = Some(from_deserializer(de, "Rollout")),
            "CanaryHash" => self.canary_hash = String::deserialize(de)?,
            "StableHash" => self.stable_hash = String::deserialize(de)?,
            "DesiredWeight" => self.desired_weight = i64::deserialize(de)?,
            "AdditionalDestinations" => {
                self.additional = Some(from_deserializer(de, "AdditionalDestinations"))
            }
            "SetHeaderRoute" => self.header_route = Some(from_deserializer(de, "SetHeaderRoute")),
            "SetMirrorRoute" => self.mirror_route = Some(from_deserializer(de, "SetMirrorRoute")),
            other => return Err(DeError::Model(format!("unexpected argument field {other}"))),
        }
        Ok(())
    }

    fn model<T: Default>(&self, value: Option<Result<T, ModelError>>) -> Result<T, CallError> {
        value
            .unwrap_or_else(|| Ok(T::default()))
            .map_err(|error| CallError::Model {
                method: self.method.to_string(),
                error,
            })
    }

    fn rollout(&mut self) -> Result<Rollout, CallError> {
        let rollout = self.rollout.take();
        self.model(rollout)
    }

    fn header_route(&mut self) -> Result<SetHeaderRoute, CallError> {
        let route = self.header_route.take();
        self.model(route)
    }

    fn mirror_route(&mut self) -> Result<SetMirrorRoute, CallError> {
        let route = self.mirror_route.take();
        self.model(route)
    }

    fn string(&mut self, key: &str) -> String {
        std::mem::take(match key {
            "CanaryHash" => &mut self.canary_hash,
            _ => &mut self.stable_hash,
        })
    }

    fn weight(&mut self) -> Result<i32, CallError> {
        let w = self.desired_weight;
        i32::try_from(w).map_err(|_| CallError::Decode {
            method: self.method.to_string(),
            want: self.want,
            error: GobError::Mismatch(format!("DesiredWeight {w} out of range")),
        })
    }

    fn additional(&mut self) -> Result<Vec<WeightDestination>, CallError> {
        let additional = self.additional.take();
        self.model(additional)
    }
}

/// Decodes the body of a `Plugin.*` request into a [`Call`], checking the
/// registered name against the method. The value is checked first (every
/// gob error, and the memory its model may take: see
/// [`super::gob::MODEL_PER_BYTE`]), then decoded into the model in one pass.
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
    let argument = argument_of(method).ok_or_else(|| CallError::UnknownMethod {
        method: service_method.to_string(),
    })?;
    let wrong = |got: String, want: &'static str| CallError::WrongArgument {
        method: service_method.to_string(),
        got,
        want,
    };
    let (want, schema, build, type_id, bytes) = match (argument, body) {
        (Argument::Nil(call), Body::Nil) => return Ok(call()),
        (Argument::Nil(_), Body::Interface { name, .. }) => {
            return Err(wrong(
                format!("interface holding {name}"),
                "a nil interface",
            ));
        }
        (Argument::Value { want, .. }, Body::Nil) => {
            return Err(wrong("a nil interface".into(), want));
        }
        (
            Argument::Value {
                want,
                schema,
                build,
            },
            Body::Interface {
                name,
                type_id,
                value,
            },
        ) => {
            if name != want {
                return Err(wrong(format!("interface holding {name}"), want));
            }
            (want, schema, build, *type_id, value)
        }
        (argument, Body::Plain { type_id, .. }) => {
            return Err(wrong(
                format!(
                    "a non-interface value of {}",
                    values.types.describe(*type_id)
                ),
                match argument {
                    Argument::Nil(_) => "a nil interface",
                    Argument::Value { want, .. } => want,
                },
            ));
        }
    };
    let decode_error = |error| CallError::Decode {
        method: service_method.to_string(),
        want,
        error,
    };
    values
        .check(schema, type_id, &mut Reader::new(bytes), bytes.len())
        .map_err(decode_error)?;
    let mut args = Args::new(service_method, want);
    values
        .each_field(schema, type_id, &mut Reader::new(bytes), |field, de| {
            args.read(field, de)
        })
        .map_err(|e| match e {
            DeError::Gob(error) => decode_error(error),
            DeError::Model(m) => decode_error(GobError::Mismatch(m)),
        })?;
    build(&mut args)
}

/// Checks the JSON text of a Rollout (the gRPC transport's `rollout_json`)
/// and that its model fits the budget for its size, before anything is
/// built from it: see [`super::gob::check_json`].
pub fn check_rollout_json(json: &[u8]) -> Result<(), super::gob::JsonCheckError> {
    super::gob::check_json(&ROLLOUT, json)
}

macro_rules! fields {
    ($($go:literal => $json:literal : $schema:expr),* $(,)?) => {
        Schema::Struct(&[$(Field { go: $go, json: $json, schema: $schema }),*])
    };
}

// The Go side of `crate::model`: Go field names on the wire, Kubernetes JSON
// names out. Pointers are flattened by gob, so `*int32` is an int.

// What one element or entry of each list and map takes in the model.
const STRING_ENTRY: usize = 2 * size_of::<String>();
const JSON_ENTRY: usize = size_of::<String>() + size_of::<serde_json::Value>();
const MATCH_ENTRY: usize = size_of::<String>() + size_of::<StringMatch>();
const WEIGHT_DESTINATION_SIZE: usize = size_of::<WeightDestination>();
const HEADER_MATCH_SIZE: usize = size_of::<HeaderRoutingMatch>();
const ROUTE_MATCH_SIZE: usize = size_of::<RouteMatch>();
const MANAGED_ROUTE_SIZE: usize = size_of::<ManagedRoute>();
const STEP_SIZE: usize = size_of::<CanaryStep>();
/// A small Go struct the model keeps as a JSON object (`pause`,
/// `setCanaryScale`): its map of at most three entries and their keys.
const SMALL_OBJECT: usize = 1024;

static STRING_MAP: Schema = Schema::Map(&Schema::Str, STRING_ENTRY);

static WEIGHT_DESTINATION: Schema = fields! {
    "Weight" => "weight": &Schema::Int,
    "ServiceName" => "serviceName": &Schema::Str,
    "PodTemplateHash" => "podTemplateHash": &Schema::Str,
};
static WEIGHT_DESTINATIONS: Schema = Schema::Slice(&WEIGHT_DESTINATION, WEIGHT_DESTINATION_SIZE);

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
    "Match" => "match": &Schema::Slice(&HEADER_ROUTING_MATCH, HEADER_MATCH_SIZE),
};

static ROUTE_MATCH: Schema = fields! {
    "Method" => "method": &STRING_MATCH,
    "Path" => "path": &STRING_MATCH,
    "Headers" => "headers": &Schema::Map(&STRING_MATCH, MATCH_ENTRY),
};

static SET_MIRROR_ROUTE: Schema = fields! {
    "Name" => "name": &Schema::Str,
    "Match" => "match": &Schema::Slice(&ROUTE_MATCH, ROUTE_MATCH_SIZE),
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
    "Pause" => "pause": &Schema::Charged(SMALL_OBJECT, &fields! { "Duration" => "duration": &Schema::IntOrString }),
    "SetCanaryScale" => "setCanaryScale": &Schema::Charged(SMALL_OBJECT, &fields! {
        "Weight" => "weight": &Schema::Int,
        "Replicas" => "replicas": &Schema::Int,
        "MatchTrafficWeight" => "matchTrafficWeight": &Schema::Bool,
    }),
    "SetHeaderRoute" => "setHeaderRoute": &SET_HEADER_ROUTE,
    "SetMirrorRoute" => "setMirrorRoute": &SET_MIRROR_ROUTE,
};

static TRAFFIC_ROUTING: Schema = fields! {
    "Plugins" => "plugins": &Schema::Map(&Schema::RawJson, JSON_ENTRY),
    "ManagedRoutes" => "managedRoutes": &Schema::Slice(&fields! { "Name" => "name": &Schema::Str }, MANAGED_ROUTE_SIZE),
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
    "Steps" => "steps": &Schema::Slice(&CANARY_STEP, STEP_SIZE),
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
/// of those names. The JSON flattens TypeMeta: its empty JSON name makes
/// its fields the Rollout's own.
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
