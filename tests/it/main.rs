//! Integration tests: the real server on port 0 with a temporary database (SQLite, or a PostgreSQL
//! schema of its own when `EVENTD_TEST_DATABASE_URL` is set; see `pg.rs`).

mod accounts;
mod bench_smoke;
mod conventions;
mod crash;
mod delivery_isolation;
mod delivery_log;
mod delivery_outcomes;
mod delivery_retries;
mod delivery_signing;
mod delivery_support;
mod delivery_targets;
mod destinations;
mod errors;
mod events;
mod idempotency;
mod multi_node;
mod pagination;
mod pg;
mod pg_maintenance;
mod pg_restart;
mod process;
mod receiver;
mod retention;
mod routing;
mod store_contract;
mod support;
mod validation;
