//! Traps on every webhook, so the registry's smoke call must refuse it.

use ionflux_guest::{Event, Result, Webhook};

pub fn transform(_input: Webhook) -> Result<Vec<Event>> {
    panic!("broken on purpose")
}

ionflux_guest::export_transform!(transform);
