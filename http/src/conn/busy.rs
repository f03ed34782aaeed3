//! The busy state of a connection: the per-request loop that parses every buffered request,
//! answers them in order into one write and reads more under the deadline that applies. HOT PATH.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Version};
use ringcore_runtime::net::SendLane;
use ringcore_runtime::time::loop_now;

use super::coarse::timeout_at;

use super::body::{answer_body_failure, drain_unread, serve_streamed, BodyClock, PumpEnd};
use super::wait::{read_deadline, wait_next, Read};
use super::write::{
    error_response, flush_answered, flush_at_once, refuse_body, send_all, settle, timeout_response, Post,
};
use super::{out_of_line, ConnConfig, CoreConns, LazyTimer, Transport};
use crate::body_stream::{BodyError, BodyStream, StreamShared};
use crate::budget::Reservation;
use crate::bufpool::BufPool;
use crate::handler::HandlerSlot;
use crate::limits::MAX_UNREAD_BODY_DRAIN;
use crate::proto::encode::{self, Delimit, Persist};
use crate::proto::head::Head;
use crate::proto::parser::{Fresh, HeadBytes, Next, RawRequest};
use crate::proto::{Parser, ProtoError};
use crate::request::{Request, RequestBody};
use crate::response::{Body, BodyReceiver, Response};
use crate::router::{Answered, Router, Started};

/// How long a connection waits for its next request in the busy state (its buffers already
/// given back) before it drops that state and waits in the small idle one. A client that
/// sends its next request within this time (a benchmark, a browser loading a page, an API
/// client in a loop) keeps its busy state instead of freeing and allocating it per request.
pub(super) const IDLE_AFTER: Duration = Duration::from_millis(200);

/// Where a busy stretch of a connection ended.
pub(super) enum Busy {
    /// Every request was answered and written, and no byte of the next one arrived within
    /// [`IDLE_AFTER`] of the instant given (when the wait began).
    Idle(Instant),
    /// The connection is done; true if the server chose to close and should linger.
    Closed(bool),
}

/// How long a body may wait for room in the budget, starting `now`.
fn budget_deadline(now: Instant, cfg: &ConnConfig) -> Instant {
    now + cfg.limits.body_budget_wait
}

/// What of an answer is left after [`write_answer`]: nothing (the usual answer), a large body
/// to send in its own write, or a streamed body (and whether it goes chunked).
enum Rest {
    Done,
    Large(Bytes),
    Stream(BodyReceiver, bool),
}

/// Writes the head of `resp` into `out`, and its body when it is a full one that fits
/// (`cap`: the pending-output cap), and says what is left and whether the connection stays:
/// as the request asked (`keep`: its `keep_alive`, and what is left of a streamed body
/// allows it) unless shutdown has started, which is read here, after the handler ran (it
/// may have started meanwhile). Both paths that answer, the plain run and the general
/// one, decide it here. A plain function on purpose: the
/// response's parts (status, content type, fields, body: about 100 bytes) live in its frame,
/// on the hot stack, where as locals of the connection loop they were saved in its future
/// (they are alive across the awaits of the large and streamed bodies) and every answer
/// wrote them into two more of the future's cache lines. Inlined all the same: the future's
/// layout is settled before LLVM inlines (1,928 bytes either way), and inlined, an answer
/// is written without a call, its nine arguments, prologue and epilogue
/// (`scripts/callgrind-http.sh` 4x16 1,388 to 1,355 instructions per request, 1x1 3,393 to
/// 3,358).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn write_answer(
    out: &mut Vec<u8>,
    resp: Response,
    version: Version,
    is_head: bool,
    keep: bool,
    cap: usize,
    core: &CoreConns,
    cfg: &ConnConfig,
    date: &crate::proto::date::Handle,
) -> (Rest, bool) {
    let keep_alive = keep && !core.drain.is_draining();
    let persist = Persist::new(version, keep_alive);
    let (status, ctype, headers, body) = resp.into_parts();
    let bodyless = encode::bodyless(status);
    let write_head = |out: &mut Vec<u8>, d: Delimit, persist: Persist| {
        encode::head_cached(
            out,
            &core.head_prefix,
            status,
            ctype.as_ref(),
            &headers,
            &cfg.server_header,
            d,
            persist,
            date,
        );
    };
    let rest = match body {
        Body::Empty => {
            let d = if bodyless {
                Delimit::NoBody
            } else {
                Delimit::Length(0)
            };
            write_head(out, d, persist);
            Rest::Done
        }
        Body::Full(b) => {
            let d = if bodyless {
                Delimit::NoBody
            } else {
                Delimit::Length(b.len() as u64)
            };
            write_head(out, d, persist);
            if is_head || bodyless {
                Rest::Done
            } else if out.len() + b.len() > cap && b.len() > 16 * 1024 {
                Rest::Large(b)
            } else {
                out.extend_from_slice(&b);
                Rest::Done
            }
        }
        Body::Stream(rx) => {
            if is_head || bodyless {
                // HEAD: the fields a GET would have had, less the body. That is chunked for
                // HTTP/1.1; for HTTP/1.0, whose GET would be delimited by the close, no
                // framing field (Transfer-Encoding is not sent to an HTTP/1.0 client, RFC
                // 9112 section 6.1).
                let d = if bodyless || version != Version::HTTP_11 {
                    Delimit::NoBody
                } else {
                    Delimit::Chunked
                };
                write_head(out, d, persist);
                Rest::Done
            } else {
                let chunked = version == Version::HTTP_11;
                let d = if chunked { Delimit::Chunked } else { Delimit::Close };
                let persist = if chunked { persist } else { Persist::Close };
                write_head(out, d, persist);
                Rest::Stream(rx, chunked)
            }
        }
    };
    if headers.capacity() == 0 {
        // No fields of the handler's own (the usual answer): nothing to free, so not even the
        // call into the vector's drop glue (about 25 instructions a request under
        // scripts/callgrind-http.sh).
        std::mem::forget(headers);
    }
    (rest, keep_alive)
}

/// A plain run's request whose handler is running (see `plain_run!` in [`serve_busy`]).
struct Waiting {
    started: Started,
    version: Version,
    is_head: bool,
    wants_keep_alive: bool,
}

/// Where a plain run ended (see `plain_run!` in [`serve_busy`]).
enum RunEnd {
    /// An answer that leaves the general path more to do than take the next request: what
    /// is left of it, and whether the connection stays.
    Answered(Rest, bool),
    /// At a request of another kind (the parse result), or at nothing buffered (`None`).
    Stopped(Option<Result<Next, ProtoError>>),
}

/// What a plain run changes of its connection's state (see `plain_run!` in [`serve_busy`]).
struct RunState<'a, 'r, S: 'static> {
    parser: &'a mut Parser,
    whole: &'a mut Head,
    taken: &'a mut Option<RawRequest>,
    stream_checked: &'a mut bool,
    head_started: &'a mut Option<Instant>,
    body_started: &'a mut Option<Instant>,
    handler_slot: &'a mut HandlerSlot,
    waiting: &'a mut Option<Waiting>,
    answered: &'a mut Answered<'r, S>,
    body_mem: &'a mut Reservation,
    out: &'a mut Vec<u8>,
}

/// What a plain run reads (see `plain_run!` in [`serve_busy`]).
struct RunContext<'a, 'r, S: 'static> {
    router: &'r Router<S>,
    peer: Option<SocketAddr>,
    arrived: Instant,
    cap: usize,
    core: &'a CoreConns,
    cfg: &'a ConnConfig,
    date: &'a crate::proto::date::Handle,
}

/// A plain run (see `plain_run!` in [`serve_busy`]): each step as the general path takes
/// it for a plain request without a body. Out of line: a first version inlined into the
/// connection loop's future (and checked at the top of each request) cost 17 instructions a
/// request more at 4x16 (`scripts/callgrind-http.sh`).
#[inline(never)]
fn plain_run<S: 'static>(
    cx: &mut std::task::Context<'_>,
    st: &mut RunState<'_, '_, S>,
    rc: &RunContext<'_, '_, S>,
) -> Poll<RunEnd> {
    loop {
        let w = match st.waiting.take() {
            Some(w) => w,
            None => {
                if !st.parser.has_partial() {
                    return Poll::Ready(RunEnd::Stopped(None));
                }
                match st.parser.next_plain(st.whole, st.taken) {
                    Ok(Next::Head) => {}
                    other => return Poll::Ready(RunEnd::Stopped(Some(other))),
                }
                *st.stream_checked = false;
                *st.head_started = None;
                *st.body_started = None;
                rc.core.requests.set(rc.core.requests.get() + 1);
                Waiting {
                    is_head: *st.whole.method() == Method::HEAD,
                    version: st.whole.version,
                    wants_keep_alive: st.whole.keep_alive,
                    started: rc
                        .router
                        .start_head(st.whole, st.parser, rc.peer, rc.arrived, st.handler_slot),
                }
            }
        };
        let resp = match st.handler_slot.poll_placed(cx) {
            Poll::Ready(resp) => resp.unwrap_or_else(|| Response::error(StatusCode::INTERNAL_SERVER_ERROR)),
            Poll::Pending => {
                *st.waiting = Some(w);
                return Poll::Pending;
            }
        };
        st.answered.push(w.started, resp.status_code());
        st.body_mem.release();
        let (rest, keep_alive) = write_answer(
            st.out,
            resp,
            w.version,
            w.is_head,
            w.wants_keep_alive,
            rc.cap,
            rc.core,
            rc.cfg,
            rc.date,
        );
        if !matches!(rest, Rest::Done) || !keep_alive || st.out.len() >= rc.cap {
            return Poll::Ready(RunEnd::Answered(rest, keep_alive));
        }
    }
}

/// Sends what is left of an answer after its head ([`Rest::Large`], [`Rest::Stream`]), with
/// the batch's earlier answers flushed first. `None` when the connection can go on; else it
/// closes, and `Some(flushed)` says whether the last bytes went out. Its own future, run
/// out of line by the connection loop: its states and its code (the large body's write
/// loop with its deadline, the stream's chunk loop), inlined into the loop's future, sat
/// between the runs of code every request takes (docs/bench-http.md, seventh session of
/// 2026-12-03).
#[allow(clippy::too_many_arguments)]
async fn send_rest<T: Transport, S: 'static>(
    stream: &T,
    rest: Rest,
    out: &mut Vec<u8>,
    cfg: &ConnConfig,
    core: &CoreConns,
    write_timer: &mut Option<LazyTimer>,
    answered: &mut Answered<'_, S>,
    lane: &SendLane,
) -> Option<bool> {
    macro_rules! flush {
        () => {
            flush_answered(
                stream,
                out,
                cfg,
                core,
                write_timer,
                answered,
                lane,
                Post::No,
            )
            .await
        };
    }
    match rest {
        Rest::Done => {}
        Rest::Large(b) => {
            // A large body goes out in its own write, without a copy.
            if !flush!() {
                return Some(false);
            }
            let advance: fn(&mut Bytes, usize) = bytes::Buf::advance;
            if send_all(stream, b, advance, cfg, core, write_timer)
                .await
                .is_none()
            {
                return Some(false);
            }
        }
        Rest::Stream(rx, chunked) => {
            let mut ready: Vec<Bytes> = Vec::new();
            loop {
                let closed = rx.drain_ready(&mut ready);
                for c in ready.drain(..) {
                    if chunked {
                        encode::chunk(out, &c);
                    } else {
                        out.extend_from_slice(&c);
                    }
                }
                if closed {
                    break;
                }
                if !flush!() {
                    return Some(false);
                }
                match rx.next().await {
                    Some(c) if chunked => encode::chunk(out, &c),
                    Some(c) => out.extend_from_slice(&c),
                    None => break,
                }
            }
            if chunked {
                out.extend_from_slice(encode::LAST_CHUNK);
            } else {
                return Some(flush!());
            }
        }
    }
    None
}

/// The head of a request read in place, in the chunk it came in (`Next::Fresh`), for its
/// handler to take or pass over. One that reads nothing costs nothing; one that takes its
/// request gets the head as a head received any other way: pushed into the parser's buffer
/// (from the core's pool) and split off it, a reference count rather than an allocation per
/// request.
struct FreshHead<'a> {
    bytes: &'a [u8],
    parser: &'a mut Parser,
    pool: &'a BufPool,
}

impl HeadBytes for FreshHead<'_> {
    #[inline]
    fn front(&self) -> &[u8] {
        self.bytes
    }

    fn take_head(&mut self, head: &Head) -> RawRequest {
        debug_assert!(!self.parser.has_partial() && head.len() == self.bytes.len());
        push_pooled(self.parser, self.pool, self.bytes);
        self.parser.take_head(head)
    }

    #[inline]
    fn skip_head(&mut self, head: &Head) {
        debug_assert!(head.len() == self.bytes.len());
        self.parser.skipped_fresh_head();
    }
}

/// Pushes `bytes` into `parser`, with a buffer from the core's pool first if it has none
/// (a connection gives its buffer back while it waits between requests, and a head read in
/// place needs none).
#[inline]
fn push_pooled(parser: &mut Parser, pool: &BufPool, bytes: &[u8]) {
    if parser.lacks_buf() {
        parser.set_buf(pool.take_rx());
    }
    parser.push(bytes);
}

/// Serves requests from `first` (the bytes that ended the idle wait) on, until the
/// connection is idle again or done.
pub(super) async fn serve_busy<S: 'static, T: Transport>(
    stream: &T,
    peer: Option<SocketAddr>,
    router: &Router<S>,
    cfg: &ConnConfig,
    core: &CoreConns,
    first: T::Chunk,
) -> Busy {
    // Without a buffer: one is taken from the core's pool only when bytes have to wait in
    // it or a handler takes a head read in place (see `fresh` below).
    let mut parser = Parser::with_buf(cfg.limits.clone(), BytesMut::new());
    let mut out: Vec<u8> = core.pool.take_out();
    let mut head_started: Option<Instant> = Some(Instant::now());
    let mut body_started: Option<Instant> = None;
    // This request's body bytes held across reads, reserved from the core's budget.
    let mut body_mem = Reservation::new(core.body_budget.clone());
    // The size of the last read: an upper bound on the body bytes a just-completed head left
    // in the parser.
    let mut last_read = first.len();
    // The body being read reserved its whole declared length up front.
    let mut body_prepaid = false;
    let cap = cfg.limits.max_pending_response_bytes;
    let mut arrived = loop_now();
    // The router was asked whether the body being received streams (it did not).
    let mut stream_checked = false;
    // Requests skip the span and access-log wrapping when nobody wants them.
    let plain = router.plain();
    let date = crate::proto::date::Handle::current();
    // Kept for the whole busy stretch rather than made per read: the shutdown signal's
    // registration, and the timer of the wait between requests (see `wait_next`).
    let mut drained = pin!(core.drain.wait());
    // `drained` has registered this task's waker (see `wait_next`).
    let mut drain_armed = false;
    let mut idle_timer: Option<LazyTimer> = None;
    // The write deadline's timer, lazily moved like the idle one (see `send_all`).
    let mut write_timer: Option<LazyTimer> = None;
    // The route metrics of the plain path's answers, recorded as they are sent (one clock
    // read per flush).
    let mut answered = router.answered();
    // Where the plain path's handler futures run, one at a time: the memory is reused, so a
    // request allocates nothing for its handler once the first has grown it.
    let mut handler_slot = HandlerSlot::new();
    // Where the parser writes the usual request's head (`Parser::next_plain`), read in place.
    let mut whole = Head::default();
    // Where it puts any other request (`Next::Request`).
    let mut taken: Option<RawRequest> = None;
    // Where the end-of-batch flush's posted send reports (see `flush_timed`); its buffer goes
    // back to the core's output pool at the completion.
    let lane = SendLane::new(crate::bufpool::recycle_out);
    // Ends the busy stretch with `$end` once the posted send is settled: the last answers go
    // out before the connection waits idle, lingers or closes.
    macro_rules! end {
        ($end:expr) => {{
            if lane.is_settled() || settle(&lane, cfg, core, &mut write_timer).await {
                $end
            } else {
                Busy::Closed(false)
            }
        }};
    }
    // The flush of the answers in `out` (its future): `Post::Yes` at the end of a batch,
    // `Post::No` where the bytes must be out when it returns.
    macro_rules! flush {
        ($post:expr) => {
            flush_answered(
                stream,
                &mut out,
                cfg,
                core,
                &mut write_timer,
                &mut answered,
                &lane,
                $post,
            )
        };
    }
    // The flushes off the common path (closing the connection; before a large, streamed or
    // refused body) run out of line (see `out_of_line`), and settle the posted send first.
    macro_rules! flush_out_of_line {
        () => {
            out_of_line(flush!(Post::No)).await
        };
    }
    // A chunk received while the parser held nothing (the usual request of a connection
    // answering one at a time): its first head is read in place when it is one without a
    // body (`Parser::read_fresh`), so unless its handler takes the request (`FreshHead`),
    // the chunk's bytes are not copied into a buffer taken from the core's pool and given
    // back for it; anything else is pushed into the parser.
    let mut fresh = Some(first);
    let mut fresh_len = 0;
    // A plain run (awaited): the requests the parser already holds (in a pipelined batch,
    // those after its first; also a head that came in pieces), while each is a plain one
    // without a body (`Next::Head`), started, polled and answered into `out` one after the
    // other in one synchronous loop, as the general path below does each (the same steps,
    // counters and decisions). A handler that is not ready makes the run wait with it
    // (`waiting`, a local of the run's own await), and the next poll goes on from there.
    // It ends at nothing buffered, at another parse result (`RunEnd::Stopped`, which the
    // general path takes on from), and at an answer after which the general path has more
    // to do than take the next request: a body to send on its own or stream, a connection
    // to close, output at its cap (`RunEnd::Answered`). A pipelined batch's requests after
    // its first are its own, with the loop's state in registers rather than in this future
    // between them: `scripts/callgrind-http.sh` 4x16 1,356 to 1,265 instructions a request.
    macro_rules! plain_run {
        () => {{
            let mut waiting = None;
            poll_fn(|cx| {
                plain_run(
                    cx,
                    &mut RunState {
                        parser: &mut parser,
                        whole: &mut whole,
                        taken: &mut taken,
                        stream_checked: &mut stream_checked,
                        head_started: &mut head_started,
                        body_started: &mut body_started,
                        handler_slot: &mut handler_slot,
                        waiting: &mut waiting,
                        answered: &mut answered,
                        body_mem: &mut body_mem,
                        out: &mut out,
                    },
                    &RunContext {
                        router,
                        peer,
                        arrived,
                        cap,
                        core,
                        cfg,
                        date: &date,
                    },
                )
            })
            .await
        }};
    }
    loop {
        // Answer every complete request already buffered, in order, into one write.
        'batch: loop {
            // The body's clock when the unread rest of a streamed body is to be drained after
            // the answer.
            let mut drain_after: Option<BodyClock> = None;
            // What the answer left, and whether the connection stays.
            let (rest, keep_alive) = 'answer: {
                // The chunk of a head read in place (`Next::Fresh`), borrowed from `fresh`.
                let mut fresh_bytes: &[u8] = &[];
                let (next, streamed) = if parser.has_partial() {
                    // The next request buffered. On the plain path, pipelined requests run in one
                    // synchronous loop inside one poll (see `plain_run!`) up to the first request
                    // of another kind, which comes here as its parse result, and to an answer
                    // that needs more than being written into `out`.
                    let parsed = if plain {
                        // (A chunk read in place has been pushed or answered by now.)
                        debug_assert!(fresh.is_none());
                        match plain_run!() {
                            RunEnd::Answered(rest, keep_alive) => break 'answer (rest, keep_alive),
                            RunEnd::Stopped(None) => break 'batch,
                            RunEnd::Stopped(Some(r)) => r,
                        }
                    } else {
                        parser.next_plain(&mut whole, &mut taken)
                    };
                    match parsed {
                        Ok(Next::Incomplete) => {
                            // A head is complete and its body still arriving: a handler that reads
                            // its body as it comes gets the request now (asked once per request).
                            let streams = !stream_checked
                                && parser
                                    .body_head()
                                    .is_some_and(|(m, i, pq)| router.streams_body(m, i, pq));
                            stream_checked = parser.in_body();
                            match streams.then(|| parser.take_streaming()).flatten() {
                                Some(raw) => {
                                    stream_checked = false;
                                    taken = Some(raw);
                                    (Next::Request, Some(StreamShared::new(core.m_body_stream.clone())))
                                }
                                None => break 'batch,
                            }
                        }
                        Ok(n) => {
                            stream_checked = false;
                            (n, None)
                        }
                        Err(e) => {
                            error_response(&mut out, cfg, e);
                            return Busy::Closed(flush_out_of_line!());
                        }
                    }
                } else {
                    // Nothing buffered, no body under way: a chunk just received, or no request
                    // to find (the usual end of a batch, without a parse attempt).
                    let Some(chunk) = &fresh else {
                        break 'batch;
                    };
                    let bytes: &[u8] = chunk;
                    match parser.read_fresh(bytes, &mut whole) {
                        // Its head is read from the chunk (`Next::Fresh`), and the bytes after it
                        // go into the parser (`start_fresh!`) before its handler runs, so that the
                        // chunk (a buffer of the core's provided ring) is not held while it does.
                        Fresh::Head(n) => {
                            fresh_len = n;
                            fresh_bytes = bytes;
                            (Next::Fresh, None)
                        }
                        other => {
                            push_pooled(&mut parser, &core.pool, bytes);
                            fresh = None;
                            if other == Fresh::Body {
                                parser.start_body(&whole);
                            }
                            continue 'batch;
                        }
                    }
                };
                // The request of a head read in place ([`Next::Fresh`]) as `$start` makes it from
                // a `FreshHead` (`h`), then the bytes after the head pushed and the chunk given
                // back.
                macro_rules! start_fresh {
                    (|$h:ident| $start:expr) => {{
                        // (`Next::Fresh` always comes with its chunk: checked in debug builds.)
                        debug_assert!(fresh.is_some() && fresh_len > 0 && fresh_len <= fresh_bytes.len());
                        let (head_bytes, rest) = fresh_bytes.split_at(fresh_len.min(fresh_bytes.len()));
                        let started = {
                            let $h = &mut FreshHead {
                                bytes: head_bytes,
                                parser: &mut parser,
                                pool: &core.pool,
                            };
                            $start
                        };
                        if !rest.is_empty() {
                            push_pooled(&mut parser, &core.pool, rest);
                        }
                        fresh = None;
                        started
                    }};
                }
                head_started = None;
                body_started = None;
                let head = next.head(&whole, &taken);
                let is_head = *head.method() == Method::HEAD;
                let version = head.version;
                let wants_keep_alive = head.keep_alive;
                core.requests.set(core.requests.get() + 1);
                // Whether what is left of a streamed body allows keeping the connection.
                let mut body_keeps = true;
                let resp = match streamed {
                    None if plain => {
                        // The handler's own future, awaited here (no span, no access log); a
                        // request whose head the parser still holds is made only if its handler
                        // reads it.
                        // (A plain `Next::Head` never comes here: the plain run takes it.)
                        let started = match next {
                            Next::Fresh => {
                                start_fresh!(|h| router.start_head(
                                    &whole,
                                    h,
                                    peer,
                                    arrived,
                                    &mut handler_slot
                                ))
                            }
                            _ => {
                                let raw = next.into_raw(&mut parser, &whole, &mut taken);
                                router.start(raw, peer, arrived, &mut handler_slot)
                            }
                        };
                        // Polled where it lies (`start` placed a future in the slot).
                        let resp = poll_fn(|cx| handler_slot.poll_placed(cx))
                            .await
                            .unwrap_or_else(|| Response::error(StatusCode::INTERNAL_SERVER_ERROR));
                        answered.push(started, resp.status_code());
                        resp
                    }
                    // The traced or logged path (spans, access log) runs out of line.
                    None => {
                        let raw = match next {
                            Next::Fresh => start_fresh!(|h| h.take_head(&whole)),
                            _ => next.into_raw(&mut parser, &whole, &mut taken),
                        };
                        out_of_line(router.handle(Request::new(raw, peer, arrived))).await
                    }
                    Some(shared) => {
                        // A head read in place never has a body.
                        debug_assert!(fresh.is_none());
                        let raw = next.into_raw(&mut parser, &whole, &mut taken);
                        // Earlier answers of the batch go out before the handler waits on its body.
                        if !flush_out_of_line!() {
                            return Busy::Closed(false);
                        }
                        let body = RequestBody::Stream(BodyStream::from_conn(shared.clone()));
                        let req = Request::with_body(raw, peer, arrived, body);
                        let mut clock = BodyClock::default();
                        // Out of line: the streamed path's state (about 3 KiB) would otherwise be
                        // part of every busy connection's future, and its code of this loop's.
                        let (resp, end) = out_of_line(serve_streamed(
                            stream,
                            &mut parser,
                            router.handle(req),
                            &shared,
                            &mut clock,
                            cfg,
                        ))
                        .await;
                        // A stream kept past the handler is not read any more.
                        shared.finish(Err(BodyError::Aborted));
                        match end {
                            Some(PumpEnd::Complete) => resp,
                            Some(PumpEnd::Gone) => return Busy::Closed(false),
                            Some(end @ (PumpEnd::Failed(_) | PumpEnd::TimedOut)) => {
                                // The body failed (a 400) or stopped arriving (a 408).
                                let fail = move |o: &mut Vec<u8>| match end {
                                    PumpEnd::Failed(e) => error_response(o, cfg, e),
                                    _ => timeout_response(o, cfg),
                                };
                                return Busy::Closed(
                                    out_of_line(answer_body_failure(
                                        stream, &mut out, cfg, core, resp, version, fail,
                                    ))
                                    .await,
                                );
                            }
                            None | Some(PumpEnd::Dropped) => {
                                // The handler left some of its body unread: after the answer
                                // (the client may wait for it before sending the rest), read and
                                // discard a bounded rest to keep the connection, else close. A
                                // client still waiting for `100 Continue` never sends it, and a
                                // declared rest past the bound is not worth reading.
                                body_keeps = !parser.continue_pending()
                                    && !matches!(parser.stream_left(), Some(n) if n > MAX_UNREAD_BODY_DRAIN as u64);
                                drain_after = body_keeps.then_some(clock);
                                resp
                            }
                        }
                    }
                };
                // The request, and with it its body buffer, is gone.
                body_mem.release();
                // The head (and a body that fits) written by a plain function: the response's
                // parts stay in its frame, not in this loop's future (see `write_answer`).
                let keep = wants_keep_alive && body_keeps;
                write_answer(&mut out, resp, version, is_head, keep, cap, core, cfg, &date)
            };
            if !matches!(rest, Rest::Done) {
                // A large or streamed body: its own future, out of line (see `send_rest`).
                let sent = out_of_line(send_rest(
                    stream,
                    rest,
                    &mut out,
                    cfg,
                    core,
                    &mut write_timer,
                    &mut answered,
                    &lane,
                ))
                .await;
                if let Some(closed) = sent {
                    return Busy::Closed(closed);
                }
            }
            if !keep_alive {
                return Busy::Closed(flush_out_of_line!());
            }
            if let Some(mut clock) = drain_after {
                if !flush_out_of_line!() {
                    return Busy::Closed(false);
                }
                if !out_of_line(drain_unread(stream, &mut parser, &mut clock, cfg)).await {
                    return Busy::Closed(true);
                }
            }
            // The pending-output cap: nothing more is read or handled until this is written,
            // so a client that never reads meets TCP flow control, not a growing queue.
            if out.len() >= cap && !flush_out_of_line!() {
                return Busy::Closed(false);
            }
        }
        if parser.has_partial() && head_started.is_none() {
            // The rest of a pipelined batch is a partial head: its clock starts now, and
            // dripping more bytes does not restart it.
            head_started = Some(Instant::now());
        }
        if parser.in_body() && body_started.is_none() {
            // The head is complete: the body's clock starts now, and its bytes count against
            // the core's budget from here (before any `100 Continue` invites the rest). A
            // body of declared length reserves all of it at once, so a body that started
            // always has room to finish; a chunked one reserves each read as it comes.
            let now = Instant::now();
            body_started = Some(now);
            body_prepaid = parser.body_len().is_some();
            let want = parser
                .body_len()
                .map_or(last_read, |n| usize::try_from(n).unwrap_or(usize::MAX));
            if !body_mem.grow(want, budget_deadline(now, cfg)).await {
                return Busy::Closed(out_of_line(refuse_body(stream, &mut out, cfg, core, &lane)).await);
            }
        }
        if parser.wants_continue() {
            out.extend_from_slice(encode::CONTINUE);
            parser.continue_sent();
        }
        // A batch that ended in a partial head whose next bytes are already here (a
        // pipelined batch longer than one receive buffer, which the ring's multishot receive
        // brings as several chunks at once): answer on before writing, so that the batch's
        // answers go out in one write. Each write more is a whole send through the kernel's
        // TCP path (on loopback, its receive too), which is most of an answer's cost.
        if parser.has_partial() && !parser.in_body() && !out.is_empty() && out.len() < cap {
            if let Some(chunk) = stream.try_recv() {
                arrived = loop_now();
                last_read = chunk.len();
                parser.push(&chunk);
                continue;
            }
        }
        // The end of a batch: written or posted at once as a rule, else awaited.
        match flush_at_once(stream, &mut out, &mut answered, &lane) {
            Some(true) => {}
            Some(false) => return Busy::Closed(false),
            None => {
                if !flush!(Post::Yes).await {
                    return Busy::Closed(false);
                }
            }
        }
        if core.drain.is_draining() && !parser.has_partial() {
            return end!(Busy::Closed(false));
        }

        // Read more, under the deadline that applies to where we are in the request. Between
        // requests the connection waits here for up to `IDLE_AFTER` (holding no buffers from
        // the first moment nothing is ready: they are given back then, not on every request
        // of a busy connection, whose next bytes are usually there already), then ends the
        // busy stretch (see `serve`).
        let read = if parser.has_partial() {
            let deadline = read_deadline(&parser, head_started, body_started, cfg);
            match timeout_at(deadline, stream.recv()).await {
                Ok(Ok(c)) if c.is_empty() => Read::Eof,
                Ok(Ok(c)) => Read::Data(c),
                Ok(Err(_)) => Read::Failed,
                Err(_) => Read::TimedOut,
            }
        } else {
            let since = loop_now();
            let deadline = since + IDLE_AFTER.min(cfg.limits.keep_alive_timeout);
            let recv = pin!(stream.recv());
            let release = || {
                core.pool.put_out(std::mem::take(&mut out));
                if let Some(b) = parser.take_idle_buf() {
                    core.pool.put_rx(b);
                }
            };
            let draining = || core.drain.is_draining();
            match wait_next(
                recv,
                drained.as_mut(),
                &mut drain_armed,
                draining,
                &mut idle_timer,
                deadline,
                release,
            )
            .await
            {
                Read::TimedOut if lane.is_settled() => return Busy::Idle(since),
                // The idle wait starts when the last answer is out.
                Read::TimedOut => return end!(Busy::Idle(loop_now())),
                read => read,
            }
        };
        match read {
            Read::Data(chunk) => {
                arrived = loop_now();
                if out.capacity() == 0 {
                    out = core.pool.take_out();
                }
                if head_started.is_none() {
                    head_started = Some(arrived);
                }
                last_read = chunk.len();
                if !parser.has_partial() {
                    // Read in place if it can be (see `fresh`).
                    fresh = Some(chunk);
                    continue;
                }
                if parser.in_body() && !body_prepaid {
                    // Room in the budget first, then the copy into the parser.
                    let deadline = read_deadline(&parser, head_started, body_started, cfg);
                    let deadline = budget_deadline(Instant::now(), cfg).min(deadline);
                    if !body_mem.grow(chunk.len(), deadline).await {
                        return Busy::Closed(
                            out_of_line(refuse_body(stream, &mut out, cfg, core, &lane)).await,
                        );
                    }
                }
                push_pooled(&mut parser, &core.pool, &chunk);
            }
            // Half-close: every complete request was answered above; a partial one is dropped.
            Read::Eof | Read::Failed | Read::Drained => return end!(Busy::Closed(false)),
            Read::TimedOut => {
                timeout_response(&mut out, cfg);
                return Busy::Closed(flush_out_of_line!());
            }
        }
    }
}
