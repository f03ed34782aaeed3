//! One HTTP/2 stream through ringcore's router: hyper's request in, ringcore's [`Request`] to
//! the router, ringcore's [`Response`] back out as hyper's.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use ringcore_runtime::time::loop_now;

use crate::conn::coarse::timeout_at;

use crate::budget::Reservation;
use crate::conn::{ConnConfig, CoreConns};
use crate::limits::Limits;
use crate::proto::encode;
use crate::proto::Parser;
use crate::request::Request;
use crate::response::{Body, BodyReceiver, Response};
use crate::router::Router;

use super::H2Metrics;

/// What every stream of one connection shares.
pub(super) struct StreamCtx<S> {
    pub(super) router: Rc<Router<S>>,
    pub(super) cfg: Rc<ConnConfig>,
    pub(super) core: Rc<CoreConns>,
    pub(super) peer: Option<SocketAddr>,
    pub(super) activity: Rc<Activity>,
}

/// What the connection's idle timeout looks at.
pub(super) struct Activity {
    /// Streams being handled now (body read, router, a streamed response still sending).
    pub(super) handling: Cell<usize>,
    /// When a stream last started or was answered.
    pub(super) last_active: Cell<Instant>,
}

impl Activity {
    pub(super) fn new() -> Rc<Self> {
        Rc::new(Activity {
            handling: Cell::new(0),
            last_active: Cell::new(loop_now()),
        })
    }
}

/// Counts a stream as handled while it lives: dropped on every return, when hyper drops the
/// handler of a reset stream, or, for a streamed response, with its body (when the last
/// chunk went out or the stream was reset).
pub(crate) struct Handling(Rc<Activity>);

impl Handling {
    fn new(activity: &Rc<Activity>) -> Self {
        activity.handling.set(activity.handling.get() + 1);
        activity.last_active.set(loop_now());
        Handling(activity.clone())
    }
}

impl std::fmt::Debug for Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handling")
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.set(self.0.handling.get().saturating_sub(1));
        self.0.last_active.set(loop_now());
    }
}

/// Serves one stream: the request body is read whole (up to `Limits::max_body_bytes`, else
/// 413; within `Limits::body_read_timeout`, else 408; each DATA frame reserved from the
/// core's body budget as it arrives, else 503 after `Limits::body_budget_wait`, as on
/// HTTP/1), then the router answers.
pub(super) async fn handle<S: 'static>(
    req: hyper::Request<Incoming>,
    ctx: Rc<StreamCtx<S>>,
) -> Result<hyper::Response<H2Body>, Infallible> {
    let arrived = loop_now();
    let handling = Handling::new(&ctx.activity);
    ctx.core.requests.set(ctx.core.requests.get() + 1);
    H2Metrics::with(|m| m.requests.inc());
    let limits = &ctx.cfg.limits;
    let is_head = req.method() == Method::HEAD;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Ok(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            &ctx.cfg,
        ));
    }
    // The body's bytes count against the core's budget until the answer is made.
    let mut reserved = Reservation::new(ctx.core.body_budget.clone());
    let body = match timeout_at(
        arrived + limits.body_read_timeout,
        collect(body, limits, &mut reserved),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(Collect::NoBudget)) => {
            ctx.core.body_budget.m_refused.inc();
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "request body budget exhausted",
                &ctx.cfg,
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(resp);
        }
        Ok(Err(Collect::TooLarge)) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
                &ctx.cfg,
            ))
        }
        // The stream was reset: nobody reads this answer.
        Ok(Err(Collect::Failed)) => {
            return Ok(error(StatusCode::BAD_REQUEST, "request body failed", &ctx.cfg))
        }
        Err(_) => return Ok(error(StatusCode::REQUEST_TIMEOUT, "request timeout", &ctx.cfg)),
    };
    let mut raw = match parse(&parts, &body, limits) {
        Ok(raw) => raw,
        Err((status, reason)) => return Ok(error(status, reason, &ctx.cfg)),
    };
    raw.head.parsed.version = Version::HTTP_2;
    let resp = ctx.router.handle(Request::new(raw, ctx.peer, arrived)).await;
    // The request, and with it its body, is gone.
    reserved.release();
    Ok(into_hyper(resp, is_head, &ctx.cfg, Some(handling)))
}

enum Collect {
    TooLarge,
    NoBudget,
    Failed,
}

/// The whole request body, refused past `Limits::max_body_bytes`, each frame reserved in
/// `reserved` first.
async fn collect(mut body: Incoming, limits: &Limits, reserved: &mut Reservation) -> Result<Bytes, Collect> {
    let max = limits.max_body_bytes;
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let data = match frame {
            None => break,
            Some(Err(_)) => return Err(Collect::Failed),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers: not passed on
            },
        };
        let held = first.as_ref().map_or(0, Bytes::len) + rest.len();
        if held + data.len() > max {
            return Err(Collect::TooLarge);
        }
        if !reserved
            .grow(data.len(), Instant::now() + limits.body_budget_wait)
            .await
        {
            return Err(Collect::NoBudget);
        }
        // One DATA frame (the usual small body) is kept as it came; more are joined.
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// The request as ringcore's HTTP/1 parser reads it: the head written out as HTTP/1.1
/// (`Host` from `:authority`, `Content-Length` from the body received), so an HTTP/2 request
/// meets exactly the checks and limits of an HTTP/1 one (header count and size, target
/// form, field values) and the handler sees the same zero-copy `Parts`.
fn parse(
    parts: &http::request::Parts,
    body: &Bytes,
    limits: &Arc<Limits>,
) -> Result<crate::proto::RawRequest, (StatusCode, &'static str)> {
    let target = if parts.method == Method::CONNECT {
        parts.uri.authority().map_or("", |a| a.as_str())
    } else {
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    };
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        // Without `:authority` the field is empty, as RFC 9112 section 3.2 asks.
        let host = parts.uri.authority().map_or("", |a| a.as_str());
        field(&mut head, header::HOST.as_str(), host.as_bytes());
    }
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        field(&mut head, name.as_str(), value.as_bytes());
    }
    if !body.is_empty() {
        let mut len = itoa::Buffer::new();
        field(
            &mut head,
            header::CONTENT_LENGTH.as_str(),
            len.format(body.len()).as_bytes(),
        );
    }
    head.extend_from_slice(b"\r\n");
    let mut parser = Parser::with_limits(limits.clone());
    parser.push(&head);
    parser.push(body);
    match parser.next_request() {
        Ok(Some(raw)) => Ok(raw),
        Ok(None) => Err((StatusCode::BAD_REQUEST, "incomplete request")),
        Err(e) => Err((e.status(), e.reason())),
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn error(status: StatusCode, reason: &'static str, cfg: &ConnConfig) -> hyper::Response<H2Body> {
    let mut text = String::with_capacity(reason.len() + 1);
    text.push_str(reason);
    text.push('\n');
    let resp = Response::with_body(Body::Full(Bytes::from(text)))
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    into_hyper(resp, false, cfg, None)
}

/// Header fields that HTTP/2 forbids (RFC 9113 section 8.2.2); dropped from answers.
const CONNECTION_FIELDS: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
];

/// ringcore's response as hyper's: the same headers, plus `Server` and the core's cached
/// `Date` (as on HTTP/1), `Content-Length` for a complete body, no body for HEAD, 204 and 304.
/// `handling` goes with a streamed body (the stream stays active while it sends).
fn into_hyper(
    resp: Response,
    is_head: bool,
    cfg: &ConnConfig,
    handling: Option<Handling>,
) -> hyper::Response<H2Body> {
    let (status, ctype, headers, body) = resp.into_parts();
    let mut out = hyper::Response::new(H2Body::Empty);
    *out.status_mut() = status;
    let h = out.headers_mut();
    for (name, value) in headers {
        h.append(name, value);
    }
    for name in &CONNECTION_FIELDS {
        h.remove(name);
    }
    h.remove(header::CONTENT_LENGTH);
    if let Some(ct) = ctype {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if !cfg.server_header.is_empty() && !h.contains_key(header::SERVER) {
        h.insert(header::SERVER, cfg.server_header.clone());
    }
    if !h.contains_key(header::DATE) {
        if let Ok(date) = crate::proto::date::with_date(HeaderValue::from_bytes) {
            h.insert(header::DATE, date);
        }
    }
    if encode::bodyless(status) {
        return out;
    }
    let body = match body {
        Body::Empty => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u32));
            H2Body::Empty
        }
        Body::Full(b) => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len() as u64));
            if is_head {
                H2Body::Empty
            } else {
                H2Body::Full(Some(b))
            }
        }
        // HEAD: dropping the receiver tells the producer nobody reads (`ReceiverGone`).
        Body::Stream(_) if is_head => H2Body::Empty,
        Body::Stream(rx) => H2Body::Stream {
            rx,
            _active: handling,
        },
    };
    *out.body_mut() = body;
    out
}

/// A response body as hyper sends it: DATA frames, as fast as the stream's flow-control
/// window lets hyper poll for them (a streamed body's producer waits in
/// `BodySender::feed` meanwhile, as on HTTP/1).
#[derive(Debug)]
pub(crate) enum H2Body {
    Empty,
    Full(Option<Bytes>),
    /// The receiver, and the stream's activity guard (dropped with the body).
    Stream {
        rx: BodyReceiver,
        _active: Option<Handling>,
    },
}

impl hyper::body::Body for H2Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            H2Body::Empty => Poll::Ready(None),
            H2Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            H2Body::Stream { rx, .. } => rx.poll_next(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            H2Body::Empty => true,
            H2Body::Full(b) => b.is_none(),
            H2Body::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            H2Body::Empty | H2Body::Full(None) => SizeHint::with_exact(0),
            H2Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            H2Body::Stream { .. } => SizeHint::default(),
        }
    }
}
