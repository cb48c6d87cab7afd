//! Domain types: ids, accounts, event destinations, events and routing rules. Pure, no I/O.

pub mod account;
pub mod destination;
pub mod event;
pub mod ids;
pub mod routing;

pub use account::{Mode, Scope};
