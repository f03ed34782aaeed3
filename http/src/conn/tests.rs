//! Size bounds on the connection's futures: the idle one every open connection holds, and
//! the busy one every request's polls go through.

use super::*;
use crate::proto::Parser;

/// An idle keep-alive connection is its task's future and little else (the busy state is
/// boxed and freed between requests): keep that future small. 440 bytes with rustc 1.95.0
/// (the bound leaves room for the compiler's layout to move); `scripts/bench-idle-http.sh`
/// measures the whole per-connection figure.
#[test]
fn an_idle_connection_future_stays_small() {
    let size = ringcore_testkit::rt::run1(|| async {
        let listener = ringcore_runtime::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stream = TcpStream::connect(addr).await.expect("connect");
        let limits = Limits::default();
        let cfg = ConnConfig {
            limits: Arc::new(limits.clone()),
            server_header: HeaderValue::from_static("t"),
            http2: Some(crate::http2::Http2::default()),
        };
        let fut = serve(
            stream,
            None,
            Rc::new(Router::<()>::new()),
            Rc::new(cfg),
            Rc::new(CoreConns::new(&limits)),
        );
        std::mem::size_of_val(&fut)
    });
    assert!(size <= 512, "the connection future grew to {size} bytes");
}

/// A busy connection's state (boxed for its busy stretch) is what each of its polls
/// reads and writes. A snapshot, rustc 1.95.0, test build: 1,928 bytes, of which the
/// parser is 224 (it shares the connection config's limits and boxes the scan of a head
/// in pieces, instead of holding 160 and 168 bytes of them); the head the parser writes for
/// the connection to read in place (`Parser::next_plain`) took it from 1,880.
#[test]
fn a_busy_connection_future_stays_under_2_kib() {
    let (size, parser) = ringcore_testkit::rt::run1(|| async {
        let listener = ringcore_runtime::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        client.write_all(b"G".to_vec()).await.0.expect("write");
        let first = server.recv().await.expect("recv");
        let limits = Limits::default();
        let cfg = ConnConfig {
            limits: Arc::new(limits.clone()),
            server_header: HeaderValue::from_static("t"),
            http2: None,
        };
        let router = Router::<()>::new();
        let core = CoreConns::new(&limits);
        let fut = serve_busy(&server, None, &router, &cfg, &core, first);
        (std::mem::size_of_val(&fut), std::mem::size_of::<Parser>())
    });
    assert!(parser <= 256, "the parser grew to {parser} bytes");
    assert!(size <= 2048, "the busy connection future grew to {size} bytes");
}
