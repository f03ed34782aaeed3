//! Micro-benchmarks (criterion): placeholder replaced below.
fn main() {}
