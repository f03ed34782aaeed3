//! The Redis store: a minimal RESP client on the runtime's TCP streams.
