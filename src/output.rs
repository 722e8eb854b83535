//! The scripting commands `get` and `export`.

use crate::cli;
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::signals::Signals;

pub fn get(_args: &cli::GetArgs, _environment: Environment, _signals: &Signals) -> Result<u8> {
    Err(Error::usage("get is not implemented yet"))
}

pub fn export(_args: &cli::ExportArgs, _environment: Environment, _signals: &Signals) -> Result<u8> {
    Err(Error::usage("export is not implemented yet"))
}
