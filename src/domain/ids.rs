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
fn mode_id(prefix: &str, mode: Mode, body: String) -> String {
    match mode {
        Mode::Test => format!("{prefix}_test_{body}"),
        Mode::Live => format!("{prefix}_{body}"),
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Width of the time part: 62^8 ms reach past the year 8000.
const TIME_CHARS: usize = 8;

/// A body of `len` characters that starts with `now_ms` in fixed-width base 62 (ASCII order is
/// time order) and continues at random. Ids made one after another sort together, so inserting
/// them touches the right edge of an index instead of a random page (Stripe's v2 event ids are
/// time-prefixed the same way); the random part keeps them unguessable.
fn timed_body(now_ms: i64, len: usize) -> String {
    let mut t = now_ms.max(0) as u64;
    let mut time = [b'0'; TIME_CHARS];
    for c in time.iter_mut().rev() {
        *c = BASE62[(t % 62) as usize];
        t /= 62;
    }
    let mut body = String::with_capacity(len);
    body.extend(time.iter().map(|&b| char::from(b)));
    body.push_str(&random_body(len.saturating_sub(TIME_CHARS)));
    body
}

pub fn event_destination(mode: Mode) -> String {
    mode_id("ed", mode, random_body(44))
}

/// An event id made at `now_ms` (time-prefixed, see `timed_body`).
pub fn event(mode: Mode, now_ms: i64) -> String {
    mode_id("evt", mode, timed_body(now_ms, 46))
}

/// A delivery id made at `now_ms` (time-prefixed, see `timed_body`).
pub fn delivery(now_ms: i64) -> String {
    format!("dlv_{}", timed_body(now_ms, 24))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_ids_sort_by_time_and_keep_their_shape() {
        let a = event(Mode::Test, 1_800_000_000_000);
        let b = event(Mode::Test, 1_800_000_000_001);
        let c = event(Mode::Live, 1_900_000_000_000);
        assert!(a < b, "{a} < {b}");
        assert!(
            a.starts_with("evt_test_") && a.len() == "evt_test_".len() + 46,
            "{a}"
        );
        assert!(
            c.starts_with("evt_") && !c.contains("_test_") && c.len() == 4 + 46,
            "{c}"
        );
        assert!(delivery(5) < delivery(62), "fixed width keeps ASCII order");
        assert_ne!(
            event(Mode::Test, 7),
            event(Mode::Test, 7),
            "random after the time part"
        );
        assert!(a["evt_test_".len()..]
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric()));
    }
}
