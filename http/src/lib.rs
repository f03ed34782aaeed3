//! `ringcore-http`: the HTTP/1.1 server, router and governance middleware of ringcore.
//!
//! This crate is a skeleton: the server is built in a later step (issue 3) on the public API of
//! [`ringcore_runtime`] only. It never names io_uring.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use ringcore_runtime as runtime;
