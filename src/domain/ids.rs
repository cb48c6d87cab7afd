//! Prefixed, random, URL-safe ids in Stripe's shapes (`ed_test_…`, `evt_…`, `req_…`, `whsec_…`).

use rand::distributions::Alphanumeric;
use rand::Rng;

use super::Mode;

fn random_body(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `<prefix>_[test_]<body>`: the `test_` infix marks test-mode objects.
fn mode_id(prefix: &str, mode: Mode, len: usize) -> String {
    match mode {
        Mode::Test => format!("{prefix}_test_{}", random_body(len)),
        Mode::Live => format!("{prefix}_{}", random_body(len)),
    }
}

pub fn event_destination(mode: Mode) -> String {
    mode_id("ed", mode, 44)
}

pub fn event(mode: Mode) -> String {
    mode_id("evt", mode, 46)
}

pub fn delivery() -> String {
    format!("dlv_{}", random_body(24))
}

pub fn request() -> String {
    format!("req_v2{}", random_body(15))
}

pub fn signing_secret() -> String {
    format!("whsec_{}", random_body(32))
}

pub fn account() -> String {
    format!("acct_{}", random_body(16))
}

pub fn secret_key(mode: Mode) -> String {
    match mode {
        Mode::Test => format!("sk_test_{}", random_body(40)),
        Mode::Live => format!("sk_live_{}", random_body(40)),
    }
}

/// A v4-UUID-shaped idempotency key, used when a client sends none (Stripe generates one itself).
pub fn generated_idempotency_key() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
