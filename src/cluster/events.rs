//! Events the plugin reports on a Rollout.

/// The component the plugin's Events name as their source
/// (`source.component`, `reportingComponent`).
pub const REPORTING_COMPONENT: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One change the plugin made (or held back), reported on the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutEvent {
    pub namespace: String,
    pub rollout: String,
    /// The Rollout's uid, when the controller sent it.
    pub uid: String,
    pub event_type: EventType,
    /// CamelCase, in the style of the controller's own reasons.
    pub reason: &'static str,
    /// The call that made the change (`SetWeight`, `UpdateHash`, …).
    pub action: &'static str,
    pub message: String,
}
