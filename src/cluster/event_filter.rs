//! The filter that keeps the plugin's Events from flooding the API server.
//!
//! It works as client-go's event recorder does for the controller:
//! an identical event (same Rollout, reason and message) seen again within
//! [`REPEAT_WINDOW`] raises the count of the Event already written instead
//! of writing a new one, and each Rollout has a token bucket
//! ([`BURST`] events, then one per [`REFILL`]) so that a Rollout flapping
//! between states cannot fill etcd with Events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[cfg(test)]
use super::events::EventType;
use super::events::RolloutEvent;

/// Events per Rollout the bucket allows at once.
const BURST: f64 = 25.0;
/// One more event per Rollout after each such interval.
const REFILL: Duration = Duration::from_secs(300);
/// An identical event within this window counts as a repeat.
const REPEAT_WINDOW: Duration = Duration::from_secs(600);
/// Bound of the remembered events and buckets (oldest forgotten first).
const MAX_REMEMBERED: usize = 4096;

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write a new Event with this name.
    Create { name: String },
    /// Raise the count of the Event of this name (written earlier) to `count`.
    Repeat { name: String, count: i32 },
    /// Over the Rollout's budget: not written.
    Drop,
}

type RepeatKey = (String, String, &'static str, String);

struct Seen {
    name: String,
    count: i32,
    at: Instant,
}

#[derive(Default)]
pub(crate) struct EventFilter {
    buckets: HashMap<(String, String), (f64, Instant)>,
    seen: HashMap<RepeatKey, Seen>,
    serial: u64,
}

impl EventFilter {
    pub(crate) fn decide(&mut self, event: &RolloutEvent, now: Instant) -> Decision {
        let rollout = (event.namespace.clone(), event.rollout.clone());
        forget_oldest(&mut self.buckets, |(_, at)| *at);
        let (tokens, last) = self.buckets.entry(rollout).or_insert((BURST, now));
        let refilled =
            (*tokens + now.duration_since(*last).as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        if refilled < 1.0 {
            *tokens = refilled;
            *last = now;
            return Decision::Drop;
        }
        *tokens = refilled - 1.0;
        *last = now;

        let key = (
            event.namespace.clone(),
            event.rollout.clone(),
            event.reason,
            event.message.clone(),
        );
        self.seen
            .retain(|_, seen| now.duration_since(seen.at) < REPEAT_WINDOW);
        forget_oldest(&mut self.seen, |seen| seen.at);
        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count = seen.count.saturating_add(1);
            seen.at = now;
            return Decision::Repeat {
                name: seen.name.clone(),
                count: seen.count,
            };
        }
        self.serial += 1;
        let name = event_name(&event.rollout, self.serial);
        self.seen.insert(
            key,
            Seen {
                name: name.clone(),
                count: 1,
                at: now,
            },
        );
        Decision::Create { name }
    }
}

/// `<rollout>.<hex>`, unique per process start and event, as client-go
/// names Events (`<object>.<unix nanos in hex>`).
fn event_name(rollout: &str, serial: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!("{rollout}.{:x}", nanos.wrapping_add(serial))
}

fn forget_oldest<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    at: impl Fn(&V) -> Instant,
) {
    if map.len() < MAX_REMEMBERED {
        return;
    }
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, v)| at(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rollout: &str, message: &str) -> RolloutEvent {
        RolloutEvent {
            namespace: "ns".into(),
            rollout: rollout.into(),
            uid: String::new(),
            event_type: EventType::Normal,
            reason: "WeightUpdated",
            action: "SetWeight",
            message: message.into(),
        }
    }

    #[test]
    fn an_identical_event_is_counted_on_the_first_one() {
        let mut filter = EventFilter::default();
        let now = Instant::now();
        let Decision::Create { name } = filter.decide(&event("r", "a"), now) else {
            panic!("the first event is written")
        };
        assert!(name.starts_with("r."), "{name}");
        assert_eq!(
            filter.decide(&event("r", "a"), now + Duration::from_secs(1)),
            Decision::Repeat {
                name: name.clone(),
                count: 2
            }
        );
        assert!(matches!(
            filter.decide(&event("r", "b"), now),
            Decision::Create { .. }
        ));
        // After the window an identical event is a new one.
        assert!(matches!(
            filter.decide(
                &event("r", "a"),
                now + REPEAT_WINDOW + Duration::from_secs(2)
            ),
            Decision::Create { .. }
        ));
    }

    #[test]
    fn each_rollout_has_a_budget_that_refills() {
        let mut filter = EventFilter::default();
        let now = Instant::now();
        for i in 0..25 {
            assert_ne!(
                filter.decide(&event("r", &i.to_string()), now),
                Decision::Drop
            );
        }
        assert_eq!(filter.decide(&event("r", "over"), now), Decision::Drop);
        // Another Rollout has its own budget.
        assert_ne!(filter.decide(&event("other", "x"), now), Decision::Drop);
        assert_ne!(
            filter.decide(&event("r", "later"), now + REFILL),
            Decision::Drop
        );
        assert_eq!(
            filter.decide(&event("r", "again"), now + REFILL),
            Decision::Drop
        );
    }
}
