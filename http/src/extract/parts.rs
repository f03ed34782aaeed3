//! Extractors that read the request's head: method, URI, headers, query, state, extensions,
//! peer address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Deref;
use std::rc::Rc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;

use super::{FromRef, FromRequestParts, Parts, Rejection, RejectionKind};

impl<S> FromRequestParts<S> for Method {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Infallible> {
        Ok(parts.method().clone())
    }
}

/// The request target as an `http::Uri`; 400 `invalid-uri` for a target the server's parser
/// admitted but `http::Uri` does not accept (its character set is narrower).
impl<S> FromRequestParts<S> for Uri {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Rejection> {
        Uri::try_from(parts.uri()).map_err(|e| Rejection::new(RejectionKind::InvalidUri, e.to_string()))
    }
}

/// A copy of the header fields (allocates: prefer [`Parts::header`] on a hot path).
impl<S> FromRequestParts<S> for HeaderMap {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Infallible> {
        let mut map = HeaderMap::new();
        for (name, value) in parts.headers() {
            // The parser admitted only valid names and values; skip rather than fail if not.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        Ok(map)
    }
}

/// A copy of the request's parts.
impl<S> FromRequestParts<S> for Parts {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Infallible> {
        Ok(parts.clone())
    }
}

/// The router's per-core state, or the part of it that `T: FromRef<S>` takes.
///
/// Differs from axum: the state is an `Rc` (one per core, built there, never cloned), so the
/// field is an `Rc<T>` and `T` need not be `Clone`.
#[derive(Debug)]
pub struct State<T>(pub Rc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<S, T: FromRef<S>> FromRequestParts<S> for State<T> {
    type Rejection = Infallible;

    async fn from_request_parts(_: &mut Parts, state: &Rc<S>) -> Result<Self, Infallible> {
        Ok(State(T::from_ref(state)))
    }
}

/// A value of type `T` that middleware attached with
/// [`Request::extensions_mut`](crate::Request::extensions_mut) (cloned); 500
/// `missing-extension` if none was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extension<T>(pub T);

impl<S, T: Clone + 'static> FromRequestParts<S> for Extension<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Rejection> {
        parts
            .extensions()
            .get::<T>()
            .cloned()
            .map(Extension)
            .ok_or_else(|| {
                Rejection::new(
                    RejectionKind::MissingExtension,
                    format!("no {} attached to the request", std::any::type_name::<T>()),
                )
            })
    }
}

/// The client's address: `ConnectInfo<SocketAddr>`. Every request the server reads has one;
/// 500 `missing-connect-info` for one built without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectInfo<T>(pub T);

impl<S> FromRequestParts<S> for ConnectInfo<SocketAddr> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Rejection> {
        parts.peer_addr().map(ConnectInfo).ok_or_else(|| {
            Rejection::new(
                RejectionKind::MissingConnectInfo,
                "the request has no peer address",
            )
        })
    }
}

/// The query string deserialized with `serde_urlencoded` (`?page=2&tag=a` into a struct or a
/// map); no query is the empty string (so a struct of `Option` fields or with defaults
/// works). 400 `invalid-query` when it does not fit `T`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<S, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Rejection> {
        serde_urlencoded::from_str(parts.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| Rejection::new(RejectionKind::InvalidQuery, e.to_string()))
    }
}
