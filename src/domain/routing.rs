//! Which events go to which destination (reference §4.1).

use super::destination::{EventDestination, EventPayload, Status, Target};
use super::event::{Event, Family, PING_TYPE};

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

/// Why an event cannot be resent to a destination (of the same account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResendRefusal {
    #[error("The event destination is disabled; enable it to send events to it.")]
    Disabled,
    #[error("eventd sends only to webhook_endpoint destinations.")]
    NotWebhook,
    #[error("This ping event belongs to another event destination.")]
    OtherDestinationsPing,
    #[error("The event destination does not receive events of this type or payload kind.")]
    NotRouted,
}

/// A resend goes where the event would have been delivered: an enabled webhook destination of
/// the event's own account that takes its type and payload kind (a ping: its own destination).
pub fn resendable(dest: &EventDestination, event: &Event) -> Result<(), ResendRefusal> {
    if dest.status != Status::Enabled {
        return Err(ResendRefusal::Disabled);
    }
    if !matches!(dest.target, Target::WebhookEndpoint { .. }) {
        return Err(ResendRefusal::NotWebhook);
    }
    if event.type_ == PING_TYPE {
        return match event.related_object_id() == Some(dest.id.as_str()) {
            true => Ok(()),
            false => Err(ResendRefusal::OtherDestinationsPing),
        };
    }
    match matches(dest, event, Origin::OwnAccount) {
        true => Ok(()),
        false => Err(ResendRefusal::NotRouted),
    }
}
