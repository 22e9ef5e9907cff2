//! What the Argo Rollouts controller lets through to a traffic-router
//! plugin. The controller validates a Rollout before it calls any router,
//! with rules for `trafficRouting.plugins` that differ from the built-in
//! Istio router's and between releases (docs/controller-compat.md; the
//! end-to-end tier runs the genuine controller of both releases named
//! there). `simulate` refuses what the chosen controller release refuses,
//! in the controller's own words, so a user learns it before deploying.

use std::fmt;
use std::str::FromStr;

use crate::model::Rollout;

/// The newest controller release checked against (the default).
pub const LATEST_CHECKED: Version = Version(1, 10, 2);
/// The oldest release the plugin supports: the oldest the end-to-end tier
/// runs (plugin entries need `args`, v1.7.0; the 1.7 line is served by the
/// Go module proxy from v1.7.2 only).
pub const MINIMUM_SUPPORTED: Version = Version(1, 7, 2);

/// An Argo Rollouts release, `v1.10.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.0, self.1, self.2)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an Argo Rollouts release such as v1.10.2")]
pub struct BadVersion(String);

impl FromStr for Version {
    type Err = BadVersion;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadVersion(text.to_string());
        let mut parts = text.trim().trim_start_matches('v').split('.');
        let mut next = || -> Result<u32, BadVersion> {
            match parts.next() {
                None => Ok(0),
                Some(part) => part.parse().map_err(|_| bad()),
            }
        };
        let version = Version(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(version)
    }
}

/// A reason the controller refuses a Rollout before any router sees it, as
/// its validation words it (the Rollout gets condition `InvalidSpec` and
/// phase `Degraded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field path the controller reports.
    pub field: String,
    /// The controller's message.
    pub message: String,
    /// The first release that accepts it, when a newer one does.
    pub accepted_from: Option<Version>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)?;
        if let Some(version) = self.accepted_from {
            write!(f, " (accepted from argo-rollouts {version})")?;
        }
        Ok(())
    }
}

/// The step actions the plugin's model of a Rollout leaves out (the
/// controller plays them without any router), read from the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherActions {
    pub experiment: bool,
    pub analysis: bool,
    pub plugin: bool,
}

impl OtherActions {
    /// Per step of `spec.strategy.canary.steps` in the Rollout's JSON.
    pub fn of_manifest(rollout: &serde_json::Value) -> Vec<OtherActions> {
        rollout
            .pointer("/spec/strategy/canary/steps")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .map(|step| {
                let set = |key| step.get(key).is_some_and(|v| !v.is_null());
                OtherActions {
                    experiment: set("experiment"),
                    analysis: set("analysis"),
                    plugin: set("plugin"),
                }
            })
            .collect()
    }
}

/// Everything `version` of the controller refuses in `rollout` when its
/// traffic is routed by plugins only.
pub fn refusals(rollout: &Rollout, version: Version) -> Vec<Refusal> {
    refusals_with(rollout, &[], version)
}

/// [`refusals`], knowing the steps' actions the model leaves out
/// ([`OtherActions::of_manifest`]); without them, a step holding only an
/// experiment is not called empty.
pub fn refusals_with(rollout: &Rollout, other: &[OtherActions], version: Version) -> Vec<Refusal> {
    let mut found = Vec::new();
    let Some(canary) = &rollout.spec.strategy.canary else {
        return found;
    };
    let routing = canary.traffic_routing.as_ref();
    let max_weight = routing.and_then(|r| r.max_traffic_weight).unwrap_or(100);
    let managed: Vec<&str> = routing
        .and_then(|r| r.managed_routes.as_ref())
        .map(|routes| routes.iter().map(|r| r.name.as_str()).collect())
        .unwrap_or_default();
    let mirror_from = Version(1, 10, 0);
    let plugins_from = Version(1, 7, 0);

    if canary.ping_pong.is_some() && version < mirror_from {
        found.push(Refusal {
            field: "spec.strategy.trafficRouting.alb".into(),
            message: "Invalid value: null: Ping-pong feature works with the ALB and Istio traffic routers only".into(),
            accepted_from: Some(mirror_from),
        });
    }
    if routing.is_some_and(|r| r.max_traffic_weight.is_some()) && version < plugins_from {
        found.push(Refusal {
            field: "spec.strategy.trafficRouting.maxTrafficWeight".into(),
            message: "Canary maxTrafficWeight in traffic routing only supported in Nginx".into(),
            accepted_from: Some(plugins_from),
        });
    }
    for (index, step) in canary.steps.iter().enumerate() {
        let at = format!("spec.strategy.steps[{index}]");
        // The controller's one-of rule covers these four only: a setWeight
        // step may also carry setHeaderRoute, setMirrorRoute or
        // setCanaryScale, and the controller plays both.
        let other_actions = other.get(index).copied();
        let others = other_actions.unwrap_or_default();
        let one_of = [
            step.set_weight.is_some(),
            step.pause.is_some(),
            others.experiment,
            others.analysis,
        ];
        let any_action = one_of.iter().any(|set| *set)
            || step.set_canary_scale.is_some()
            || step.set_header_route.is_some()
            || step.set_mirror_route.is_some()
            || others.plugin;
        // An empty step is known only when the manifest was read.
        let empty = !any_action && other_actions.is_some();
        if one_of.iter().filter(|set| **set).count() > 1 || empty {
            found.push(Refusal {
                field: at.clone(),
                message: format!(
                    "Invalid value: {}: {STEP_ONE_OF}",
                    step_actions(step, others)
                ),
                accepted_from: None,
            });
        }
        if let Some(pause) = &step.pause
            && let Some(duration) = pause.get("duration")
            && pause_seconds(duration).is_none_or(|seconds| seconds < 0)
        {
            found.push(Refusal {
                field: format!("{at}.pause.duration"),
                message: format!("Invalid value: {duration}: Duration needs to be greater than 0"),
                accepted_from: None,
            });
        }
        if let Some(weight) = step.set_weight
            && !(0..=max_weight).contains(&weight)
        {
            found.push(Refusal {
                field: format!("{at}.setWeight"),
                message: format!(
                    "Invalid value: {weight}: SetWeight needs to be between 0 and {max_weight}"
                ),
                accepted_from: None,
            });
        }
        if let Some(route) = &step.set_header_route {
            if version < plugins_from {
                found.push(Refusal {
                    field: format!("{at}.setHeaderRoute"),
                    message:
                        "SetHeaderRoute requires TrafficRouting, supports Istio and ALB and Apisix"
                            .into(),
                    accepted_from: Some(plugins_from),
                });
            }
            not_managed(&mut found, &at, "setHeaderRoute", &route.name, &managed);
        }
        if let Some(route) = &step.set_mirror_route {
            if version < mirror_from {
                found.push(Refusal {
                    field: format!("{at}.setMirrorRoute"),
                    message: "SetMirrorRoute requires TrafficRouting, supports Istio only".into(),
                    accepted_from: Some(mirror_from),
                });
            }
            not_managed(&mut found, &at, "setMirrorRoute", &route.name, &managed);
        }
    }
    found
}

/// The controller's message for a step with no action or with two of
/// setWeight, pause, experiment and analysis.
const STEP_ONE_OF: &str = "Step must have one of the following set: experiment, setWeight, setCanaryScale, plugin or pause";

/// The actions a step sets, `setWeight+pause`, for a refusal's value.
fn step_actions(step: &crate::model::CanaryStep, others: OtherActions) -> String {
    let names: Vec<&str> = [
        ("setWeight", step.set_weight.is_some()),
        ("pause", step.pause.is_some()),
        ("experiment", others.experiment),
        ("analysis", others.analysis),
        ("setCanaryScale", step.set_canary_scale.is_some()),
        ("setHeaderRoute", step.set_header_route.is_some()),
        ("setMirrorRoute", step.set_mirror_route.is_some()),
        ("plugin", others.plugin),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if names.is_empty() {
        "(no action)".into()
    } else {
        names.join("+")
    }
}

/// A pause's `duration` in seconds as the controller reads it (an integer,
/// or a string holding an integer or a Go duration such as `1h30m`); `None`
/// when it cannot be read, which the controller treats as negative.
pub fn pause_seconds(duration: &serde_json::Value) -> Option<i64> {
    match duration {
        serde_json::Value::Number(n) => n.as_i64().filter(|s| i32::try_from(*s).is_ok()),
        serde_json::Value::String(text) => match text.parse::<i32>() {
            Ok(seconds) => Some(i64::from(seconds)),
            Err(_) => go_duration_seconds(text),
        },
        serde_json::Value::Null => Some(0),
        _ => None,
    }
}

/// Go's `time.ParseDuration`, truncated to whole seconds: an optional sign,
/// then numbers (with an optional fraction) each followed by one of
/// ns, us, µs, ms, s, m, h; `0` alone is allowed.
fn go_duration_seconds(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        nanos += value * scale;
    }
    // Go refuses durations past about 292 years.
    if nanos > i64::MAX as f64 {
        return None;
    }
    let seconds = (nanos / 1e9).trunc() as i64;
    Some(if negative { -seconds } else { seconds })
}

fn not_managed(found: &mut Vec<Refusal>, at: &str, step: &str, name: &str, managed: &[&str]) {
    if !managed.contains(&name) {
        found.push(Refusal {
            field: format!("{at}.{step}"),
            message: format!(
                "Invalid value: {name:?}: Steps define a route that does not exist in spec.strategy.canary.trafficRouting.managedRoutes"
            ),
            accepted_from: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(canary: serde_json::Value) -> Rollout {
        Rollout::from_json(json!({
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"strategy": {"canary": canary}}
        }))
        .expect("a valid Rollout")
    }

    #[test]
    fn mirror_steps_are_refused_before_v1_10() {
        let r = rollout(json!({
            "trafficRouting": {"managedRoutes": [{"name": "m"}], "plugins": {"a/b": {}}},
            "steps": [{"setWeight": 10}, {"setMirrorRoute": {"name": "m", "percentage": 50}}]
        }));
        let old = refusals(&r, "v1.9.3".parse().expect("a version"));
        assert_eq!(old.len(), 1);
        assert_eq!(
            old[0].to_string(),
            "spec.strategy.steps[1].setMirrorRoute: SetMirrorRoute requires TrafficRouting, \
             supports Istio only (accepted from argo-rollouts v1.10.0)"
        );
        assert!(refusals(&r, LATEST_CHECKED).is_empty());
    }

    #[test]
    fn every_release_refuses_unmanaged_routes_and_weights_out_of_range() {
        let r = rollout(json!({
            "trafficRouting": {"maxTrafficWeight": 50, "plugins": {"a/b": {}}},
            "steps": [{"setWeight": 60}, {"setHeaderRoute": {"name": "h"}}]
        }));
        let fields: Vec<String> = refusals(&r, LATEST_CHECKED)
            .into_iter()
            .map(|r| r.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.strategy.steps[0].setWeight",
                "spec.strategy.steps[1].setHeaderRoute"
            ]
        );
    }

    #[test]
    fn steps_with_two_actions_and_unreadable_pauses_are_refused() {
        let canary = json!({
            "trafficRouting": {"plugins": {"a/b": {}}},
            "steps": [
                {"setWeight": 10, "pause": {}},
                {"pause": {"duration": "ten minutes"}},
                {"pause": {"duration": "1h30m"}},
                {"pause": {"duration": -5}},
                {},
                {"setWeight": 20, "setCanaryScale": {"weight": 20}},
                {"pause": {}},
                {"experiment": {"templates": []}},
                {"analysis": {"templates": []}, "setWeight": 30}
            ]
        });
        let r = rollout(canary.clone());
        let manifest = json!({"spec": {"strategy": {"canary": canary}}});
        let other = OtherActions::of_manifest(&manifest);
        let found: Vec<String> = refusals_with(&r, &other, LATEST_CHECKED)
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            found,
            [
                format!("spec.strategy.steps[0]: Invalid value: setWeight+pause: {STEP_ONE_OF}"),
                "spec.strategy.steps[1].pause.duration: Invalid value: \"ten minutes\": Duration needs to be greater than 0".into(),
                "spec.strategy.steps[3].pause.duration: Invalid value: -5: Duration needs to be greater than 0".into(),
                format!("spec.strategy.steps[4]: Invalid value: (no action): {STEP_ONE_OF}"),
                format!("spec.strategy.steps[8]: Invalid value: setWeight+analysis: {STEP_ONE_OF}"),
            ]
        );
        // Without the manifest, an experiment step is not taken for empty.
        assert_eq!(refusals(&r, LATEST_CHECKED).len(), 3);
    }

    #[test]
    fn pause_durations_read_like_go() {
        for (text, seconds) in [
            ("10", Some(10)),
            ("10s", Some(10)),
            ("1h30m", Some(5400)),
            ("1.5h", Some(5400)),
            ("500ms", Some(0)),
            ("0", Some(0)),
            ("-1m", Some(-60)),
            ("10x", None),
            ("", None),
            ("m", None),
            ("1..5s", None),
        ] {
            assert_eq!(pause_seconds(&json!(text)), seconds, "{text:?}");
        }
        assert_eq!(pause_seconds(&json!(30)), Some(30));
        assert_eq!(pause_seconds(&json!(1.5)), None);
    }

    #[test]
    fn versions_parse_with_or_without_v_and_patch() {
        assert_eq!("v1.9".parse(), Ok(Version(1, 9, 0)));
        assert_eq!("1.10.2".parse(), Ok(Version(1, 10, 2)));
        assert!("v1.x".parse::<Version>().is_err());
        assert!("1.2.3.4".parse::<Version>().is_err());
    }
}
