//! eventd: self-hosted event delivery, wire-compatible with Stripe API v2 Event Destinations and Events.
//!
//! See ARCHITECTURE.md for the bird's-eye view.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod store;
