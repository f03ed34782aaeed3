//! The flash-sale service as a library: the binary (`src/main.rs`) and the tests use it.

pub mod datadir;
pub mod demo;
pub mod journal;
pub mod redis;
pub mod service;
