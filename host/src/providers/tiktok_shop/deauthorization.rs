//! `seller_deauthorization`: the seller revoked the app, and TikTok revoked
//! its tokens. Verified, stored and acknowledged like any webhook, it
//! becomes its event through the transform path; once that event is
//! published, the connections it speaks for are disconnected and lose their
//! tokens and registrations (`providers::lifecycle::Disconnect`).

use crate::providers::lifecycle::Disconnect;

use super::install::ID;

pub const DEAUTHORIZATION: &str = "seller_deauthorization";

/// What a deauthorisation does.
pub const EFFECT: Disconnect = Disconnect {
    provider: ID,
    topic: DEAUTHORIZATION,
};
