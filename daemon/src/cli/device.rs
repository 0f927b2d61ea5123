//! `vigil device`: the device id and the public half of the device signing key.

use std::path::Path;

use super::{load_config, open_keyring, Failure};
use crate::db::audit;

pub fn run(config_path: &Path) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let kr = open_keyring(&config, &audit::cli_actor())?;
    let key = crate::evidence::device::DeviceKey::load_or_create(&kr, "vigil device")
        .map_err(|e| Failure::Runtime(e.into()))?;
    let id = key.identity();
    println!("device id:   {}", id.device_id);
    println!("fingerprint: {}", id.fingerprint());
    print!("{}", id.public_key_pem());
    Ok(())
}
