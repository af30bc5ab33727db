//! The transforms compiled into the binary by build.rs, so that one file
//! serves every topic with no route.

include!(concat!(env!("OUT_DIR"), "/builtin_transforms.rs"));

pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_COMPONENTS.iter().map(|(name, _)| *name)
}

/// `builtin:NAME` of every built-in, for messages that list them.
pub fn references() -> Vec<String> {
    names()
        .map(|n| format!("{}{n}", crate::pipeline::route::BUILTIN_PREFIX))
        .collect()
}

/// The component bytes of a built-in transform.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTIN_COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use crate::pipeline::registry::smoke;
    use crate::pipeline::transform::{Runtime, RuntimeConfig, World};

    /// What the registry asks of an upload, asked of every built-in: it
    /// compiles, implements the latest world and survives the smoke call
    /// (a sample order, which the built-ins of every platform must not trap
    /// on). Which built-ins there are, and what they name: the test
    /// `host/tests/default_transforms.rs`.
    #[test]
    fn every_builtin_loads_and_passes_the_smoke_call() {
        let runtime = Runtime::new(RuntimeConfig {
            pool_instances: 2,
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        assert!(super::names().count() >= 2);
        for (name, bytes) in super::BUILTIN_COMPONENTS {
            let t = runtime
                .load(name, bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.world(), World::LATEST, "{name}");
            smoke(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
