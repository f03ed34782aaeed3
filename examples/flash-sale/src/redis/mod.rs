//! The Redis store: stock, per-user records and orders in one Redis server, so that several
//! service instances behind a load balancer share one sale (`--store redis://host:port`).
//!
//! - [`resp`]: RESP2 without I/O (command encoder, incremental reply decoder).
//! - [`client`]: [`Client`], a minimal async client on the runtime's `TcpStream`; one
//!   connection per core, requests queued to one connection task and pipelined.

pub mod client;
pub mod resp;

pub use client::{parse_url, Client, RedisError};
pub use resp::Value;
