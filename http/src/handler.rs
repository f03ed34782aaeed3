//! Handlers are plain `async fn`s whose arguments are extractors.
//!
//! ```text
//! async fn show(Path(id): Path<u64>, State(db): State<Db>) -> impl IntoResponse { .. }
//! async fn raw(req: Request) -> String { .. }
//! ```
//!
//! An argument type implements [`FromRequest`]; extraction failures become responses
//! (`400` for a bad path parameter or JSON body, `415` for a non-JSON content type).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::str::FromStr;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::request::Request;
use crate::response::{IntoResponse, Json, Response};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Response>>>;

/// A type-erased handler, stored in the router.
pub(crate) type BoxHandler<S> = Rc<dyn Fn(Request, Rc<S>) -> BoxFuture>;

/// Something that can be built from the request (and the per-core state `S`).
pub trait FromRequest<S>: Sized {
    /// Extracts, or returns the response to send instead.
    fn from_request(req: &mut Request, state: &Rc<S>) -> Result<Self, Response>;
}

/// The whole request (takes it: put it last among the arguments).
impl<S> FromRequest<S> for Request {
    fn from_request(req: &mut Request, _: &Rc<S>) -> Result<Self, Response> {
        Ok(std::mem::take(req))
    }
}

/// The per-core application state given to [`Router::with_state`](crate::Router::with_state).
#[derive(Debug)]
pub struct State<S>(pub Rc<S>);

impl<S> FromRequest<S> for State<S> {
    fn from_request(_: &mut Request, state: &Rc<S>) -> Result<Self, Response> {
        Ok(State(state.clone()))
    }
}

/// The route's single path parameter, parsed with `FromStr` (e.g. `Path<u64>` for
/// `/items/{id}`). A value that does not parse gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<S, T: FromStr> FromRequest<S> for Path<T> {
    fn from_request(req: &mut Request, _: &Rc<S>) -> Result<Self, Response> {
        let Some((_, value)) = req.params().first() else {
            return Err(Response::error(StatusCode::INTERNAL_SERVER_ERROR));
        };
        value
            .parse()
            .map(Path)
            .map_err(|_| (StatusCode::BAD_REQUEST, "invalid path parameter").into_response())
    }
}

/// All path parameters, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<S> FromRequest<S> for Params {
    fn from_request(req: &mut Request, _: &Rc<S>) -> Result<Self, Response> {
        Ok(Params(req.params().to_vec()))
    }
}

/// The request body as bytes.
impl<S> FromRequest<S> for Bytes {
    fn from_request(req: &mut Request, _: &Rc<S>) -> Result<Self, Response> {
        Ok(req.body().clone())
    }
}

/// The request body as UTF-8 text (400 if it is not).
impl<S> FromRequest<S> for String {
    fn from_request(req: &mut Request, _: &Rc<S>) -> Result<Self, Response> {
        String::from_utf8(req.body().to_vec())
            .map_err(|_| (StatusCode::BAD_REQUEST, "body is not UTF-8").into_response())
    }
}

/// A JSON body: 415 unless `Content-Type` is `application/json` (or `+json`), 400 if it does
/// not parse as `T`.
impl<S, T: DeserializeOwned> FromRequest<S> for Json<T> {
    fn from_request(req: &mut Request, _: &Rc<S>) -> Result<Self, Response> {
        let is_json = req.content_type().is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        if !is_json {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected application/json").into_response());
        }
        serde_json::from_slice(req.body())
            .map(Json)
            .map_err(|_| (StatusCode::BAD_REQUEST, "invalid JSON body").into_response())
    }
}

/// An async function usable as a route handler. Implemented for `Fn(T1, .., Tn) -> Fut`
/// (n = 0..4) where every `Ti: FromRequest<S>` and `Fut::Output: IntoResponse`.
pub trait Handler<T, S>: Clone + 'static {
    /// Runs the handler.
    fn call(&self, req: Request, state: Rc<S>) -> BoxFuture;
}

macro_rules! impl_handler {
    ($($t:ident),*) => {
        impl<F, Fut, S, $($t,)*> Handler<($($t,)*), S> for F
        where
            F: Fn($($t),*) -> Fut + Clone + 'static,
            Fut: Future + 'static,
            Fut::Output: IntoResponse,
            S: 'static,
            $($t: FromRequest<S> + 'static,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, mut req: Request, state: Rc<S>) -> BoxFuture {
                $(
                    let $t = match $t::from_request(&mut req, &state) {
                        Ok(v) => v,
                        Err(resp) => return Box::pin(std::future::ready(resp)),
                    };
                )*
                let fut = (self)($($t),*);
                Box::pin(async move { fut.await.into_response() })
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);

pub(crate) fn erase<H, T, S>(h: H) -> BoxHandler<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    Rc::new(move |req, state| h.call(req, state))
}
