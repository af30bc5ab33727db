//! `man`: the manual pages, made from the command line's own definition.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli_command;

pub(crate) fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = cli_command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}
