//! The generic pipeline: what every webhook goes through, whichever
//! platform sent it. Nothing here names a platform; platforms plug in
//! through [`provider::Provider`].

pub mod provider;
