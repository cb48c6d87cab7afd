//! Delivery: claim due deliveries with a lease, send them signed, record the outcome.

pub mod address;
pub mod metrics;
pub mod sender;
pub mod signature;
pub mod worker;

pub use metrics::Metrics;
pub use worker::Worker;
