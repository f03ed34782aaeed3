//! What the I/O adapter (`compat::Compat`) costs: N MiB sent over one loopback TCP connection
//! between two tasks on one core, read and written three ways (criterion, `harness = false`,
//! feature `tokio-io`).
//!
//! - `native_recv`: the writer `write_all`s owned 64 KiB buffers, the reader takes the
//!   received chunks with `recv()` (on io_uring, provided-ring buffers: no copy in user space).
//!   What ringcore's own HTTP code does.
//! - `native_read`: the same writer; the reader `read`s into its own 64 KiB buffer (one copy
//!   of each received byte).
//! - `compat`: both ends wrapped in `Compat` and driven through tokio's `AsyncWrite` /
//!   `AsyncRead` (`poll_write` of 64 KiB slices, then `poll_flush`; `poll_read` into a 64 KiB
//!   slice): one copy of each byte on each side plus one boxed send future per write, as a
//!   protocol crate (tokio-postgres, hyper, a codec) pays.
//!
//! Each sample builds a one-core runtime, connects the pair, then times `iters` transfers
//! (the writer a task, the reader the main future), so start-up and the connect are outside
//! the timed region. Throughput is in bytes; the ratio `compat / native_recv` of the times is
//! the adapter's cost for bulk data. `scripts/bench-compat.sh` runs it pinned to one core and
//! writes the table in docs/bench-compat.md.
//!
//! ```text
//! cargo bench -p ringcore-runtime --features tokio-io --bench compat
//! ```

use std::future::poll_fn;
use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use ringcore_runtime::compat::Compat;
use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::{spawn_local, Runtime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes per write and per read buffer.
const CHUNK: usize = 64 * 1024;
/// Sizes of one transfer.
const SIZES_MIB: [usize; 2] = [1, 16];

#[derive(Clone, Copy, Debug)]
enum Kind {
    NativeRecv,
    NativeRead,
    Compat,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::NativeRecv => "native_recv",
            Kind::NativeRead => "native_read",
            Kind::Compat => "compat",
        }
    }
}

/// A connected pair on this core: (writer side, reader side).
async fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let connect = spawn_local(async move { TcpStream::connect(addr).await });
    let (server, _) = listener.accept().await?;
    let client = connect
        .await
        .map_err(|e| io::Error::other(format!("connect task: {e:?}")))??;
    Ok((client, server))
}

async fn native_write(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    let mut buf = vec![0x5a_u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        buf.truncate(n);
        let (r, b) = stream.write_all(buf).await;
        r?;
        buf = b;
        left -= n;
    }
    Ok(())
}

async fn native_recv(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    let mut got = 0;
    while got < bytes {
        let chunk = stream.recv().await?;
        if chunk.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += black_box(&chunk[..]).len();
    }
    Ok(())
}

async fn native_read(stream: &TcpStream, bytes: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut got = 0;
    while got < bytes {
        buf.clear();
        let (r, b) = stream.read(buf).await;
        buf = b;
        match r? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += black_box(&buf[..n]).len(),
        }
    }
    Ok(buf)
}

async fn compat_write(c: &mut Compat, bytes: usize, data: &[u8]) -> io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let want = left.min(data.len());
        let n = poll_fn(|cx| Pin::new(&mut *c).poll_write(cx, &data[..want])).await?;
        left -= n;
    }
    poll_fn(|cx| Pin::new(&mut *c).poll_flush(cx)).await
}

async fn compat_read(c: &mut Compat, bytes: usize, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < bytes {
        let n = poll_fn(|cx| {
            let mut rb = ReadBuf::new(buf);
            ready!(Pin::new(&mut *c).poll_read(cx, &mut rb))?;
            Poll::Ready(Ok::<_, io::Error>(black_box(rb.filled()).len()))
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

/// One sample: a fresh one-core runtime, a connected pair, `iters` timed transfers.
fn sample(kind: Kind, bytes: usize, iters: u64) -> Duration {
    let rt = Runtime::builder()
        .core_count(1)
        .handle_signals(false)
        .build()
        .expect("build runtime");
    let mut out = rt
        .run(move || async move {
            let (w, r) = pair().await.expect("loopback pair");
            let start = Instant::now();
            match kind {
                Kind::NativeRecv | Kind::NativeRead => {
                    let mut w = Some(w);
                    let mut buf = vec![0u8; CHUNK];
                    for _ in 0..iters {
                        let Some(ws) = w.take() else {
                            unreachable!("writer returned")
                        };
                        let writer = spawn_local(async move {
                            native_write(&ws, bytes).await.expect("write");
                            ws
                        });
                        if let Kind::NativeRecv = kind {
                            native_recv(&r, bytes).await.expect("recv");
                        } else {
                            buf = native_read(&r, bytes, buf).await.expect("read");
                        }
                        w = Some(writer.await.expect("writer task"));
                    }
                }
                Kind::Compat => {
                    let mut w = Some(Compat::new(w));
                    let mut r = Compat::new(r);
                    let mut buf = vec![0u8; CHUNK];
                    for _ in 0..iters {
                        let Some(mut wc) = w.take() else {
                            unreachable!("writer returned")
                        };
                        let writer = spawn_local(async move {
                            let chunk = vec![0x5a_u8; CHUNK];
                            compat_write(&mut wc, bytes, &chunk).await.expect("write");
                            wc
                        });
                        compat_read(&mut r, bytes, &mut buf).await.expect("read");
                        w = Some(writer.await.expect("writer task"));
                    }
                }
            }
            start.elapsed()
        })
        .expect("run runtime");
    out.swap_remove(0).expect("shard 0 produced no output")
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback_transfer");
    for mib in SIZES_MIB {
        let bytes = mib << 20;
        g.throughput(Throughput::Bytes(bytes as u64));
        for kind in [Kind::NativeRecv, Kind::NativeRead, Kind::Compat] {
            g.bench_with_input(
                BenchmarkId::new(kind.name(), format!("{mib}MiB")),
                &bytes,
                |b, &bytes| b.iter_custom(|iters| sample(kind, bytes, iters)),
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = transfer
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
