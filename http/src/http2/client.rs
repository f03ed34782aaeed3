//! The HTTP/2 side of [`crate::client::Client`]: hyper's HTTP/2 client connection over the
//! same adapter as the server (`TransportIo`), its connection task on the core
//! (`spawn_local`), one multiplexed connection per host and core.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use hyper::body::Body as _;
use hyper::client::conn::http2::SendRequest;

use super::convert::H2Body;
use super::io::TransportIo;
use super::rt::{LocalExec, LocalTimer};
use crate::conn::Transport;

/// A handle on one HTTP/2 client connection; clones share it.
pub(crate) type H2Sender = SendRequest<H2Body>;

/// Starts HTTP/2 on `stream` (TLS that negotiated `h2`, or cleartext by prior knowledge); the
/// connection runs in a task of its own until every handle is dropped or the server closes it.
pub(crate) async fn handshake<T: Transport + 'static>(
    stream: T,
    write_timeout: Duration,
) -> io::Result<H2Sender> {
    let io = TransportIo::new(stream, None, write_timeout);
    let (sender, conn) = hyper::client::conn::http2::Builder::new(LocalExec)
        .timer(LocalTimer)
        .handshake::<_, H2Body>(io)
        .await
        .map_err(io::Error::other)?;
    ringcore_runtime::spawn_local(async move {
        // Ends with the connection (an error included: the handles then fail).
        let _ = conn.await;
    })
    .detach();
    Ok(sender)
}

/// What [`send`] got back.
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

/// Sends one request on `sender` and reads the whole answer.
pub(crate) async fn send(
    sender: &mut H2Sender,
    method: Method,
    uri: Uri,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> io::Result<Answer> {
    let mut req = http::Request::new(if body.is_empty() {
        H2Body::Empty
    } else {
        H2Body::Full(Some(body))
    });
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    let h = req.headers_mut();
    for (name, value) in headers {
        // `:authority` comes from the URI; HTTP/2 forbids connection-specific fields.
        let skip = [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONNECTION,
            http::header::TRANSFER_ENCODING,
        ];
        if !skip.contains(name) {
            h.append(name.clone(), value.clone());
        }
    }
    sender.ready().await.map_err(io::Error::other)?;
    let resp = sender.send_request(req).await.map_err(io::Error::other)?;
    let (parts, mut incoming) = resp.into_parts();
    let mut data = BytesMut::new();
    loop {
        match poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => {
                if let Ok(d) = frame.into_data() {
                    data.extend_from_slice(&d);
                }
            }
        }
    }
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Answer {
        status: parts.status,
        version: parts.version,
        headers,
        body: data.freeze(),
    })
}
