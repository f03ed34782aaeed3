//! The per-request `tracing` span, seen by a subscriber (this file installs one as the
//! process's global default, so the server's core threads report to it): its fields
//! (method, route, status, latency, request id), events inside the handler carry it, and the
//! request id is taken from `X-Request-Id` or made, and sent back as `X-Request-Id`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use ringcore_http::test::TestServer;
use ringcore_http::{get, Request, Router};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What the subscriber saw of one span.
#[derive(Debug, Clone, Default)]
struct SeenSpan {
    name: String,
    target: String,
    fields: BTreeMap<String, String>,
    /// Messages of events emitted while it was entered.
    events: Vec<String>,
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, SeenSpan>,
    /// The spans each thread is inside, innermost last.
    stacks: HashMap<ThreadId, Vec<u64>>,
}

/// A minimal recording subscriber (what any `tracing` subscriber is told).
struct Recorder {
    next: AtomicU64,
    seen: Arc<Mutex<Seen>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut span = SeenSpan {
            name: attrs.metadata().name().to_string(),
            target: attrs.metadata().target().to_string(),
            ..SeenSpan::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        if let Ok(mut seen) = self.seen.lock() {
            seen.spans.insert(id, span);
        }
        Id::from_u64(id)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        if let Ok(mut seen) = self.seen.lock() {
            if let Some(span) = seen.spans.get_mut(&id.into_u64()) {
                values.record(&mut Fields(&mut span.fields));
            }
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let msg = fields.remove("message").unwrap_or_default();
        if let Ok(mut seen) = self.seen.lock() {
            let current = seen
                .stacks
                .get(&std::thread::current().id())
                .and_then(|s| s.last().copied());
            if let Some(span) = current.and_then(|c| seen.spans.get_mut(&c)) {
                span.events.push(msg);
            }
        }
    }
    fn enter(&self, id: &Id) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.stacks
                .entry(std::thread::current().id())
                .or_default()
                .push(id.into_u64());
        }
    }
    fn exit(&self, id: &Id) {
        if let Ok(mut seen) = self.seen.lock() {
            let stack = seen.stacks.entry(std::thread::current().id()).or_default();
            if let Some(i) = stack.iter().rposition(|&s| s == id.into_u64()) {
                stack.remove(i);
            }
        }
    }
}

/// Installs the recorder once for this test binary and returns what it saw.
fn recorder() -> Arc<Mutex<Seen>> {
    static SEEN: OnceLock<Arc<Mutex<Seen>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sub = Recorder {
            next: AtomicU64::new(0),
            seen: seen.clone(),
        };
        tracing::subscriber::set_global_default(sub).expect("the only global subscriber");
        seen
    })
    .clone()
}

/// The request spans whose `request_id` is `id`.
fn spans_with_id(seen: &Arc<Mutex<Seen>>, id: &str) -> Vec<SeenSpan> {
    let seen = seen.lock().expect("lock");
    seen.spans
        .values()
        .filter(|s| s.name == "request" && s.fields.get("request_id").map(String::as_str) == Some(id))
        .cloned()
        .collect()
}

fn app() -> Router {
    Router::new().route(
        "/items/{id}",
        get(|req: Request| async move {
            tracing::info!("looking up item {}", req.param("id").unwrap_or("?"));
            "item"
        }),
    )
}

#[test]
fn a_subscriber_sees_one_span_per_request_with_its_fields_and_the_id_is_echoed() {
    let seen = recorder();
    let server = TestServer::start(app);
    let r = server.send("GET /items/42 HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-abc-123\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("trace-abc-123"));
    let spans = spans_with_id(&seen, "trace-abc-123");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_eq!(s.target, "ringcore_http::request");
    assert_eq!(s.fields.get("method").map(String::as_str), Some("GET"));
    assert_eq!(s.fields.get("route").map(String::as_str), Some("/items/:id"));
    assert_eq!(s.fields.get("status").map(String::as_str), Some("200"));
    let latency: u64 = s
        .fields
        .get("latency_us")
        .and_then(|v| v.parse().ok())
        .expect("latency_us");
    assert!(latency < 10_000_000, "{latency}");
    // The handler's event was emitted inside the request's span.
    assert_eq!(s.events, ["looking up item 42"]);

    // An unmatched request: its own span, route "unmatched", status 404.
    let r = server.send("GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-404\r\n\r\n");
    assert_eq!((r.status, r.header("x-request-id")), (404, Some("trace-404")));
    let spans = spans_with_id(&seen, "trace-404");
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(
        spans[0].fields.get("route").map(String::as_str),
        Some("unmatched")
    );
    assert_eq!(spans[0].fields.get("status").map(String::as_str), Some("404"));
}

#[test]
fn without_a_usable_request_id_one_is_made_and_each_request_gets_its_own() {
    let seen = recorder();
    let server = TestServer::start(app);
    let mut ids = Vec::new();
    for raw in [
        "GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        // Too long to be taken: replaced by a made one.
        format!(
            "GET /items/3 HTTP/1.1\r\nHost: t\r\nX-Request-Id: {}\r\n\r\n",
            "z".repeat(ringcore_http::MAX_REQUEST_ID + 1)
        ),
    ] {
        let r = server.send(raw);
        assert_eq!(r.status, 200);
        let id = r.header("x-request-id").expect("a made id").to_string();
        assert!(
            !id.is_empty() && id.len() <= ringcore_http::MAX_REQUEST_ID,
            "{id}"
        );
        // The span carries the same id the client got.
        assert_eq!(spans_with_id(&seen, &id).len(), 1, "{id}");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids repeat: {ids:?}");
}

#[ringcore_runtime::test]
async fn oneshot_requests_get_the_span_too() {
    let seen = recorder();
    let resp = app()
        .oneshot(
            Request::builder()
                .uri("/items/9")
                .header("x-request-id", "oneshot-9")
                .body("")
                .expect("request"),
        )
        .await;
    assert_eq!(
        ringcore_http::test::header(&resp, "x-request-id"),
        Some("oneshot-9")
    );
    let spans = spans_with_id(&seen, "oneshot-9");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].events, ["looking up item 9"]);
}
