//! Feeds the input to `Parser` in chunks whose sizes come from the first bytes, drains
//! `next_request` after each push, and checks the outcome equals a whole-input parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcore_http_fuzz::parse_stream(data);
});
