//! Integration tests: the real server on port 0 with a temporary database.

mod accounts;
mod conventions;
mod crash;
mod delivery_isolation;
mod delivery_log;
mod delivery_retries;
mod delivery_signing;
mod delivery_support;
mod delivery_targets;
mod destinations;
mod errors;
mod events;
mod idempotency;
mod pagination;
mod receiver;
mod retention;
mod routing;
mod support;
mod validation;
