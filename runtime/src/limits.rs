//! Process limits a server meets first: the number of open files.

use std::io;

use crate::sys;

/// Raises the soft `RLIMIT_NOFILE` (open files) to the hard limit, as nginx's
/// `worker_rlimit_nofile` or Go's runtime do: the common soft default of 1024 is reached long
/// before a server's connection limit. Returns the soft limit now in force (`u64::MAX` when
/// unlimited). Lowering is never done; a failure leaves the limit as it was.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (mut soft, hard) = sys::nofile_limit()?;
    if soft < hard {
        sys::set_nofile_limit(hard, hard)?;
        soft = hard;
    }
    Ok(if soft == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        soft
    })
}
