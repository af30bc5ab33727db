//! The transforms compiled into the binary by build.rs, so that one file
//! serves every topic with no route.

include!(concat!(env!("OUT_DIR"), "/builtin_transforms.rs"));

pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_COMPONENTS.iter().map(|(name, _)| *name)
}

/// The component bytes of a built-in transform.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTIN_COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
