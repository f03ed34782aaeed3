//! TLS termination with rustls, on the ring's owned-buffer I/O.
//!
//! [`TlsConfig`] is built from PEM files (a certificate chain and its private key), advertises
//! ALPN `h2` then `http/1.1` (`http/1.1` only on a server without HTTP/2), resumes sessions with
//! rustls' defaults (an in-memory session cache of 256 entries for session IDs and stateful
//! TLS 1.3 tickets, shared by every core, so a client resumes whichever core the kernel hands
//! it to), and bounds each handshake by [`TlsConfig::handshake_timeout`].
//!
//! [`TlsConfig::reload`] re-reads the files and swaps the configuration without a restart:
//! each core picks the new one up at its next accept (one relaxed atomic load per accept);
//! connections already open keep the certificate they were made with.
//!
//! A connection is a `rustls::ServerConnection` driven directly with the stream's owned
//! buffers (no tokio adapter): a received ring buffer is fed to rustls and decrypted bytes
//! are handed to the HTTP parser; a response is encrypted into one reused `Vec` and sent.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io::{self, BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use ringcore_runtime::net::{RecvBuf, TcpStream};
use ringcore_runtime::IoBuf;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{Connection, ServerConfig, ServerConnection};

use crate::conn::Transport;
use crate::metrics::Counter;

/// Default bound on a TLS handshake, from accept to the last handshake byte sent.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The metric counting handshakes that did not complete, by `reason`.
const TLS_FAILURES: &str = "ringcore_http_tls_handshake_failures_total";

/// The most decrypted bytes handed to the HTTP parser at once.
const PLAINTEXT_CHUNK: usize = 16 * 1024;

/// Server TLS settings: certificate chain and key from PEM files, reloadable.
///
/// Cloning is cheap and every clone shares the configuration: keep one to call
/// [`reload`](Self::reload) while the server runs.
#[derive(Clone)]
pub struct TlsConfig {
    shared: Arc<Shared>,
    handshake_timeout: Duration,
}

struct Shared {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Mutex<Arc<ServerConfig>>,
    /// Bumped by every successful reload; cores compare it with the one they hold.
    generation: AtomicU64,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.shared.cert_path)
            .field("key", &self.shared.key_path)
            .field("generation", &self.shared.generation.load(Ordering::Relaxed))
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1). Errors name the file and what is wrong with it.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        let (cert_path, key_path) = (cert_chain.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        let config = load(&cert_path, &key_path)?;
        Ok(TlsConfig {
            shared: Arc::new(Shared {
                cert_path,
                key_path,
                current: Mutex::new(config),
                generation: AtomicU64::new(0),
            }),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// How long a handshake may take before the connection is closed (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]). A client that connects and sends nothing is closed then.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Re-reads the certificate and key files and makes them the ones new connections get,
    /// on every core (each swaps at its next accept). If the files do not load, the old
    /// configuration stays and the error says why. Callable from any thread.
    pub fn reload(&self) -> io::Result<()> {
        let config = load(&self.shared.cert_path, &self.shared.key_path)?;
        let mut current = self
            .shared
            .current
            .lock()
            .map_err(|_| io::Error::other("TLS configuration lock poisoned"))?;
        *current = config;
        self.shared.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// How many reloads succeeded.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> io::Result<(u64, Arc<ServerConfig>)> {
        let current = self
            .shared
            .current
            .lock()
            .map_err(|_| io::Error::other("TLS configuration lock poisoned"))?;
        Ok((self.shared.generation.load(Ordering::Acquire), current.clone()))
    }
}

fn bad(path: &Path, what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()))
}

fn load(cert_path: &Path, key_path: &Path) -> io::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| bad(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_path, e))?;
    if certs.is_empty() {
        return Err(bad(cert_path, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| bad(key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad(
                key_path,
                format!("certificate and key do not make a TLS identity: {e}"),
            )
        })?;
    // HTTP/2 first: a client that offers both gets it. A server without HTTP/2 drops `h2`
    // (`CoreTls`).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One core's view of a [`TlsConfig`]: the configuration it hands new connections, swapped
/// when a reload happened since.
pub(crate) struct CoreTls {
    config: TlsConfig,
    /// Whether this server serves HTTP/2 (else ALPN offers `http/1.1` only).
    http2: bool,
    held: RefCell<(u64, Arc<ServerConfig>)>,
    m_failed: Counter,
    m_timed_out: Counter,
}

impl CoreTls {
    pub(crate) fn new(config: TlsConfig, http2: bool) -> io::Result<Self> {
        let (generation, server) = config.snapshot()?;
        let held = (generation, alpn_for(server, http2));
        let help = "TLS handshakes that did not complete (error: a protocol error, a peer that \
                    is not TLS, or a close; timeout: past the handshake timeout).";
        Ok(CoreTls {
            config,
            http2,
            held: RefCell::new(held),
            m_failed: Counter::new(TLS_FAILURES, help, &[("reason", "error")]),
            m_timed_out: Counter::new(TLS_FAILURES, help, &[("reason", "timeout")]),
        })
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout
    }

    /// The configuration for a new connection.
    fn current(&self) -> Arc<ServerConfig> {
        let generation = self.config.shared.generation.load(Ordering::Relaxed);
        let mut held = self.held.borrow_mut();
        if held.0 != generation {
            if let Ok((generation, server)) = self.config.snapshot() {
                *held = (generation, alpn_for(server, self.http2));
            }
        }
        held.1.clone()
    }

    /// Runs the handshake on `tcp`; `None` if it failed or ran out of time (the
    /// connection is then closed; a peer that spoke something other than TLS got an alert).
    pub(crate) async fn accept(&self, tcp: TcpStream) -> Option<TlsStream> {
        let conn = ServerConnection::new(self.current()).ok()?;
        let stream = TlsStream::new(tcp, conn.into());
        let deadline = ringcore_runtime::time::loop_now() + self.handshake_timeout();
        let done = crate::conn::coarse::timeout_at(deadline, stream.handshake()).await;
        match done {
            Ok(Ok(())) => Some(stream),
            Ok(Err(_)) => {
                self.m_failed.inc();
                None
            }
            Err(_) => {
                self.m_timed_out.inc();
                None
            }
        }
    }
}

/// `config` as a server with or without HTTP/2 offers it (a copy without `h2`, made once per
/// core and reload, when HTTP/2 is off).
fn alpn_for(config: Arc<ServerConfig>, http2: bool) -> Arc<ServerConfig> {
    if http2 {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection over a [`TcpStream`] (server side, or the client's).
pub(crate) struct TlsStream {
    tcp: TcpStream,
    conn: RefCell<Connection>,
    /// Received TLS bytes not yet given to rustls.
    pending: RefCell<Option<(RecvBuf, usize)>>,
    /// The reused buffer TLS records are encrypted into (taken while a send owns it).
    out: RefCell<Vec<u8>>,
    /// A send of TLS records was cut off (its future dropped): the record stream is torn,
    /// every later call fails.
    broken: Cell<bool>,
    /// A send of TLS records is in flight. Records must go out whole and in order, so only
    /// one flush sends at a time (HTTP/2 has a receive and a send in flight at once).
    sending: Cell<bool>,
    /// Flushes waiting for the send in flight to end.
    send_waiters: RefCell<Vec<Waker>>,
}

fn torn() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "TLS record stream torn by a cancelled send",
    )
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Held while a send of TLS records is in flight: ends it (waking the flushes waiting for
/// it), and marks the stream broken if dropped before `done`.
struct SendGuard<'a> {
    stream: &'a TlsStream,
    done: bool,
}

impl<'a> SendGuard<'a> {
    fn new(stream: &'a TlsStream) -> Self {
        stream.sending.set(true);
        SendGuard { stream, done: false }
    }
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stream.broken.set(true);
        }
        self.stream.sending.set(false);
        for w in self.stream.send_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, conn: Connection) -> Self {
        TlsStream {
            tcp,
            conn: RefCell::new(conn),
            pending: RefCell::new(None),
            out: RefCell::new(Vec::new()),
            broken: Cell::new(false),
            sending: Cell::new(false),
            send_waiters: RefCell::new(Vec::new()),
        }
    }

    /// Runs the handshake to its end (both sides' messages sent).
    pub(crate) async fn handshake(&self) -> io::Result<()> {
        loop {
            self.flush_tls().await?;
            if !self.conn.borrow().is_handshaking() {
                return Ok(());
            }
            if !self.feed().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Sends every TLS record rustls has ready, after the send in flight (if any) ended.
    async fn flush_tls(&self) -> io::Result<()> {
        poll_fn(|cx| {
            if self.sending.get() {
                self.send_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        if self.broken.get() {
            return Err(torn());
        }
        loop {
            let mut out = std::mem::take(&mut *self.out.borrow_mut());
            out.clear();
            {
                let mut conn = self.conn.borrow_mut();
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                *self.out.borrow_mut() = out;
                return Ok(());
            }
            let mut guard = SendGuard::new(self);
            let (res, out) = self.tcp.write_all(out).await;
            guard.done = true;
            drop(guard);
            *self.out.borrow_mut() = out;
            if let Err(e) = res {
                self.broken.set(true);
                return Err(e);
            }
        }
    }

    /// Gives rustls more received bytes (receiving when none are pending) and processes
    /// them; false at the peer's EOF. On a protocol error the alert rustls prepared is sent
    /// before the error returns.
    async fn feed(&self) -> io::Result<bool> {
        if self.pending.borrow().is_none() {
            let chunk = self.tcp.recv().await?;
            if chunk.is_empty() {
                let _ = self.conn.borrow_mut().read_tls(&mut io::empty());
                return Ok(false);
            }
            *self.pending.borrow_mut() = Some((chunk, 0));
        }
        let result = {
            let mut pending = self.pending.borrow_mut();
            let mut conn = self.conn.borrow_mut();
            let Some((chunk, at)) = pending.as_mut() else {
                return Ok(true);
            };
            let mut rest = &chunk[*at..];
            let before = rest.len();
            let read = conn.read_tls(&mut rest);
            *at += before - rest.len();
            if *at >= chunk.len() {
                *pending = None;
            }
            match read {
                Ok(_) => conn.process_new_packets().map(drop).map_err(tls_err),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            let _ = self.flush_tls().await;
            return Err(e);
        }
        Ok(true)
    }
}

impl Transport for TlsStream {
    type Chunk = Vec<u8>;

    async fn recv(&self) -> io::Result<Vec<u8>> {
        loop {
            if self.broken.get() {
                return Err(torn());
            }
            {
                let mut conn = self.conn.borrow_mut();
                let mut reader = conn.reader();
                match reader.fill_buf() {
                    Ok(chunk) => {
                        // Empty: the peer sent close_notify (EOF). One copy, exactly sized.
                        let n = chunk.len().min(PLAINTEXT_CHUNK);
                        let buf = chunk[..n].to_vec();
                        reader.consume(n);
                        return Ok(buf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // TCP closed without close_notify: EOF as on plaintext (HTTP/1.1
                    // framing tells a truncated message apart).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
            // Post-handshake messages (a key update) may want an answer first; a send in
            // flight takes it along (its flush loops while rustls has records ready), and
            // waiting for it here could stall the receive behind a peer that does not read.
            if !self.sending.get() {
                self.flush_tls().await?;
            }
            if !self.feed().await? {
                continue; // the reader now reports EOF
            }
        }
    }

    async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        let taken = {
            let bytes = buf_bytes(&buf);
            self.conn.borrow_mut().writer().write(bytes)
        };
        let n = match taken {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.flush_tls().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    fn negotiated_h2(&self) -> bool {
        self.conn.borrow().alpn_protocol() == Some(b"h2")
    }

    async fn shutdown_write(&self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.tcp.shutdown(std::net::Shutdown::Write).await
    }
}

/// The initialized bytes of an owned buffer.
fn buf_bytes<B: IoBuf>(buf: &B) -> &[u8] {
    buf.as_init_slice()
}
