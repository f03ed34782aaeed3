//! The per-core order journal: append-only, checksummed records, group commit through the
//! ring, replay with damage detection.
//!
//! Each core owns one file, `journal-<core>.log`, and is its only writer. An order is
//! acknowledged only after its record is on disk: [`Journal::append`] resolves once the record
//! has been written and `fdatasync`ed. On start, [`replay`] reads the file once so the
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
//! to [`MAX_RECORD_LEN`] bytes. A zero length is never written, so zero-filled blocks (what a
//! crash can leave past the last synced write on some file systems) cannot read as a record.
//!
//! # Group commit
//!
//! `append` encodes the record into the batch being gathered and returns a [`Commit`] future.
//! A flusher task on the same core (background class) takes the whole batch, writes it with
//! one positioned `write_all_at` at the journal's end and makes it durable with one
//! `sync_data` (`IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`), then resolves every
//! `Commit` of that batch. Appends made while a batch is on its way to the disk gather in the
//! next one, so under load one `fdatasync` covers many orders; an idle journal writes a lone
//! record at once. One batch is in flight at a time, so records land in append order.
//! Everything is per core (`Rc`, `RefCell`, `Cell`): no locks.
//!
//! **A failure never releases what may be durable.** If a write or a sync fails, the journal
//! stops: the batch's appends and every append queued behind it get an [`AppendError`], and
//! new appends are refused at once. A failed write can leave whole records of the batch in
//! the file (a short write, ENOSPC after some pages), and after a failed `fdatasync` they may
//! be durable or not, so the flusher cuts the file back to the end of the last durable batch
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
//! tells an observer (the service's `/healthz`) each change.
//!
//! # Replay rules
//!
//! Records are read in order from the header on; the valid prefix ends at the **first**
//! record that is cut short (the file ends inside it), has an invalid length (zero or over
//! the maximum), or fails its checksum ([`Damage`]). No record after that point is ever
//! replayed (a damaged length field means record boundaries after it cannot be trusted). The
//! bytes after the damage are then searched, offset by offset, for whole records with a valid
//! length and a matching checksum, which decides what the damage is:
//!
//! - **None follows: a torn tail**, the normal result of a crash during an append that was
//!   never acknowledged (or zero-filled blocks past the last synced write). [`replay`] saves
//!   the bytes from the damage on to a side file (`journal-<core>.log.cut-<offset>`) and cuts
//!   them off the journal, so new records follow the valid prefix.
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

pub use commit::{AppendError, Commit, Doubt, Health, Journal, JournalStats};
pub use format::{encode_file, Damage, HEADER_LEN, MAX_RECORD_LEN, RECORD_OVERHEAD};
pub use open::{file_name, load, repair, replay, Corruption, Entry, Loaded, Replay};
