//! Why an extractor refused a request, as an RFC 9457 problem; and [`WithRejection`] to
//! answer differently.

use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use http::StatusCode;

use super::{FromRequest, FromRequestParts, Parts};
use crate::response::{IntoResponse, Problem, Response};
use crate::Request;

/// What went wrong in extraction (one per rejection an extractor of this crate makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A path parameter did not decode (bad percent-encoding, not UTF-8) or deserialize into
    /// the `Path<T>` type (wrong count, not a number, ...). 400.
    InvalidPathParams,
    /// The query string did not deserialize into the `Query<T>` type. 400.
    InvalidQuery,
    /// The target is not a valid `Uri`. 400.
    InvalidUri,
    /// A `Json<T>` body without `Content-Type: application/json` (or `+json`). 415.
    MissingJsonContentType,
    /// A `Json<T>` body that does not parse as `T`. 400.
    InvalidJsonBody,
    /// A `Form<T>` body without `Content-Type: application/x-www-form-urlencoded`. 415.
    MissingFormContentType,
    /// A `Form<T>` body that does not deserialize into `T`. 400.
    InvalidFormBody,
    /// A `String` body that is not UTF-8. 400.
    InvalidUtf8Body,
    /// `Extension<T>` with no `T` attached to the request (a server bug). 500.
    MissingExtension,
    /// `ConnectInfo` on a request with no peer address (a server bug). 500.
    MissingConnectInfo,
    /// A streamed body passed the body-size limit ([`BodyError::TooLarge`](crate::BodyError)). 413.
    BodyTooLarge,
    /// A streamed body could not be read to its end: broken framing, the client left, or
    /// the connection stopped reading it ([`BodyError`](crate::BodyError)). 400.
    BodyReadFailed,
    /// A streamed body arrived too slowly ([`BodyError::TimedOut`](crate::BodyError)). 408.
    BodyTimedOut,
}

impl RejectionKind {
    /// The status the request gets.
    pub fn status(self) -> StatusCode {
        use RejectionKind::*;
        match self {
            MissingJsonContentType | MissingFormContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MissingExtension | MissingConnectInfo => StatusCode::INTERNAL_SERVER_ERROR,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyReadFailed | InvalidPathParams | InvalidQuery | InvalidUri | InvalidJsonBody
            | InvalidFormBody | InvalidUtf8Body => StatusCode::BAD_REQUEST,
        }
    }

    /// The short name in the problem type URI (`urn:ringcore:rejection:<slug>`).
    pub fn slug(self) -> &'static str {
        use RejectionKind::*;
        match self {
            InvalidPathParams => "invalid-path-params",
            InvalidQuery => "invalid-query",
            InvalidUri => "invalid-uri",
            MissingJsonContentType => "missing-json-content-type",
            InvalidJsonBody => "invalid-json-body",
            MissingFormContentType => "missing-form-content-type",
            InvalidFormBody => "invalid-form-body",
            InvalidUtf8Body => "invalid-utf8-body",
            MissingExtension => "missing-extension",
            MissingConnectInfo => "missing-connect-info",
            BodyTooLarge => "body-too-large",
            BodyReadFailed => "body-read-failed",
            BodyTimedOut => "body-timed-out",
        }
    }

    /// The problem title (fixed per kind).
    pub fn title(self) -> &'static str {
        use RejectionKind::*;
        match self {
            InvalidPathParams => "Invalid path parameters",
            InvalidQuery => "Invalid query string",
            InvalidUri => "Invalid request target",
            MissingJsonContentType => "Expected a JSON body (Content-Type: application/json)",
            InvalidJsonBody => "Invalid JSON body",
            MissingFormContentType => {
                "Expected a form body (Content-Type: application/x-www-form-urlencoded)"
            }
            InvalidFormBody => "Invalid form body",
            InvalidUtf8Body => "Body is not UTF-8",
            MissingExtension => "Missing request extension",
            MissingConnectInfo => "Missing peer address",
            BodyTooLarge => "Request body too large",
            BodyReadFailed => "Request body could not be read",
            BodyTimedOut => "Request body timed out",
        }
    }
}

/// An extractor's refusal: answers an RFC 9457 problem (`application/problem+json` with
/// `type` `urn:ringcore:rejection:<slug>`, `title`, `status`, `detail`).
///
/// ```json
/// {"type":"urn:ringcore:rejection:invalid-json-body","title":"Invalid JSON body",
///  "status":400,"detail":"EOF while parsing an object at line 1 column 9"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    detail: String,
}

impl Rejection {
    /// A rejection of `kind` with the occurrence's `detail`.
    pub fn new(kind: RejectionKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The status the request gets.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The explanation of this occurrence (a serde message, the missing type, ...).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// As a problem details value.
    pub fn to_problem(&self) -> Problem {
        Problem::new(
            self.status(),
            format!("urn:ringcore:rejection:{}", self.kind.slug()),
            self.kind.title(),
        )
        .detail(self.detail.clone())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.title(), self.detail)
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.to_problem().into_response()
    }
}

/// Extractor `E` whose rejection is turned into `R` (`R: From<E::Rejection>`): the way to
/// answer a rejection your own way, per argument.
///
/// ```
/// use ringcore_http::extract::{Rejection, WithRejection};
/// use ringcore_http::{IntoResponse, Json, Response, StatusCode};
///
/// struct BadInput(String);
///
/// impl From<Rejection> for BadInput {
///     fn from(r: Rejection) -> Self {
///         BadInput(r.detail().to_string())
///     }
/// }
///
/// impl IntoResponse for BadInput {
///     fn into_response(self) -> Response {
///         (StatusCode::BAD_REQUEST, format!("bad input: {}", self.0)).into_response()
///     }
/// }
///
/// async fn create(WithRejection(Json(v), _): WithRejection<Json<serde_json::Value>, BadInput>) -> String {
///     v.to_string()
/// }
/// let _ = ringcore_http::Router::new().route("/", ringcore_http::post(create));
/// ```
pub struct WithRejection<E, R>(pub E, pub PhantomData<R>);

impl<E: fmt::Debug, R> fmt::Debug for WithRejection<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WithRejection").field(&self.0).finish()
    }
}

impl<E, R> WithRejection<E, R> {
    /// The extracted value.
    pub fn into_inner(self) -> E {
        self.0
    }
}

impl<S, E, R> FromRequestParts<S> for WithRejection<E, R>
where
    E: FromRequestParts<S>,
    R: From<E::Rejection> + IntoResponse,
{
    type Rejection = R;

    async fn from_request_parts(parts: &mut Parts, state: &Rc<S>) -> Result<Self, R> {
        E::from_request_parts(parts, state)
            .await
            .map(|e| WithRejection(e, PhantomData))
            .map_err(R::from)
    }
}

impl<S, E, R> FromRequest<S> for WithRejection<E, R>
where
    E: FromRequest<S>,
    R: From<E::Rejection> + IntoResponse,
{
    type Rejection = R;

    async fn from_request(req: Request, state: &Rc<S>) -> Result<Self, R> {
        E::from_request(req, state)
            .await
            .map(|e| WithRejection(e, PhantomData))
            .map_err(R::from)
    }
}
