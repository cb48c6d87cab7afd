//! Prefixed, random, URL-safe ids in Stripe's shapes (`ed_test_…`, `evt_…`, `req_…`, `whsec_…`).

use rand::{Rng, RngCore};

use super::Mode;

/// `len` characters drawn uniformly from the 62 of `BASE62`, from the thread's CSPRNG: random
/// bytes in blocks, each byte below 248 (4 × 62) mapped to a character (the rest are skipped).
fn random_body(len: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut body = String::with_capacity(len);
    let mut bytes = [0u8; 64];
    while body.len() < len {
        rng.fill_bytes(&mut bytes);
        for &b in bytes.iter().filter(|&&b| b < 248) {
            if body.len() == len {
                break;
            }
            body.push(char::from(BASE62[usize::from(b % 62)]));
        }
    }
    body
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

    #[test]
    fn random_bodies_use_all_62_characters_evenly() {
        let body = random_body(62_000);
        assert_eq!(body.len(), 62_000);
        let mut counts = std::collections::HashMap::new();
        for ch in body.chars() {
            assert!(ch.is_ascii_alphanumeric(), "{ch:?}");
            *counts.entry(ch).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 62, "every character appears");
        // 1,000 expected each; a uniform draw stays far inside these bounds.
        assert!(
            counts.values().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(random_body(0), "");
        assert_eq!(random_body(100).len(), 100);
    }
}
