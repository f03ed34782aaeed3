//! The Redis store: stock, per-user records and orders in one Redis server, so that several
//! service instances behind a load balancer share one sale (`--store redis://host:port`).
//!
//! - [`resp`]: RESP2 without I/O (command encoder, incremental reply decoder).

pub mod resp;

pub use resp::Value;
