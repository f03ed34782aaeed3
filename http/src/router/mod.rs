//! `Router`: method + path routing with parameters, automatic 404 / 405 (+ `Allow`).

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use http::header::{HeaderValue, ALLOW};
use http::{Method, StatusCode};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use tracing::Instrument;

use crate::handler::{erase, BoxFuture, Endpoint, Handler, HandlerSlot};
use crate::metrics::RouteMetrics;
use crate::middleware::Middleware;
use crate::proto::head::Head;
use crate::proto::parser::{HeadBytes, RawRequest};
use crate::request::Request;
use crate::response::Response;

mod method;

use method::wrap_endpoint;
pub use method::{any, delete, get, options, patch, post, put, MethodRouter};

/// Routes requests to handlers by path and method.
///
/// Paths use `{name}` for a parameter segment and `{*rest}` for a catch-all; a static segment
/// wins over a parameter at the same position. A path with no route gets 404; a path whose
/// route has no handler for the method gets 405 with an `Allow` header. HEAD is answered by
/// the GET handler, without a body.
///
/// Routers are built on each core by the factory given to
/// [`Server::serve`](crate::Server::serve), so handlers and state need not be `Send`.
pub struct Router<S = ()> {
    matcher: matchit::Router<usize>,
    /// The routes without parameters, by the length of their path (`statics[n]` holds the
    /// paths of `n` bytes): a request for one of them is routed by comparing its raw path
    /// with the few paths of its length, without reading the path as text and without the
    /// radix tree (`matchit` gives a static route precedence over a parameter, so the answer
    /// is the same).
    statics: Vec<Vec<(Box<[u8]>, usize)>>,
    paths: HashMap<String, usize>,
    routes: Vec<MethodRouter<S>>,
    metrics: Vec<Rc<RouteMetrics>>,
    unmatched: Rc<RouteMetrics>,
    state: Rc<S>,
    fallback: Option<Endpoint<S>>,
    access_log: bool,
    prewarm: Vec<(String, PrewarmHook)>,
}

pub(crate) type PrewarmHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = io::Result<()>>>>>;

impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("paths", &self.paths.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Router<()> {
    fn default() -> Self {
        Router::with_state(())
    }
}

impl Router<()> {
    /// An empty router without application state.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: 'static> Router<S> {
    /// An empty router whose handlers can take `State<S>` (this core's instance).
    pub fn with_state(state: S) -> Self {
        Self::with_shared_state(Rc::new(state))
    }

    fn with_shared_state(state: Rc<S>) -> Self {
        Self {
            matcher: matchit::Router::new(),
            statics: Vec::new(),
            paths: HashMap::new(),
            routes: Vec::new(),
            metrics: Vec::new(),
            unmatched: RouteMetrics::for_route(crate::metrics::UNMATCHED),
            state,
            fallback: None,
            access_log: false,
            prewarm: Vec::new(),
        }
    }

    /// This core's application state.
    pub fn state(&self) -> &Rc<S> {
        &self.state
    }

    /// Wraps every route added so far (and the fallback) in `middleware`. One instance is
    /// shared by all those routes on this core (one rate-limit bucket, one breaker).
    pub fn layer<M: Middleware>(mut self, middleware: M) -> Self {
        let mw = Rc::new(middleware);
        self.routes = self.routes.into_iter().map(|r| r.layer_rc(mw.clone())).collect();
        self.fallback = self.fallback.map(|h| wrap_endpoint(h, mw));
        self
    }

    /// Adds a group of routes under `prefix` (`""` for none): `build` gets an empty router
    /// with the same state, adds routes and layers that apply to the group only, and the
    /// group's routes are added here with `prefix` in front of their paths.
    ///
    /// ```no_run
    /// # use ringcore_http::{get, Router, middleware::RateLimit};
    /// # async fn h() -> &'static str { "" }
    /// let r = Router::new()
    ///     .route("/", get(h))
    ///     .group("/api", |api| {
    ///         api.route("/a", get(h)).route("/b", get(h)).layer(RateLimit::per_second(100.0))
    ///     });
    /// ```
    pub fn group(mut self, prefix: &str, build: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        let group = build(Router::with_shared_state(self.state.clone()));
        let mut paths: Vec<(String, usize)> = group.paths.into_iter().collect();
        paths.sort_by_key(|(_, i)| *i);
        let mut routes: Vec<Option<MethodRouter<S>>> = group.routes.into_iter().map(Some).collect();
        for (path, i) in paths {
            if let Some(r) = routes[i].take() {
                self = self.route(&format!("{prefix}{path}"), r);
            }
        }
        self.prewarm.extend(group.prewarm);
        self
    }

    /// Logs every request through `tracing` (target `ringcore_http::access`, level INFO:
    /// method, path, route, status, microseconds). Off by default; when off it costs one
    /// branch per request.
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Runs `hook` on this core before its listener accepts (load hot data, fill caches,
    /// touch memory). Hooks run in the order added; each one's duration is logged and
    /// exported as `ringcore_prewarm_duration_microseconds{hook,core}`. An error stops the
    /// server from starting.
    pub fn prewarm<F, Fut>(mut self, name: &str, hook: F) -> Self
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = io::Result<()>> + 'static,
    {
        self.prewarm
            .push((name.to_string(), Box::new(move || Box::pin(hook()))));
        self
    }

    pub(crate) fn take_prewarm(&mut self) -> Vec<(String, PrewarmHook)> {
        std::mem::take(&mut self.prewarm)
    }

    /// Adds the handlers of `methods` for `path` (merged with earlier ones for that path).
    ///
    /// # Panics
    ///
    /// If `path` is not a valid route or conflicts with another route (a programming error,
    /// found at start-up).
    pub fn route(mut self, path: &str, methods: MethodRouter<S>) -> Self {
        if let Some(&i) = self.paths.get(path) {
            self.routes[i].merge(methods);
            return self;
        }
        let i = self.routes.len();
        if let Err(e) = self.matcher.insert(path, i) {
            panic!("invalid route {path:?}: {e}");
        }
        if !path.contains(['{', '}']) {
            let n = path.len();
            if self.statics.len() <= n {
                self.statics.resize_with(n + 1, Vec::new);
            }
            self.statics[n].push((path.as_bytes().into(), i));
        }
        self.paths.insert(path.to_string(), i);
        self.routes.push(methods);
        self.metrics.push(RouteMetrics::for_route(path));
        self
    }

    /// Answers requests that match no route with `handler` (instead of 404).
    pub fn fallback<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.fallback = Some(erase(handler));
        self
    }

    /// Answers one request in process, without a socket: routing (404, 405 + `Allow`),
    /// every middleware layer, the handler, metrics and the request span run as for a
    /// request read off a connection. Call it on a ringcore core (in `#[..runtime::test]` or
    /// `block_on`), as handlers and middleware may use timers and per-core state. What the
    /// connection adds is not run: framing, limits, keep-alive, `Date` and `Server` headers,
    /// and HEAD's body removal (the GET handler's body is returned). Pre-warm hooks are not
    /// run either.
    ///
    /// ```
    /// use ringcore_http::{get, Request, Router, StatusCode};
    ///
    /// // In a test file: `#[ringcore_runtime::test] async fn hello_answers() { .. }`.
    /// ringcore_http::runtime::block_on_with(|| async {
    ///     let app = Router::new().route("/hello/{name}", get(|req: Request| async move {
    ///         format!("hello {}", req.param("name").unwrap_or("?"))
    ///     }));
    ///     let resp = app.oneshot(Request::builder().uri("/hello/ada").body("").unwrap()).await;
    ///     assert_eq!(resp.status_code(), StatusCode::OK);
    ///     assert_eq!(ringcore_http::test::body_text(&resp).await, "hello ada");
    /// });
    /// ```
    pub async fn oneshot(&self, req: Request) -> Response {
        self.handle(req).await
    }

    /// True if the handler a request with `method` (`index` in the parser's table) and
    /// `path_and_query` goes to reads its body as it arrives (takes a
    /// [`BodyStream`](crate::BodyStream)). The connection asks once per request whose head is
    /// complete and whose body is still arriving.
    pub(crate) fn streams_body(&self, method: &Method, index: u8, path_and_query: &[u8]) -> bool {
        match self.find(path_and_query) {
            Some((i, _)) => self.routes[i]
                .find(method, Some(index))
                .is_some_and(|e| e.streams_body),
            None => self.fallback.as_ref().is_some_and(|e| e.streams_body),
        }
    }

    /// The route of a request's path and query, and the path's parameters: a static route
    /// by its bytes, else through the radix tree.
    fn find(&self, path_and_query: &[u8]) -> Option<(usize, Vec<(String, String)>)> {
        self.find_path(crate::request::route_path_bytes(path_and_query))
    }

    /// [`find`](Self::find) for the path alone (what precedes the query). A static route's
    /// path is looked up inline, a route with parameters out of line ([`find_params`]): as
    /// one function its frame was set up for every request (`scripts/callgrind-http.sh`
    /// 4x16 1,126 to 1,100 instructions a request).
    ///
    /// [`find_params`]: Self::find_params
    #[inline(always)]
    fn find_path(&self, path: &[u8]) -> Option<(usize, Vec<(String, String)>)> {
        // A plain loop: `Iterator::find` was left out of line in the connection loop's
        // future (a call and six registers saved for every request there).
        for (p, i) in self.statics.get(path.len()).map_or(&[][..], |s| &s[..]) {
            if same_path(p, path) {
                return Some((*i, Vec::new()));
            }
        }
        self.find_params(path)
    }

    /// [`find_path`](Self::find_path) past the static routes: the matcher of the routes with
    /// parameters, and the parameters' values.
    #[inline(never)]
    fn find_params(&self, path: &[u8]) -> Option<(usize, Vec<(String, String)>)> {
        let path = std::str::from_utf8(path).ok()?;
        let m = self.matcher.at(path).ok()?;
        let params = m
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some((*m.value, params))
    }

    /// Routes one request to its handler and returns the response (what each connection
    /// calls; [`oneshot`](Self::oneshot) is the same for tests).
    pub async fn handle(&self, req: Request) -> Response {
        let since = req.received_at().unwrap_or_else(Instant::now);
        let method = req.method().clone();
        let log = self.access_log.then(|| req.path().to_string());
        let span = crate::span::request_span(&req);
        // No span work at all unless a subscriber wants request spans.
        let (mut resp, i, id) = if span.is_disabled() {
            let (resp, i) = self.dispatch(req, &span).await;
            (resp, i, None)
        } else {
            let id = crate::span::request_id(&req);
            span.record("request_id", id.to_str().unwrap_or(""));
            let (resp, i) = self.dispatch(req, &span).instrument(span.clone()).await;
            (resp, i, Some(id))
        };
        let metrics = i.map_or(&self.unmatched, |i| &self.metrics[i]);
        metrics.record(&method, resp.status_code(), since);
        if let Some(id) = id {
            span.record("route", metrics.route());
            span.record("status", resp.status_code().as_u16());
            span.record("latency_us", since.elapsed().as_micros() as u64);
            if !resp
                .headers()
                .iter()
                .any(|(n, _)| *n == crate::span::X_REQUEST_ID)
            {
                resp.headers_mut().push((crate::span::X_REQUEST_ID, id));
            }
        }
        if let Some(path) = log {
            tracing::info!(
                target: "ringcore_http::access",
                method = %method,
                path = %path,
                route = %metrics.route(),
                status = resp.status_code().as_u16(),
                micros = since.elapsed().as_micros() as u64,
            );
        }
        resp
    }

    /// True if requests take the connection's plain path ([`start`](Self::start) and
    /// [`Answered`]): no access log, and no subscriber wants request spans.
    /// Otherwise the connection calls [`handle`](Self::handle), which adds both.
    pub(crate) fn plain(&self) -> bool {
        !self.access_log && !crate::span::spans_wanted()
    }

    /// Routes a request read off a connection and starts its handler (what
    /// [`handle`](Self::handle) does, without the span and the access log, and without
    /// wrapping the handler's future in two more): the connection polls the handler's own
    /// future, then records the answer in its [`Answered`]. The [`Request`] is built only here, once
    /// its route is known, straight into the handler's argument (it is ~300 bytes, and each
    /// move of it is a copy).
    ///
    /// The handler's future, or the router's own answer (404, 405) as a ready one, is placed
    /// in the connection's `slot` (no allocation once the slot has grown to it), for the
    /// connection to poll there (`FutureSlot::poll_placed`): nothing is returned but what
    /// the metrics need, so nothing large is moved.
    #[inline(always)]
    pub(crate) fn start(
        &self,
        raw: RawRequest,
        peer: Option<SocketAddr>,
        arrived: Instant,
        slot: &mut HandlerSlot,
    ) -> Started {
        let method = raw.method();
        let index = Some(raw.head.parsed.method_index());
        let (target, route) = self.target(method, index, Some(raw.route_path()), None);
        match target {
            Target::Handler(h, params) => {
                let req = Request::routed(raw, peer, arrived, params);
                h.handler.place_in(req, self.state.clone(), slot);
            }
            Target::Refused(r) => slot.place(std::future::ready(r.response())),
        }
        let since = arrived;
        Started { route, method, since }
    }

    /// [`start`](Self::start) for a request whose head `parser` still holds
    /// ([`Next::Head`](crate::proto::parser::Next::Head)), in its buffer or in the chunk it
    /// came in ([`FreshHead`](crate::proto::parser::FreshHead)): its handler takes the
    /// request from there, or skips its head if it reads nothing of it (so does an answer of
    /// the router's own).
    #[inline(always)]
    pub(crate) fn start_head<B: HeadBytes>(
        &self,
        head: &Head,
        parser: &mut B,
        peer: Option<SocketAddr>,
        arrived: Instant,
        slot: &mut HandlerSlot,
    ) -> Started {
        let method = head.method();
        let path = head.route_path(parser.front());
        let (target, route) = self.target(method, Some(head.method_index()), Some(path), None);
        match target {
            // The head is skipped only once the handler's future is placed without it (a
            // handler that says it reads nothing and then gives no such future gets its
            // request after all).
            Target::Handler(h, params) if h.reads_nothing && h.handler.place_unread_in(slot) => {
                if params.capacity() == 0 {
                    // A static route's (none): not even a call into the drop glue.
                    std::mem::forget(params);
                }
                parser.skip_head(head);
            }
            Target::Handler(h, params) => {
                let raw = parser.take_head(head);
                let req = Request::routed(raw, peer, arrived, params);
                h.handler.place_in(req, self.state.clone(), slot);
            }
            Target::Refused(r) => {
                parser.skip_head(head);
                slot.place(std::future::ready(r.response()));
            }
        }
        let since = arrived;
        Started { route, method, since }
    }

    /// The answers a connection [`start`](Self::start)s, to be recorded as they are sent.
    pub(crate) fn answered(&self) -> Answered<'_, S> {
        Answered {
            router: self,
            run: None,
            runs: Vec::new(),
        }
    }

    /// Records `n` answers [`start`](Self::start)ed alike, just handed to the socket.
    #[inline(always)]
    fn record_started(&self, started: &Started, code: u16, n: u64) {
        let metrics = started.route.map_or(&self.unmatched, |i| &self.metrics[i]);
        metrics.record_handed(started.method, code, started.since, n);
    }

    async fn dispatch(&self, req: Request, span: &tracing::Span) -> (Response, Option<usize>) {
        let (routed, i) = self.route_to(req, span);
        (routed.response().await, i)
    }

    /// Finds the handler of `req` and calls it (the future it returns is not polled yet).
    fn route_to(&self, mut req: Request, span: &tracing::Span) -> (Routed, Option<usize>) {
        let path = req
            .parts()
            .path_and_query_bytes()
            .map(crate::request::route_path_bytes);
        let index = req.parts().method_index();
        let (target, route) = self.target(req.method(), index, path, Some(span));
        match target {
            Target::Handler(h, params) => {
                req.set_params(params);
                (Routed::Running(h.handler.call(req, self.state.clone())), route)
            }
            Target::Refused(r) => (Routed::Ready(r.response()), route),
        }
    }

    /// Where a request with `method` (`index`: its position in the parser's method table,
    /// `Head::method_index`) and `path` (before any query) goes (`None`: no request line,
    /// which no route matches), and its route's index. A matched route is recorded in `span`.
    #[inline(always)]
    fn target(
        &self,
        method: &Method,
        index: Option<u8>,
        path: Option<&[u8]>,
        span: Option<&tracing::Span>,
    ) -> (Target<'_, S>, Option<usize>) {
        match path.and_then(|path| self.find_path(path)) {
            Some((i, params)) => {
                if let Some(span) = span.filter(|s| !s.is_disabled()) {
                    // Known before the handler runs, so its events carry it.
                    span.record("route", self.metrics[i].route());
                }
                let route = &self.routes[i];
                match route.find(method, index) {
                    Some(h) => (Target::Handler(h, params), Some(i)),
                    None => (Target::Refused(Refusal::MethodNotAllowed(route)), Some(i)),
                }
            }
            None => match &self.fallback {
                Some(h) => (Target::Handler(h, Vec::new()), None),
                None => (Target::Refused(Refusal::NotFound), None),
            },
        }
    }
}

/// `a == b` for two paths of the same length, in 8-byte words (the last one overlapping the
/// one before) rather than through a call into `memcmp`, for the short paths routes have
/// (`find_path` 64 to 59 instructions for `/plaintext` under `scripts/callgrind-http.sh`).
#[inline]
fn same_path(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    match n {
        0..=7 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=32 => {
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
        _ => a == b,
    }
}

/// Where [`Router::target`] sends a request.
enum Target<'r, S> {
    /// This handler, with the path's parameters.
    Handler(&'r Endpoint<S>, Vec<(String, String)>),
    /// Answered by the router itself (404, 405).
    Refused(Refusal<'r, S>),
}

/// An answer of the router's own, made where it is placed: a [`Response`] (112 bytes) in
/// [`Target`] was moved with it on every routed request (32 instructions a request under
/// `scripts/callgrind-http.sh`), for the rare request that needs it.
enum Refusal<'r, S> {
    /// No route matches the path: 404.
    NotFound,
    /// The path's route has no handler for the method: 405, with the methods it has.
    MethodNotAllowed(&'r MethodRouter<S>),
}

impl<S: 'static> Refusal<'_, S> {
    #[inline(never)]
    fn response(self) -> Response {
        match self {
            Refusal::NotFound => Response::error(StatusCode::NOT_FOUND),
            Refusal::MethodNotAllowed(route) => {
                let r = Response::error(StatusCode::METHOD_NOT_ALLOWED);
                match HeaderValue::from_str(&route.allow()) {
                    Ok(v) => r.header(ALLOW, v),
                    Err(_) => r,
                }
            }
        }
    }
}

/// A routed request: its answer, or the handler's future that will give it (boxed on the
/// traced path, in the connection's slot on the plain one: [`Router::start`]).
pub(crate) enum Routed<F = BoxFuture> {
    /// Answered by the router itself (404, 405).
    Ready(Response),
    /// The handler's future.
    Running(F),
}

impl<F: Future<Output = Response>> Routed<F> {
    /// The answer (awaiting the handler).
    pub(crate) async fn response(self) -> Response {
        match self {
            Routed::Ready(r) => r,
            Routed::Running(f) => f.await,
        }
    }
}

/// The route metrics of the answers [`Router::start`]ed on one connection and not recorded yet.
/// They are handed on together when the connection hands their bytes to the socket
/// ([`record`](Answered::record), before each flush) or when this is dropped: a run of
/// alike answers (same route, method, status and arrival: a pipelined batch) is one
/// histogram update. The core's first hand-over of a loop turn is recorded then, with a
/// clock read; its later ones at the end of the turn, with one clock read for them all and
/// consecutive alike runs (the connections a turn served) merged
/// (`RouteMetrics::record_handed`). An answer's latency is thus from its arrival to its
/// hand-over, or to the end of the turn that handed it over (as `$request_time` in nginx
/// counts up to the send); a handler's own time is inside it.
pub(crate) struct Answered<'r, S: 'static> {
    router: &'r Router<S>,
    /// The latest run of alike answers (same route, method, status and arrival) and its length:
    /// a connection's answers mostly come in such runs, kept here without an allocation.
    run: Option<(Started, u16, u64)>,
    /// Earlier runs since the last record.
    runs: Vec<(Started, u16, u64)>,
}

impl<S: 'static> Answered<'_, S> {
    /// An answer to record with the next batch.
    pub(crate) fn push(&mut self, started: Started, status: StatusCode) {
        let code = status.as_u16();
        match &mut self.run {
            Some((s, c, n))
                if s.route == started.route
                    && *c == code
                    && s.since == started.since
                    && std::ptr::eq(s.method, started.method) =>
            {
                *n += 1
            }
            _ => {
                if let Some(earlier) = self.run.replace((started, code, 1)) {
                    self.runs.push(earlier);
                }
            }
        }
    }

    /// Records every answer pushed since the last call.
    pub(crate) fn record(&mut self) {
        let Some((started, code, n)) = self.run.take() else {
            return;
        };
        if !self.runs.is_empty() {
            // Runs other than the latest: only when answers of different routes, statuses or
            // arrivals went out in one write (the drain itself costs a few dozen instructions).
            for (s, c, k) in self.runs.drain(..) {
                self.router.record_started(&s, c, k);
            }
        }
        self.router.record_started(&started, code, n);
    }
}

impl<S: 'static> Drop for Answered<'_, S> {
    fn drop(&mut self) {
        self.record();
    }
}

/// What [`Router::start`] keeps for the answer's metrics ([`Answered`]).
pub(crate) struct Started {
    route: Option<usize>,
    /// One of the parser's methods, each at one address (so [`Answered::push`] compares the
    /// addresses).
    method: &'static Method,
    since: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_agrees_with_slice_equality_at_every_length_and_difference() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_path(&a, &a.clone()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!same_path(&a, &b), "length {n}, byte {at}");
            }
            assert!(!same_path(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn static_routes_are_kept_by_length_and_found_without_the_tree() {
        let mut app = Router::new();
        for path in ["/abc", "/b", "/", "/x/{id}", "/a", "/ba", "/ab", "/{*rest}"] {
            app = app.route(path, get(|| async { "" }));
        }
        let by_len: Vec<Vec<&[u8]>> = app
            .statics
            .iter()
            .map(|same| same.iter().map(|(k, _)| &k[..]).collect())
            .collect();
        let want: Vec<Vec<&[u8]>> = vec![
            vec![],
            vec![b"/"],
            vec![b"/b", b"/a"],
            vec![b"/ba", b"/ab"],
            vec![b"/abc"],
        ];
        assert_eq!(by_len, want);
        for (path, i) in app.statics.iter().flatten() {
            assert_eq!(app.find(path).map(|(at, p)| (at, p.len())), Some((*i, 0)));
            assert_eq!(app.paths.get(std::str::from_utf8(path).unwrap()), Some(i));
        }
        // A parameter route is found through the tree, with its parameter.
        let (i, params) = app.find(b"/x/7?q").expect("route");
        assert_eq!(app.paths.get("/x/{id}"), Some(&i));
        assert_eq!(params, vec![("id".to_string(), "7".to_string())]);
        let (i, params) = app.find(b"/abcd").expect("catch-all");
        assert_eq!(app.paths.get("/{*rest}"), Some(&i));
        assert_eq!(params, vec![("rest".to_string(), "abcd".to_string())]);
    }
}
