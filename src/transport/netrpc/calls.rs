//! The `Plugin` service's calls: argument types as argo-rollouts registers
//! them (`rollout/trafficrouting/plugin/rpc/rpc.go`), decoded from gob into
//! the model.

use serde_json::Value;

use super::gob::{Body, Field, GobError, Reader, Schema, ValueDecoder};
use crate::model::{Rollout, WeightDestination};
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
            let route = object_or_empty(a.take("SetHeaderRoute"));
            Ok(Call::SetHeaderRoute {
                rollout: a.rollout()?,
                route: a.model(route, "SetHeaderRoute")?,
            })
        }),
        "SetMirrorRoute" => value("SetMirrorArgs", &SET_MIRROR_ARGS, |a| {
            let route = object_or_empty(a.take("SetMirrorRoute"));
            Ok(Call::SetMirrorRoute {
                rollout: a.rollout()?,
                route: a.model(route, "SetMirrorRoute")?,
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

/// A decoded argument struct (Go field names as keys) of one request. Each
/// field is taken out once, so nothing (the Rollout least) is copied.
struct Args<'a> {
    method: &'a str,
    want: &'static str,
    fields: Value,
}

impl Args<'_> {
    fn take(&mut self, key: &str) -> Value {
        self.fields
            .get_mut(key)
            .map(Value::take)
            .unwrap_or(Value::Null)
    }

    fn string(&self, key: &str) -> String {
        self.fields
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn model<T: serde::de::DeserializeOwned>(
        &self,
        value: Value,
        what: &str,
    ) -> Result<T, CallError> {
        crate::model::from_value(value, what).map_err(|error| CallError::Model {
            method: self.method.to_string(),
            error,
        })
    }

    fn rollout(&mut self) -> Result<Rollout, CallError> {
        let rollout = match self.take("Rollout") {
            Value::Null => None,
            v => Some(v),
        };
        Rollout::from_json(flatten_rollout(rollout)).map_err(|error| CallError::Model {
            method: self.method.to_string(),
            error,
        })
    }

    fn weight(&mut self) -> Result<i32, CallError> {
        let w = self.take("DesiredWeight").as_i64().unwrap_or(0);
        i32::try_from(w).map_err(|_| CallError::Decode {
            method: self.method.to_string(),
            want: self.want,
            error: GobError::Mismatch(format!("DesiredWeight {w} out of range")),
        })
    }

    fn additional(&mut self) -> Result<Vec<WeightDestination>, CallError> {
        let value = match self.take("AdditionalDestinations") {
            Value::Null => Value::Array(Vec::new()),
            v => v,
        };
        self.model(value, "AdditionalDestinations")
    }
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
    let mut r = Reader::new(bytes);
    values.begin_request();
    let fields = values
        .decode(schema, type_id, &mut r, 0)
        .map_err(|error| CallError::Decode {
            method: service_method.to_string(),
            want,
            error,
        })?;
    build(&mut Args {
        method: service_method,
        want,
        fields,
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
