//! The configuration file is admin input: any text must parse or be refused with an error,
//! never panic.
#![no_main]

use corosync_eip::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Config::parse(text, std::path::Path::new("/etc/corosync-eip/corosync-eip.toml"));
    }
});
