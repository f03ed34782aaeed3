//! Body extractors (the last argument of a handler): `Bytes`, `String`, `Json<T>`,
//! `Form<T>`, the whole `Request`, and `BodyStream`.
//!
//! The buffered ones get the whole body from the connection (a route whose handler does not
//! take a `BodyStream` has its body buffered before the handler runs); given a streamed body
//! (a request put together by hand) they read it to its end first.

use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{FromRequest, Parts, Rejection, RejectionKind};
use crate::response::Json;
use crate::{BodyStream, Request};

/// The request's whole body: its bytes, or its stream read to the end.
async fn whole_body(req: Request) -> Result<(super::Parts, Bytes), Rejection> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(Rejection::from)?;
    Ok((parts, bytes))
}

/// The body read from the socket as the handler consumes it (see [`BodyStream`]).
impl<S> FromRequest<S> for BodyStream {
    type Rejection = Infallible;
    const STREAMS_BODY: bool = true;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Infallible> {
        Ok(req.body_stream())
    }
}

/// The whole request (its body included).
impl<S> FromRequest<S> for Request {
    type Rejection = Infallible;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Infallible> {
        Ok(req)
    }
}

/// The request body as bytes (buffered whole, up to the body limit). A streamed body that
/// fails to arrive whole is rejected with its [`BodyError`](crate::BodyError)'s problem.
impl<S> FromRequest<S> for Bytes {
    type Rejection = Rejection;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Rejection> {
        Ok(whole_body(req).await?.1)
    }
}

/// The request body as UTF-8 text (400 `invalid-utf8-body` if it is not).
impl<S> FromRequest<S> for String {
    type Rejection = Rejection;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Rejection> {
        let (_, body) = whole_body(req).await?;
        String::from_utf8(body.to_vec())
            .map_err(|e| Rejection::new(RejectionKind::InvalidUtf8Body, e.to_string()))
    }
}

/// The essence of the `Content-Type` (`type/subtype`, lower case), if any.
fn mime(parts: &Parts) -> Option<String> {
    let ct = parts.content_type()?;
    Some(ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// A JSON body: 415 `missing-json-content-type` unless `Content-Type` is
/// `application/json` (or `application/*+json`), 400 `invalid-json-body` if it does not parse
/// as `T`.
impl<S, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Rejection> {
        let is_json = mime(req.parts()).is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
        if !is_json {
            return Err(Rejection::new(
                RejectionKind::MissingJsonContentType,
                format!("Content-Type is {:?}", req.content_type().unwrap_or("")),
            ));
        }
        let (_, body) = whole_body(req).await?;
        serde_json::from_slice(&body)
            .map(Json)
            .map_err(|e| Rejection::new(RejectionKind::InvalidJsonBody, e.to_string()))
    }
}

/// An `application/x-www-form-urlencoded` body deserialized with `serde_urlencoded`: 415
/// `missing-form-content-type` for another type, 400 `invalid-form-body` when it does not fit
/// `T`. (For a query string use [`Query`](super::Query).)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Rejection> {
        if mime(req.parts()).as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(Rejection::new(
                RejectionKind::MissingFormContentType,
                format!("Content-Type is {:?}", req.content_type().unwrap_or("")),
            ));
        }
        let (_, body) = whole_body(req).await?;
        serde_urlencoded::from_bytes(&body)
            .map(Form)
            .map_err(|e| Rejection::new(RejectionKind::InvalidFormBody, e.to_string()))
    }
}
