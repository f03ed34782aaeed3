//! TCP on the ring: per-core `SO_REUSEPORT` listeners, streams with owned buffers.
//!
//! Every core binds the same address ([`TcpListener::bind`] sets `SO_REUSEPORT`), and the
//! kernel spreads new connections over the cores' listeners, so a connection lives its whole
//! life on the core that accepted it. Reads come from a multishot receive on the core's
//! provided buffer ring where the kernel has one ([`TcpStream::recv`] hands out the ring
//! buffer itself); writes take owned buffers and hand them back.

mod listener;
mod stream;

pub use crate::driver::{RecvBuf, FALLBACK_RECV_SIZE};
pub use listener::{TcpListener, DEFAULT_BACKLOG};
pub use stream::{SendLane, TcpStream};
