//! Response encoding into the connection's output buffer.

use std::cell::RefCell;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, SERVER, TRANSFER_ENCODING};
use http::StatusCode;

use super::date;

/// How the body of this response is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delimit {
    /// `Content-Length: n` (n may be 0).
    Length(u64),
    /// No body and no length field (1xx, 204, 304).
    NoBody,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Ended by closing the connection (streaming to an HTTP/1.0 client).
    Close,
}

/// The `Connection` field a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// None: HTTP/1.1 keeps the connection open by default.
    Default,
    /// `Connection: close`: the server closes after this response.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client asked to keep the connection.
    KeepAlive,
}

impl Persist {
    /// For a response to a request of `version` on a connection that stays open or not.
    pub(crate) fn new(version: http::Version, keep_alive: bool) -> Self {
        match (keep_alive, version == http::Version::HTTP_10) {
            (false, _) => Persist::Close,
            (true, true) => Persist::KeepAlive,
            (true, false) => Persist::Default,
        }
    }
}

/// Statuses that never carry a body or a Content-Length.
pub(crate) fn bodyless(status: StatusCode) -> bool {
    status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

/// Writes the status line and header section.
pub(crate) fn head(
    out: &mut Vec<u8>,
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    server: &HeaderValue,
    delimit: Delimit,
    persist: Persist,
) {
    let date = date::Handle::current();
    head_with(
        out,
        status,
        content_type,
        headers,
        server,
        delimit,
        persist,
        &date,
    );
}

/// [`head`] with this core's `Date` cache looked up already (a connection looks it up once
/// per busy stretch, not per answer).
#[allow(clippy::too_many_arguments)]
pub(crate) fn head_with(
    out: &mut Vec<u8>,
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    server: &HeaderValue,
    delimit: Delimit,
    persist: Persist,
    date: &date::Handle,
) {
    // One reservation for the whole head: the fixed lines take under 160 bytes.
    let extra: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    out.reserve(160 + server.len() + content_type.map_or(0, |c| c.len() + 16) + extra);
    let has_date = prefix(out, status, content_type, headers, server);
    finish(out, has_date, delimit, persist, date);
}

/// The start of the last head this core wrote without fields of the handler's own: its
/// status line and its `Content-Type` and `Server` lines. Most answers of a route share
/// them, so [`head_cached`] copies them in one piece instead of assembling them again.
///
/// It keeps that whole head too, `Date` to the empty line, under the second its `Date`
/// shows and its framing and `Connection` fields: the next answer alike in that second (the
/// same body length, the usual case of a busy route) is one copy.
pub(crate) struct HeadPrefix {
    /// 0 while nothing is kept.
    status: u16,
    content_type: Option<HeaderValue>,
    server: HeaderValue,
    bytes: Vec<u8>,
    /// What `whole` was written for: the `Date` second, the framing, the `Connection` field
    /// (`None`: nothing kept).
    whole_for: Option<(u64, Delimit, Persist)>,
    /// The whole last head written from `bytes`.
    whole: Vec<u8>,
}

impl Default for HeadPrefix {
    fn default() -> Self {
        Self {
            status: 0,
            content_type: None,
            server: HeaderValue::from_static(""),
            bytes: Vec::new(),
            whole_for: None,
            whole: Vec::new(),
        }
    }
}

impl HeadPrefix {
    /// The kept start is that of a head with this status, content type and server (and no
    /// fields of the handler's own).
    #[inline(always)]
    fn same_start(
        &self,
        status: StatusCode,
        content_type: Option<&HeaderValue>,
        server: &HeaderValue,
    ) -> bool {
        self.status == status.as_u16()
            && match (&self.content_type, content_type) {
                (Some(a), Some(b)) => same_value(a, b),
                (None, None) => true,
                _ => false,
            }
            && same_value(&self.server, server)
    }
}

/// Equal values, found at once when both are the same static string (the usual case).
#[inline(always)]
fn same_value(a: &HeaderValue, b: &HeaderValue) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// [`head_with`] through this core's [`HeadPrefix`]: the same bytes, assembled from the kept
/// start when the status, content type and server match and the handler set no fields.
///
/// The usual answer (the whole head of the last one alike, made in this second) is one
/// check and one copy, inlined where the answer is written; anything else goes to
/// [`head_assembled`], out of line (a call with nine arguments, its prologue and epilogue
/// were about 30 of the 100 instructions a kept head cost under
/// `scripts/callgrind-http.sh`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn head_cached(
    out: &mut Vec<u8>,
    kept: &RefCell<HeadPrefix>,
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    server: &HeaderValue,
    delimit: Delimit,
    persist: Persist,
    date: &date::Handle,
) {
    if headers.is_empty() {
        if let Some(s) = date.second() {
            let k = kept.borrow();
            if k.whole_for == Some((s, delimit, persist)) && k.same_start(status, content_type, server) {
                out.extend_from_slice(&k.whole);
                return;
            }
        }
    }
    head_assembled(
        out,
        kept,
        status,
        content_type,
        headers,
        server,
        delimit,
        persist,
        date,
    )
}

/// [`head_cached`] past its first check: a head with fields of the handler's own, or one
/// whose whole head is not kept (another second, framing or `Connection` field, or another
/// start).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn head_assembled(
    out: &mut Vec<u8>,
    kept: &RefCell<HeadPrefix>,
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    server: &HeaderValue,
    delimit: Delimit,
    persist: Persist,
    date: &date::Handle,
) {
    if !headers.is_empty() {
        return head_with(out, status, content_type, headers, server, delimit, persist, date);
    }
    if kept.borrow().same_start(status, content_type, server) {
        return date.with_stamped_line(|line, secs| {
            let mut k = kept.borrow_mut();
            let key = secs.map(|s| (s, delimit, persist));
            out.reserve(k.bytes.len() + 100);
            let start = out.len();
            out.extend_from_slice(&k.bytes);
            finish_with(out, Some(line), delimit, persist);
            if key.is_none() {
                // Off a runtime core: nothing to keep it under.
                return;
            }
            let k = &mut *k;
            k.whole.clear();
            k.whole.extend_from_slice(&out[start..]);
            k.whole_for = key;
        });
    }
    out.reserve(160 + server.len() + content_type.map_or(0, |c| c.len() + 16));
    let start = out.len();
    let has_date = prefix(out, status, content_type, headers, server);
    let mut k = kept.borrow_mut();
    k.whole_for = None;
    k.status = status.as_u16();
    k.content_type = content_type.cloned();
    k.server = server.clone();
    k.bytes.clear();
    k.bytes.extend_from_slice(&out[start..]);
    drop(k);
    finish(out, has_date, delimit, persist, date);
}

/// The status line, `Content-Type`, the handler's fields (less the framing ones) and
/// `Server`; true if the handler set `Date` itself.
fn prefix(
    out: &mut Vec<u8>,
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    server: &HeaderValue,
) -> bool {
    match status_line(status) {
        Some(line) => out.extend_from_slice(line),
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(status.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(ct) = content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ct.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut has_server = false;
    let mut has_date = false;
    for (name, value) in headers {
        if *name == CONTENT_LENGTH || *name == TRANSFER_ENCODING || *name == CONNECTION {
            continue;
        }
        has_server |= *name == SERVER;
        has_date |= *name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_server && !server.is_empty() {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(server.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    has_date
}

/// `Date` (unless the handler set it), the framing field and the `Connection` field, then
/// the empty line.
fn finish(out: &mut Vec<u8>, has_date: bool, delimit: Delimit, persist: Persist, date: &date::Handle) {
    if has_date {
        finish_with(out, None, delimit, persist);
    } else {
        date.with_line(|line| finish_with(out, Some(line), delimit, persist));
    }
}

/// [`finish`] with the `Date` line given (`None`: the handler set its own).
fn finish_with(out: &mut Vec<u8>, date_line: Option<&[u8]>, delimit: Delimit, persist: Persist) {
    if let Some(line) = date_line {
        out.extend_from_slice(line);
    }
    match delimit {
        Delimit::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Delimit::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Delimit::NoBody | Delimit::Close => {}
    }
    match persist {
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n\r\n"),
        Persist::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n\r\n"),
        Persist::Default => out.extend_from_slice(b"\r\n"),
    }
}

/// The whole status line of the common statuses, pre-encoded.
fn status_line(status: StatusCode) -> Option<&'static [u8]> {
    Some(match status.as_u16() {
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        409 => b"HTTP/1.1 409 Conflict\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        _ => return None,
    })
}

/// Writes one chunk of a chunked body.
pub(crate) fn chunk(out: &mut Vec<u8>, data: &Bytes) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    loop {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The head with its `Date` value blanked (the clock may tick between two heads).
    fn undated(mut head: Vec<u8>) -> String {
        if let Some(at) = head.windows(6).position(|w| w == b"Date: ") {
            head[at + 6..at + 35].fill(b'D');
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    #[test]
    fn a_kept_head_start_gives_the_bytes_of_a_head_assembled_anew() {
        // Off a runtime core (no `Date` second to keep a whole head under), and on one.
        kept_heads_match_heads_assembled_anew();
        ringcore_runtime::block_on_with(|| async { kept_heads_match_heads_assembled_anew() });
    }

    fn kept_heads_match_heads_assembled_anew() {
        let kept = RefCell::new(HeadPrefix::default());
        let date = date::Handle::current();
        let plain = HeaderValue::from_static("text/plain; charset=utf-8");
        // Equal bytes, another allocation: compared by value.
        let plain_copy = HeaderValue::from_bytes(plain.as_bytes()).ok();
        let json = HeaderValue::from_static("application/json");
        let rc = HeaderValue::from_static("ringcore");
        let other = HeaderValue::from_static("other/1");
        let none = HeaderValue::from_static("");
        let extra = vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("1"))];
        let dated = vec![(DATE, HeaderValue::from_static("yesterday"))];
        let ok = StatusCode::OK;
        let odd = StatusCode::from_u16(299).unwrap_or(ok);
        type Case<'a> = (
            StatusCode,
            Option<&'a HeaderValue>,
            &'a [(HeaderName, HeaderValue)],
            &'a HeaderValue,
            Delimit,
            Persist,
        );
        let (nf, nc) = (StatusCode::NOT_FOUND, StatusCode::NO_CONTENT);
        let (d, ka, cl) = (Persist::Default, Persist::KeepAlive, Persist::Close);
        let len = Delimit::Length;
        let cases: Vec<Case<'_>> = vec![
            (ok, Some(&plain), &[], &rc, len(13), d),
            (ok, Some(&plain), &[], &rc, len(13), d),
            (ok, plain_copy.as_ref(), &[], &rc, len(7), ka),
            (ok, Some(&json), &[], &rc, len(27), d),
            (nf, Some(&json), &[], &rc, len(2), cl),
            (nf, Some(&json), &[], &rc, Delimit::Chunked, d),
            (ok, None, &[], &rc, len(0), d),
            (ok, None, &[], &rc, len(0), d),
            (ok, Some(&plain), &extra, &rc, len(1), d),
            (ok, Some(&plain), &dated, &rc, len(1), d),
            (ok, Some(&plain), &[], &rc, len(1), d),
            (ok, Some(&plain), &[], &other, len(1), d),
            (ok, Some(&plain), &[], &none, len(1), d),
            (nc, None, &[], &rc, Delimit::NoBody, d),
            (odd, None, &[], &rc, Delimit::Close, cl),
            (odd, None, &[], &rc, Delimit::Close, cl),
        ];
        let mut wholes = 0;
        for (i, (status, ctype, headers, server, delimit, persist)) in cases.into_iter().enumerate() {
            let mut kept_head = b"earlier answer".to_vec();
            head_cached(
                &mut kept_head,
                &kept,
                status,
                ctype,
                headers,
                server,
                delimit,
                persist,
                &date,
            );
            let mut anew = b"earlier answer".to_vec();
            head_with(&mut anew, status, ctype, headers, server, delimit, persist, &date);
            assert_eq!(undated(kept_head), undated(anew.clone()), "case {i}");
            if headers.is_empty() {
                // What is kept now is this head's start, and on a core the whole head under
                // the second it shows (a repeated case is then one copy of it).
                let k = kept.borrow();
                assert_eq!(k.status, status.as_u16(), "case {i}");
                // A whole head is kept once a second answer alike in status, content type
                // and server is made from the kept start, and only on a core (under the
                // second it shows: this one, or the one before if it just ended).
                let kept_second = k.whole_for.map(|(s, ..)| s);
                if let Some(s) = kept_second {
                    wholes += 1;
                    let now = date.second();
                    assert!(
                        now.is_some_and(|now| s == now || s + 1 == now),
                        "case {i}: {s} at {now:?}"
                    );
                    assert_eq!(undated(k.whole.clone()), undated(anew[14..].to_vec()), "case {i}");
                }
            }
        }
        assert_eq!(wholes > 0, date.second().is_some(), "{wholes} whole heads kept");
        let k = kept.borrow();
        assert_eq!(k.bytes, b"HTTP/1.1 299 Unknown\r\nServer: ringcore\r\n");
    }

    #[test]
    fn head_has_length_date_server_and_no_user_framing() {
        let mut out = Vec::new();
        let headers = vec![
            (http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            (CONTENT_LENGTH, HeaderValue::from_static("999")),
        ];
        head(
            &mut out,
            StatusCode::OK,
            None,
            &headers,
            &HeaderValue::from_static("ringcore"),
            Delimit::Length(13),
            Persist::Close,
        );
        let s = String::from_utf8(out).unwrap_or_default();
        assert!(
            s.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nServer: ringcore\r\nDate: "),
            "{s}"
        );
        assert!(
            s.ends_with(" GMT\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"),
            "{s}"
        );
        assert!(!s.contains("999"));
    }

    #[test]
    fn pre_encoded_status_lines_match_the_general_form() {
        for code in [200, 201, 204, 301, 302, 304, 400, 404, 409, 429, 500, 503] {
            let status = StatusCode::from_u16(code).expect("a status");
            let general = format!(
                "HTTP/1.1 {} {}\r\n",
                status.as_str(),
                status.canonical_reason().unwrap_or("Unknown")
            );
            assert_eq!(status_line(status), Some(general.as_bytes()), "{code}");
        }
        assert_eq!(status_line(StatusCode::IM_A_TEAPOT), None);
        let mut out = Vec::new();
        let server = HeaderValue::from_static("s");
        head(
            &mut out,
            StatusCode::IM_A_TEAPOT,
            None,
            &[],
            &server,
            Delimit::Length(0),
            Persist::Default,
        );
        assert!(out.starts_with(b"HTTP/1.1 418 I'm a teapot\r\nServer: s\r\nDate: "));
        assert!(out.ends_with(b" GMT\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn chunks_are_hex_framed() {
        let mut out = Vec::new();
        chunk(&mut out, &Bytes::from(vec![b'a'; 300]));
        assert!(out.starts_with(b"12c\r\naaa"));
        assert!(out.ends_with(b"a\r\n"));
        let mut empty = Vec::new();
        chunk(&mut empty, &Bytes::new());
        assert!(empty.is_empty(), "an empty chunk would end the body");
    }
}
