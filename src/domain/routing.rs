//! Which events go to which destination (reference §4.1).

use super::destination::{EventDestination, EventPayload, Status};
use super::event::{Event, Family};

/// How the event's account relates to the destination's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The event happened in the destination's own account.
    OwnAccount,
    /// The event happened in an account connected to the destination's owner.
    ConnectedAccount,
}

pub fn covers(events_from: &[String], origin: Origin) -> bool {
    events_from.iter().any(|scope| match origin {
        Origin::OwnAccount => scope == "@self" || scope == "self",
        Origin::ConnectedAccount => scope == "@accounts" || scope == "other_accounts",
    })
}

pub fn type_enabled(enabled_events: &[String], event_type: &str) -> bool {
    enabled_events.iter().any(|t| t == "*" || t == event_type)
}

/// True when `event` should be delivered to `dest` (ping events are routed by the ping endpoint instead).
pub fn matches(dest: &EventDestination, event: &Event, origin: Origin) -> bool {
    let family_ok = match dest.event_payload {
        EventPayload::Thin => event.family == Family::Thin,
        EventPayload::Snapshot => event.family == Family::Snapshot,
    };
    dest.status == Status::Enabled
        && dest.mode == event.mode
        && family_ok
        && covers(&dest.events_from, origin)
        && type_enabled(&dest.enabled_events, &event.type_)
}
