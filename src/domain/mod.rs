//! Domain types: ids, accounts, event destinations, events and routing rules. Pure, no I/O.

pub mod account;
pub mod delivery;
pub mod destination;
pub mod event;
pub mod ids;
pub mod retry;
pub mod routing;

pub use account::{Mode, Scope};
