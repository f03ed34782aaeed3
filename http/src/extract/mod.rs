//! Extractors: typed arguments of handlers, shaped like axum-core.
//!
//! A handler's arguments are built from the request before it runs. Every argument but the
//! last implements [`FromRequestParts`] (it reads the method, target, headers, path
//! parameters, peer, extensions or state, and never the body); the last may instead implement
//! [`FromRequest`] and consume the body. So a handler with two body extractors, or a body
//! extractor before another argument, does not compile.
//!
//! | extractor | reads | rejection |
//! |---|---|---|
//! | [`Method`](http::Method), [`HeaderMap`](http::HeaderMap), [`Parts`] | the head | none |
//! | [`Uri`](http::Uri) | the target | 400 `invalid-uri` |
//! | [`Path<T>`] | path parameters, percent-decoded, by serde | 400 `invalid-path-params` |
//! | [`Params`] | path parameters by name, percent-decoded | 400 `invalid-path-params` |
//! | [`Query<T>`] | the query string, by `serde_urlencoded` | 400 `invalid-query` |
//! | [`State<T>`] | the router's state or a part of it ([`FromRef`]) | none |
//! | [`Extension<T>`] | a value attached by middleware | 500 `missing-extension` |
//! | [`ConnectInfo<SocketAddr>`](ConnectInfo) | the peer address | 500 `missing-connect-info` |
//! | [`Bytes`](bytes::Bytes) (last) | the body | none |
//! | [`BodyStream`](crate::BodyStream) (last) | the body, read from the socket as the handler consumes it | none (errors come from `next()`) |
//! | [`String`] (last) | the body as UTF-8 | 400 `invalid-utf8-body` |
//! | [`Json<T>`](crate::Json) (last) | a JSON body | 415 `missing-json-content-type`, 400 `invalid-json-body` |
//! | [`Form<T>`] (last) | an urlencoded body | 415 `missing-form-content-type`, 400 `invalid-form-body` |
//! | [`Request`](crate::Request) (last) | everything | none |
//!
//! `Option<T>` around any of them is `None` instead of the rejection; `Result<T,
//! T::Rejection>` hands the rejection to the handler. Rejections answer RFC 9457 problem
//! details (`application/problem+json`, see [`Rejection`]); to answer your own way, wrap the
//! extractor in [`WithRejection<E, R>`](WithRejection) with your `R: From<E::Rejection>`.
//!
//! Extraction is async (`fn .. -> impl Future`, or `async fn` in an impl): an extractor may
//! look something up before the handler runs. Handlers and extractors run on the core that
//! took the connection, so nothing needs `Send`.
//!
//! ```
//! use ringcore_http::extract::{FromRequestParts, Parts};
//! use ringcore_http::{Problem, StatusCode};
//! use std::rc::Rc;
//!
//! /// The caller, from `X-User` (a real service would check a token).
//! struct User(String);
//!
//! impl<S> FromRequestParts<S> for User {
//!     type Rejection = Problem;
//!
//!     async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Problem> {
//!         match parts.header_str("x-user") {
//!             Some(u) if !u.is_empty() => Ok(User(u.to_string())),
//!             _ => Err(Problem::new(StatusCode::UNAUTHORIZED, "urn:app:no-user", "Who are you?")),
//!         }
//!     }
//! }
//!
//! async fn me(User(name): User) -> String {
//!     name
//! }
//! let _ = ringcore_http::Router::new().route("/me", ringcore_http::get(me));
//! ```

use std::future::Future;
use std::rc::Rc;

use crate::response::IntoResponse;

mod body;
mod parts;
mod path;
mod rejection;

pub use crate::request::{Extensions, Parts};
pub use crate::response::Json;
pub use body::Form;
pub use parts::{ConnectInfo, Extension, Query, State};
pub use path::{Params, Path};
pub use rejection::{Rejection, RejectionKind, WithRejection};

/// An extractor that reads only the request's [`Parts`] (any argument of a handler).
///
/// `S` is the router's state type; `state` is this core's instance.
pub trait FromRequestParts<S>: Sized {
    /// What the request gets when extraction fails.
    type Rejection: IntoResponse;

    /// Extracts from `parts`.
    fn from_request_parts(
        parts: &mut Parts,
        state: &Rc<S>,
    ) -> impl Future<Output = Result<Self, Self::Rejection>>;
}

/// Marks the [`FromRequest`] implementation every [`FromRequestParts`] type gets.
#[derive(Debug, Clone, Copy)]
pub enum ViaParts {}

/// Marks a [`FromRequest`] implementation that consumes the body.
#[derive(Debug, Clone, Copy)]
pub enum ViaRequest {}

/// An extractor that may consume the body: only the last argument of a handler.
///
/// `M` tells implementations apart: body extractors implement `FromRequest<S>` (that is,
/// `M = ViaRequest`); every [`FromRequestParts`] type also implements
/// `FromRequest<S, ViaParts>`, so a parts extractor may be last too.
pub trait FromRequest<S, M = ViaRequest>: Sized {
    /// What the request gets when extraction fails.
    type Rejection: IntoResponse;

    /// True if this extractor reads the body as it arrives (as [`BodyStream`](crate::BodyStream)
    /// does): the connection then calls the handler as soon as the request's head is
    /// complete and reads the body from the socket as the handler asks for it, instead of
    /// buffering it whole first. False by default (the body is complete before the handler
    /// runs). An extractor wrapping `BodyStream` sets it too.
    const STREAMS_BODY: bool = false;

    /// Extracts from the whole request.
    fn from_request(
        req: crate::Request,
        state: &Rc<S>,
    ) -> impl Future<Output = Result<Self, Self::Rejection>>;
}

impl<S, T: FromRequestParts<S>> FromRequest<S, ViaParts> for T {
    type Rejection = T::Rejection;

    async fn from_request(req: crate::Request, state: &Rc<S>) -> Result<Self, Self::Rejection> {
        let (mut parts, _) = req.into_parts();
        T::from_request_parts(&mut parts, state).await
    }
}

/// A value made from a reference to the router's state: lets [`State<T>`] take a part of it.
///
/// The state of a router lives in an `Rc` on each core; a part is handed out as an `Rc` too
/// (keep the parts you want to extract as `Rc` fields of the state).
///
/// ```
/// use ringcore_http::extract::{FromRef, State};
/// use std::rc::Rc;
///
/// struct Db;
/// struct App { db: Rc<Db>, name: String }
///
/// impl FromRef<App> for Db {
///     fn from_ref(app: &Rc<App>) -> Rc<Db> {
///         app.db.clone()
///     }
/// }
///
/// async fn handler(State(_db): State<Db>) {}
/// let app = App { db: Rc::new(Db), name: "shop".into() };
/// let _ = ringcore_http::Router::with_state(app).route("/", ringcore_http::get(handler));
/// ```
pub trait FromRef<S> {
    /// Takes this part of `state`.
    fn from_ref(state: &Rc<S>) -> Rc<Self>;
}

impl<S> FromRef<S> for S {
    fn from_ref(state: &Rc<S>) -> Rc<S> {
        state.clone()
    }
}

impl<S, T: FromRequestParts<S>> FromRequestParts<S> for Option<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Rc<S>) -> Result<Self, Self::Rejection> {
        Ok(T::from_request_parts(parts, state).await.ok())
    }
}

impl<S, T: FromRequestParts<S>> FromRequestParts<S> for Result<T, T::Rejection> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Rc<S>) -> Result<Self, Self::Rejection> {
        Ok(T::from_request_parts(parts, state).await)
    }
}

impl<S, T: FromRequest<S>> FromRequest<S> for Option<T> {
    type Rejection = std::convert::Infallible;
    const STREAMS_BODY: bool = T::STREAMS_BODY;

    async fn from_request(req: crate::Request, state: &Rc<S>) -> Result<Self, Self::Rejection> {
        Ok(T::from_request(req, state).await.ok())
    }
}

impl<S, T: FromRequest<S>> FromRequest<S> for Result<T, T::Rejection> {
    type Rejection = std::convert::Infallible;
    const STREAMS_BODY: bool = T::STREAMS_BODY;

    async fn from_request(req: crate::Request, state: &Rc<S>) -> Result<Self, Self::Rejection> {
        Ok(T::from_request(req, state).await)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;
    use crate::response::Body;

    struct Noop;

    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// Runs a future that never waits (these extractors do not).
    fn ready<F: Future>(f: F) -> F::Output {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        match pin!(f).as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the extractor waited"),
        }
    }

    fn problem(r: Rejection) -> (u16, String, serde_json::Value) {
        let resp = r.into_response();
        let ct = resp
            .content_type()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match resp.body() {
            Body::Full(b) => serde_json::from_slice(b).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        (resp.status_code().as_u16(), ct, body)
    }

    /// What a request built without a connection (no peer, no target) gets.
    #[test]
    fn a_request_without_peer_or_target_is_rejected_as_a_server_fault() {
        let state = Rc::new(());
        let mut parts = Parts::default();
        let r =
            ready(ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, &state)).expect_err("no peer");
        assert_eq!(r.kind(), RejectionKind::MissingConnectInfo);
        let (status, ct, body) = problem(r);
        assert_eq!((status, ct.as_str()), (500, "application/problem+json"));
        assert_eq!(body["type"], "urn:ringcore:rejection:missing-connect-info");
        assert_eq!(body["status"], 500);

        let r = ready(http::Uri::from_request_parts(&mut parts, &state)).expect_err("empty target");
        assert_eq!(r.kind(), RejectionKind::InvalidUri);
        assert_eq!(problem(r).0, 400);

        let none = ready(Option::<ConnectInfo<SocketAddr>>::from_request_parts(
            &mut parts, &state,
        ));
        assert_eq!(none, Ok(None));
        let err = ready(Result::<Extension<u8>, Rejection>::from_request_parts(
            &mut parts, &state,
        ));
        assert_eq!(
            err.ok().and_then(|r| r.err()).map(|r| r.kind()),
            Some(RejectionKind::MissingExtension)
        );
        parts.extensions_mut().insert(7u8);
        let ext = ready(Extension::<u8>::from_request_parts(&mut parts, &state));
        assert_eq!(ext, Ok(Extension(7)));
    }

    #[test]
    fn every_rejection_kind_answers_its_status_as_a_problem() {
        use RejectionKind::*;
        let kinds = [
            (InvalidPathParams, 400),
            (InvalidQuery, 400),
            (InvalidUri, 400),
            (MissingJsonContentType, 415),
            (InvalidJsonBody, 400),
            (MissingFormContentType, 415),
            (InvalidFormBody, 400),
            (InvalidUtf8Body, 400),
            (MissingExtension, 500),
            (MissingConnectInfo, 500),
            (BodyTooLarge, 413),
            (BodyReadFailed, 400),
            (BodyTimedOut, 408),
        ];
        for (kind, status) in kinds {
            let (s, ct, body) = problem(Rejection::new(kind, "why"));
            assert_eq!((s, ct.as_str()), (status, "application/problem+json"), "{kind:?}");
            assert_eq!(
                body,
                serde_json::json!({
                    "type": format!("urn:ringcore:rejection:{}", kind.slug()),
                    "title": kind.title(),
                    "status": status,
                    "detail": "why",
                }),
                "{kind:?}"
            );
        }
    }
}
