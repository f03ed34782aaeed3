//! Parses the input as the chunked body of a POST, checks split/whole agreement and compares
//! with a strict reference decoder of RFC 9112 section 7.1.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcore_http_fuzz::chunked_body(data);
});
