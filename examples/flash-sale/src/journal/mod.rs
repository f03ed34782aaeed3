//! The per-core order journal: append-only, checksummed records, group commit through the
//! ring, replay with damage detection.
//!
//! Each core owns one file, `journal-<core>.log`, and is its only writer. An order is
//! acknowledged only after its record is on disk: [`Journal::append`] resolves once the record
//! has been written with `RWF_DSYNC` (or written and `fdatasync`ed). On start, [`replay`] reads the file once so the
//! service can rebuild its stock, sold counts and per-user records, and
//! [`Journal::open_replayed`] opens it for appends without reading it again
//! ([`Journal::open`] does both).
//!
//! # Format
//!
//! ```text
//! header   "RCJOURNL" | version: u32 LE (1) | reserved: u32 (0)        16 bytes
//! record   len: u32 LE | crc32: u32 LE (CRC-32 of the payload) | payload (len bytes)
//! record   ...
//! ```
//!
//! Payloads are opaque bytes (the service stores its order events in them); a payload has 1
//! to [`MAX_RECORD_LEN`] bytes. A zero length is never written, so zero bytes cannot read as
//! a record: after the last record the file may hold **prepared space**, zeros to its end,
//! which replay reads as the clean end (below). The format is unchanged from the first
//! version (still version 1): a file written before preallocation is simply one without that
//! tail, and a build from before reads a prepared file's zeros as a torn tail (it saves them
//! to a side file and cuts them), losing nothing.
//!
//! # Prepared space
//!
//! Appending at the end of a file makes every batch's sync commit a size change (and, on a
//! new block, an allocation) through the file system's own journal: on ext4 three device
//! writes (16 KiB) and two cache flushes per batch instead of one 4 KiB write and one flush
//! (`scripts/journal-syscalls.sh` on an ext4 loop device). So the journal writes zeros ahead
//! of its end, [`JournalOptions::prealloc`] bytes at a time (default [`DEFAULT_PREALLOC`],
//! 16 MiB), and syncs them once: a batch then overwrites blocks that are allocated and
//! written, and its sync has no metadata to commit. Real zeros, not `fallocate`: an
//! allocated-but-unwritten extent (what `fallocate` makes on ext4 and xfs) needs an extent
//! conversion committed at the first write into it, the cost being avoided.
//!
//! The first step is prepared when the journal opens. Later steps are prepared by a grower
//! task (background class) once less than half a step is left past the batch in flight and
//! the records queued behind it, so no append waits for it. A batch that would end past the
//! prepared space waits for a growth in flight, or, with none in flight, extends the file
//! itself (correct, only slower: counted in [`JournalStats::batches_past_prepared`]). A
//! failed growth (ENOSPC, EFBIG, EIO) stops the journal like a failed write: appends are
//! refused, [`Health::Stopped`] names it, and the grower retries with the probes' back-off
//! until a growth succeeds; the batches already queued still land in the space left. A cut
//! (after a failed batch) removes the prepared space, and the grower prepares it again once
//! the journal recovers. [`JournalOptions::prealloc`] `0` turns all of it off.
//!
//! # Group commit
//!
//! `append` encodes the record into the batch being gathered and returns a [`Commit`] future.
//! A flusher task on the same core (background class) takes the whole batch and makes it
//! durable with one data-sync write at the journal's end
//! ([`File::write_all_at_dsync`](ringcore_runtime::fs::File::write_all_at_dsync): one
//! `IORING_OP_WRITE` with `RWF_DSYNC`, one `pwritev2` on the epoll driver), then resolves
//! every `Commit` of that batch. [`SyncMode::WriteThenFdatasync`] makes it a write and a
//! `sync_data` (`IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`) instead: the device sees the
//! same writes and flushes either way, and the data-sync write saves one ring op (one
//! `io_uring_enter` per batch) or one syscall. Appends made while a batch is on its way to
//! the disk gather in the next one, so under load one sync covers many orders; an idle
//! journal writes a lone record at once. One batch is in flight at a time, so records land
//! in append order. Everything is per core (`Rc`, `RefCell`, `Cell`): no locks.
//!
//! **The batch window** ([`JournalOptions::commit_window`], default
//! [`DEFAULT_COMMIT_WINDOW`], 500 µs): while the journal is busy (the last batch held more than
//! one record, or records came in while it was on its way to the disk), the next batch
//! starts no earlier than one window after the last one started. A fast sync would otherwise
//! let batches follow each other closely, each holding a record or two, and every batch
//! costs a write, a sync, a kernel worker's wake-up and the core's own completion. With the
//! window, a core makes at most one sync per window under load, and an order waits at most
//! one window longer. An idle journal, or one client appending one record at a time (nothing
//! came in while its record was on its way), is not held back. PostgreSQL's
//! `commit_delay`/`commit_siblings` and MySQL's `binlog_group_commit_sync_delay` are the
//! same idea; the window changes when a batch starts, never what an acknowledgement means.
//!
//! **A failure never releases what may be durable.** If a write or a sync fails, the journal
//! stops: the batch's appends and every append queued behind it get an [`AppendError`], and
//! new appends are refused at once. A failed write can leave whole records of the batch in
//! the file (a short write, ENOSPC after some pages), and after a failed sync (or data-sync
//! write) they may be durable or not, so the flusher cuts the file back to the end of the last durable batch
//! (`ftruncate` + `fdatasync`). When that cut succeeds the batch is
//! [`NotWritten`](AppendError::NotWritten): its records are certainly not in the file and the
//! caller may give back what it reserved for them. When the cut fails too, the batch is
//! [`InDoubt`](AppendError::InDoubt): the caller must hold what it reserved (a replay after a
//! crash may find the records) until the [`Doubt`] resolves, which happens at the first
//! successful cut.
//!
//! **Recovery without a restart.** A stopped journal probes with back-off (10 ms doubling to
//! 1 s): cut back to the end, write and `fdatasync` one page of zeros past it, cut it off
//! again. Once a probe succeeds the journal takes appends again. [`Journal::on_health`]
//! tells an observer (the service's `/healthz`) each change. A failed write or sync (of a
//! data-sync write, the write itself) is handled the same way whichever [`SyncMode`]; a
//! failed growth is described under *Prepared space*.
//!
//! # Direct writes
//!
//! With [`SyncMode::Direct`] the journal opens its file a second time with `O_DIRECT` and
//! writes each batch through it as whole 4 KiB blocks, then `fdatasync`s: the bytes of the
//! journal's last, partial block (kept in memory, read back at open), the batch's records,
//! then zeros to the end of the last block, which read as prepared space. A buffered
//! data-sync write is handed by io_uring to a kernel worker thread (io-wq), which copies the
//! batch into the page cache, writes it back and waits for the device, for every batch;
//! a direct write over prepared, written blocks goes to the device from the submitting core
//! and completes like a socket read (a worker thread is still used where the write cannot
//! be issued without blocking: past the prepared space, or over pages still cached), and
//! only the `fdatasync` (the device's cache flush) goes to a worker. So the journal drops the
//! file's cached pages after its replay, its growths and its probes, and prepares space from
//! block boundaries. (Not `RWF_DSYNC` on the direct write: through io_uring, on a FUSE file
//! system, it reaches the file system as a flag on the write with no `fsync` after it, and
//! LazyFS, which ignores the flag, lost every acknowledged record at a power cut.)
//! Rewriting the acknowledged bytes of the last block in front of a batch writes them
//! unchanged: a write torn by a power cut leaves each sector
//! old or new, and both hold them (the same is true of a buffered write, which writes back
//! the whole page). The file format does not change. The last block is read back at open
//! with `O_DIRECT` too, which checks that the file system takes aligned direct I/O of 4 KiB
//! blocks; where it does not (`EINVAL`: no `O_DIRECT`, or a logical block larger than 4 KiB),
//! or where memory pages are larger than 4 KiB (a buffered growth could then share a cached
//! page with a direct write), the journal writes as [`SyncMode::DsyncWrite`] does, and
//! [`Journal::is_direct`] is false.
//!
//! # Replay rules
//!
//! Records are read in order from the header on; the valid prefix ends at the **first**
//! record that is cut short (the file ends inside it), has an invalid length (zero or over
//! the maximum), or fails its checksum ([`Damage`]). No record after that point is ever
//! replayed (a damaged length field means record boundaries after it cannot be trusted).
//! **Zero bytes from there to the end of the file are the clean end** (the prepared space):
//! no damage, nothing cut ([`Replay::file_len`] keeps them). Otherwise the bytes after the
//! damage are searched, offset by offset up to the last non-zero byte (never through the
//! zeros that end the file), for whole records with a valid length and a matching checksum,
//! which decides what the damage is:
//!
//! - **None follows: a torn tail**, the normal result of a crash during an append that was
//!   never acknowledged. [`replay`] saves the bytes from the damage on, without the zeros
//!   that end the file, to a side file (`journal-<core>.log.cut-<offset>`) and cuts the file
//!   at the damage (the prepared space goes with it; opening prepares it again), so new
//!   records follow the valid prefix.
//! - **Valid records follow: corruption.** Each batch is synced before the next is written,
//!   so records behind the damage were acknowledged after it: something damaged durable data.
//!   [`replay`] refuses with a [`Corruption`] error (the file, the offset, how many valid
//!   records follow) and leaves the file untouched. Only [`repair`] cuts it, saving the cut
//!   bytes to the side file and returning the whole records it drops ([`Replay::dropped`]), so
//!   the caller can list them. (One crash can also read as corruption: a power cut that made a
//!   later page of an unacknowledged batch durable but not an earlier one. Refusing is the
//!   safe side of that; repair then lists records that were never acknowledged.)
//!
//! A file that is not a journal, or of another version, is refused and left untouched.
//! Every record comes back with its file offset ([`Entry`]), so the caller can name the
//! record whose *content* is wrong.
//!
//! ```no_run
//! use flash_sale::journal::Journal;
//! use ringcore_runtime::{shard_id, Runtime};
//!
//! Runtime::builder().build()?.run(|| async {
//!     let (journal, replay) = Journal::open("/var/lib/flash-sale", shard_id()).await?;
//!     for record in replay.records() {
//!         // rebuild state from `record.payload` (found at `record.offset`)
//!     }
//!     journal.append(b"{\"order\":1}").await?; // durable from here on
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod commit;
mod format;
mod open;

pub use commit::{
    AppendError, Commit, Doubt, Health, Journal, JournalOptions, JournalStats, SyncMode,
    DEFAULT_COMMIT_WINDOW, DEFAULT_PREALLOC,
};
pub use format::{encode_file, Damage, HEADER_LEN, MAX_RECORD_LEN, RECORD_OVERHEAD};
pub use open::{file_name, load, repair, replay, Corruption, Entry, Loaded, Replay};
