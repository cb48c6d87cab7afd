//! Accounts, modes and the scope (account + mode) every object belongs to.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn livemode(self) -> bool {
        self == Mode::Live
    }

    pub fn from_livemode(livemode: bool) -> Self {
        if livemode {
            Mode::Live
        } else {
            Mode::Test
        }
    }
}

/// The account and mode a request acts in, resolved from the key and `Stripe-Context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account_id: String,
    pub mode: Mode,
    /// The account path from the root account (`acct_a/acct_b`), `None` for a root account.
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub parent_id: Option<String>,
}

/// What an API key resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub account_id: String,
    pub mode: Mode,
}
