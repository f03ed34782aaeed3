//! Handlers are plain `async fn`s whose arguments are extractors.
//!
//! ```text
//! async fn show(Path(id): Path<u64>, State(db): State<Db>) -> impl IntoResponse { .. }
//! async fn create(State(db): State<Db>, Json(item): Json<Item>) -> Result<Json<Item>, AppError> { .. }
//! ```
//!
//! Up to 16 arguments: every one but the last implements
//! [`FromRequestParts`](crate::extract::FromRequestParts), the last
//! [`FromRequest`](crate::extract::FromRequest) (a body extractor, or any parts extractor).
//! Extractors run in argument order; the first rejection is the response and the handler does
//! not run.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;

use ringcore_runtime::FutureSlot;

use crate::extract::{FromRequest, FromRequestParts};
use crate::request::Request;
use crate::response::{IntoResponse, Response};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Response>>>;

/// Where a connection runs its handlers' futures, one at a time, without an allocation per
/// request (see [`FutureSlot`]).
pub(crate) type HandlerSlot = FutureSlot<Response>;

/// A handler as the router keeps it: its type erased once, when the route is added.
pub(crate) trait ErasedHandler<S> {
    /// Calls the handler; its future is boxed (the traced path, and middleware's `Next`).
    fn call(&self, req: Request, state: Rc<S>) -> BoxFuture;

    /// Calls the handler with its future placed in `slot`, for the caller to poll there
    /// (the connection's plain path: no allocation once the slot has grown to the handler's
    /// future, and nothing returned to move around).
    fn place_in(&self, req: Request, state: Rc<S>, slot: &mut HandlerSlot);

    /// Calls a handler that takes no argument ([`Endpoint::reads_nothing`]) without a
    /// request, its future placed in `slot`; false (nothing placed) for any other handler.
    fn place_unread_in(&self, _slot: &mut HandlerSlot) -> bool {
        false
    }

    /// This handler as the rest of a middleware's chain (`middleware::Next`): the same
    /// object, its state type erased.
    fn into_rest(self: Rc<Self>) -> Rc<dyn Rest>;
}

/// A handler with the router's state type erased, so that `middleware::Next` is one type
/// whatever the state.
pub(crate) trait Rest {
    /// [`ErasedHandler::place_in`] with the state as the router gave it to `Next`.
    fn place_in_any(&self, req: Request, state: Rc<dyn Any>, slot: &mut HandlerSlot);
}

/// [`Rest::place_in_any`] of a handler whose state is `S`.
#[inline(always)]
pub(crate) fn place_in_any<S: 'static>(
    handler: &impl ErasedHandler<S>,
    req: Request,
    state: Rc<dyn Any>,
    slot: &mut HandlerSlot,
) {
    match state.downcast::<S>() {
        Ok(state) => handler.place_in(req, state, slot),
        // Not reached: a `Next` is made by the middleware in front of the handler, with the
        // router's own `Rc<S>`.
        Err(_) => slot.place(std::future::ready(Response::error(
            http::StatusCode::INTERNAL_SERVER_ERROR,
        ))),
    }
}

/// A type-erased handler, stored in the router.
pub(crate) type BoxHandler<S> = Rc<dyn ErasedHandler<S>>;

/// The [`ErasedHandler`] of a [`Handler`] (`T` is its extractor marker, `S` the state).
struct Erased<H, T, S> {
    handler: H,
    _marker: PhantomData<fn() -> (T, S)>,
}

impl<H, T, S> Rest for Erased<H, T, S>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    fn place_in_any(&self, req: Request, state: Rc<dyn Any>, slot: &mut HandlerSlot) {
        place_in_any(self, req, state, slot);
    }
}

impl<H, T, S> ErasedHandler<S> for Erased<H, T, S>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    fn call(&self, req: Request, state: Rc<S>) -> BoxFuture {
        self.handler.call(req, state)
    }

    #[inline]
    fn place_in(&self, req: Request, state: Rc<S>, slot: &mut HandlerSlot) {
        slot.place(self.handler.future(req, state));
    }

    fn place_unread_in(&self, slot: &mut HandlerSlot) -> bool {
        match self.handler.future_unread() {
            Some(fut) => {
                slot.place(fut);
                true
            }
            None => false,
        }
    }

    fn into_rest(self: Rc<Self>) -> Rc<dyn Rest> {
        self
    }
}

/// An async function usable as a route handler. Implemented for `Fn(T1, .., Tn) -> Fut`
/// (n = 0..16) where `T1..Tn-1: FromRequestParts<S>`, `Tn: FromRequest<S, M>` and
/// `Fut::Output: IntoResponse`. `T` is a marker the compiler infers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler",
    note = "a handler is an async fn of at most 16 extractors returning `impl IntoResponse`",
    note = "every argument but the last must implement `FromRequestParts`; only the last may take the body (`Json`, `Form`, `String`, `Bytes`, `Request`), and only one may"
)]
pub trait Handler<T, S>: Clone + 'static {
    /// Runs the handler: the future that extracts its arguments, calls it and makes the
    /// response. (Its type is the handler's own, so the server can run it without boxing.)
    fn future(&self, req: Request, state: Rc<S>) -> impl Future<Output = Response> + 'static;

    /// Runs the handler, its future boxed.
    fn call(&self, req: Request, state: Rc<S>) -> Pin<Box<dyn Future<Output = Response>>> {
        Box::pin(self.future(req, state))
    }

    /// The handler's future when it takes no argument, so that nothing of the request needs
    /// to be built for it (the server then builds no [`Request`]); `None` (the default) for a
    /// handler that takes one. Implemented for `Fn() -> Fut`; not meant to be called or
    /// implemented elsewhere.
    #[doc(hidden)]
    fn future_unread(&self) -> Option<impl Future<Output = Response> + 'static> {
        None::<std::future::Ready<Response>>
    }

    /// True if [`future_unread`](Self::future_unread) gives the handler's future (it takes
    /// no argument). Not meant to be implemented outside this crate.
    #[doc(hidden)]
    fn reads_nothing(&self) -> bool {
        false
    }

    /// True if the handler's last argument reads the body as it arrives
    /// ([`FromRequest::STREAMS_BODY`]): its requests are handed over when their head is
    /// complete, the body still on the socket.
    fn streams_body(&self) -> bool {
        false
    }
}

impl<F, Fut, S> Handler<((),), S> for F
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: IntoResponse,
    S: 'static,
{
    fn future(&self, _: Request, _: Rc<S>) -> impl Future<Output = Response> + 'static {
        let fut = (self)();
        async move { fut.await.into_response() }
    }

    fn future_unread(&self) -> Option<impl Future<Output = Response> + 'static> {
        let fut = (self)();
        Some(async move { fut.await.into_response() })
    }

    fn reads_nothing(&self) -> bool {
        true
    }
}

macro_rules! impl_handler {
    ([$($ty:ident),*], $last:ident) => {
        impl<F, Fut, S, M, $($ty,)* $last> Handler<(M, $($ty,)* $last,), S> for F
        where
            F: Fn($($ty,)* $last) -> Fut + Clone + 'static,
            Fut: Future + 'static,
            Fut::Output: IntoResponse,
            S: 'static,
            M: 'static,
            $($ty: FromRequestParts<S> + 'static,)*
            $last: FromRequest<S, M> + 'static,
        {
            fn streams_body(&self) -> bool {
                <$last as FromRequest<S, M>>::STREAMS_BODY
            }

            #[allow(non_snake_case, unused_mut)]
            fn future(&self, req: Request, state: Rc<S>) -> impl Future<Output = Response> + 'static {
                let f = self.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    $(
                        let $ty = match $ty::from_request_parts(&mut parts, &state).await {
                            Ok(v) => v,
                            Err(rejection) => return rejection.into_response(),
                        };
                    )*
                    let req = Request::from_parts(parts, body);
                    let $last = match $last::from_request(req, &state).await {
                        Ok(v) => v,
                        Err(rejection) => return rejection.into_response(),
                    };
                    f($($ty,)* $last).await.into_response()
                }
            }
        }
    };
}

impl_handler!([], T1);
impl_handler!([T1], T2);
impl_handler!([T1, T2], T3);
impl_handler!([T1, T2, T3], T4);
impl_handler!([T1, T2, T3, T4], T5);
impl_handler!([T1, T2, T3, T4, T5], T6);
impl_handler!([T1, T2, T3, T4, T5, T6], T7);
impl_handler!([T1, T2, T3, T4, T5, T6, T7], T8);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8], T9);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9], T10);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10], T11);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11], T12);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12], T13);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13], T14);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14], T15);
impl_handler!(
    [T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15],
    T16
);

/// A stored handler, whether it streams its request body, and whether it reads nothing of
/// the request.
pub(crate) struct Endpoint<S> {
    pub(crate) handler: BoxHandler<S>,
    pub(crate) streams_body: bool,
    /// The handler takes no argument: it is called through
    /// [`place_unread_in`](ErasedHandler::place_unread_in), and no [`Request`] is built for it.
    pub(crate) reads_nothing: bool,
}

impl<S> Clone for Endpoint<S> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            streams_body: self.streams_body,
            reads_nothing: self.reads_nothing,
        }
    }
}

pub(crate) fn erase<H, T, S>(h: H) -> Endpoint<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    let streams_body = h.streams_body();
    let reads_nothing = h.reads_nothing();
    Endpoint {
        handler: Rc::new(Erased {
            handler: h,
            _marker: PhantomData,
        }),
        streams_body,
        reads_nothing,
    }
}
