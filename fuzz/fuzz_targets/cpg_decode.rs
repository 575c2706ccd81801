//! Every CPG message another node (or anything that joined the group) sends goes through
//! `decode`: it must return an error, never panic, and what it accepts must encode back to a
//! message that decodes to the same thing.
#![no_main]

use corosync_eip::core::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(body) = decode(bytes) {
        let again = decode(&encode(&body)).expect("an accepted message re-encodes to a valid one");
        assert_eq!(format!("{body:?}"), format!("{again:?}"));
    }
});
