//! The embedded per-core order journal (append-only, checksummed, group commit).
