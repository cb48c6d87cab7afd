//! Integration tests: the real server on port 0 with a temporary database.

mod accounts;
mod conventions;
mod destinations;
mod errors;
mod events;
mod idempotency;
mod pagination;
mod retention;
mod routing;
mod support;
mod validation;
