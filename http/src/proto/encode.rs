//! Response encoding into the connection's output buffer.

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
    if !has_date {
        date.with_line(|line| out.extend_from_slice(line));
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
