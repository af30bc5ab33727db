//! The generic pipeline: what every webhook goes through, whichever
//! platform sent it. Nothing here names a platform; platforms plug in
//! through [`provider::Provider`].

pub mod builtin;
pub mod ceilings;
pub mod connection;
pub mod dispatch;
pub mod event;
pub mod inbox;
pub mod integration;
pub mod provider;
pub mod prune;
pub mod publish;
pub mod registration;
pub mod registry;
pub mod route;
pub mod shadow;
pub mod transform;
