//! One test file per trust boundary of DESIGN §6b; `SECURITY.md` maps each
//! boundary to the tests here. Every test performs the attack against a
//! real gateway and checks that it fails.
//!
//! One test binary for all of them: each binary links the whole gateway, and
//! CI runs them on both backends.

mod admin_plane;
mod lifecycle_scope;
mod limits;
mod oauth_binding;
mod replayed_webhooks;
mod shared_shop;
mod slow_clients;
