//! [`MethodRouter`]: one path's handlers by method, and where a parsed request's method
//! sends it without comparing `Method`s.

use std::fmt;
use std::rc::Rc;

use http::Method;

use crate::handler::{erase, Endpoint, Handler};
use crate::middleware::{wrap, Middleware};
use crate::proto::head::METHOD_COUNT;

/// Handlers for one path, by method.
pub struct MethodRouter<S = ()> {
    handlers: Vec<(Method, Endpoint<S>)>,
    any: Option<Endpoint<S>>,
    /// For each method a request may carry (by its position in the parser's method table,
    /// `Head::method_index`), where [`find`](Self::find) sends it: an index into `handlers`,
    /// [`TO_ANY`] or [`TO_NONE`]. Kept up to date by every change of `handlers` and `any`, so
    /// routing a request compares no `Method`.
    by_index: [u8; METHOD_COUNT],
}

/// In [`MethodRouter::by_index`]: compare the methods ([`MethodRouter::find_slow`]; a handler
/// past index 252, which no real route has).
const TO_SLOW: u8 = u8::MAX - 2;
/// In [`MethodRouter::by_index`]: the `any` handler.
const TO_ANY: u8 = u8::MAX - 1;
/// In [`MethodRouter::by_index`]: no handler (405).
const TO_NONE: u8 = u8::MAX;

/// Where [`MethodRouter::find_slow`] found a method's handler.
enum Found {
    /// `handlers[i]`.
    At(usize),
    /// The `any` handler.
    Any,
}

impl<S> fmt::Debug for MethodRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodRouter")
            .field(
                "methods",
                &self.handlers.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
            )
            .field("any", &self.any.is_some())
            .finish()
    }
}

impl<S> Default for MethodRouter<S> {
    fn default() -> Self {
        Self {
            handlers: Vec::new(),
            any: None,
            by_index: [TO_NONE; METHOD_COUNT],
        }
    }
}

macro_rules! method_fns {
    ($($name:ident => $method:expr,)*) => {
        $(
            #[doc = concat!("A route answering `", stringify!($name), "` requests with `handler`.")]
            pub fn $name<H, T, S>(handler: H) -> MethodRouter<S>
            where
                H: Handler<T, S>,
                T: 'static,
                S: 'static,
            {
                MethodRouter::default().on($method, handler)
            }
        )*

        impl<S: 'static> MethodRouter<S> {
            $(
                #[doc = concat!("Also answers `", stringify!($name), "` with `handler`.")]
                pub fn $name<H, T>(self, handler: H) -> Self
                where
                    H: Handler<T, S>,
                    T: 'static,
                {
                    self.on($method, handler)
                }
            )*
        }
    };
}

method_fns! {
    get => Method::GET,
    post => Method::POST,
    put => Method::PUT,
    delete => Method::DELETE,
    patch => Method::PATCH,
    options => Method::OPTIONS,
}

/// A route answering every method with `handler`.
pub fn any<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: 'static,
{
    MethodRouter {
        handlers: Vec::new(),
        any: Some(erase(handler)),
        by_index: [TO_ANY; METHOD_COUNT],
    }
}

impl<S: 'static> MethodRouter<S> {
    /// Answers `method` with `handler` (replacing an earlier one for that method).
    pub fn on<H, T>(mut self, method: Method, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.handlers.retain(|(m, _)| *m != method);
        self.handlers.push((method, erase(handler)));
        self.reindex();
        self
    }

    /// Wraps every handler of this route in `middleware` (runs before the handlers, and
    /// before middleware added earlier).
    pub fn layer<M: Middleware>(self, middleware: M) -> Self {
        self.layer_rc(Rc::new(middleware))
    }

    pub(super) fn layer_rc<M: Middleware>(mut self, mw: Rc<M>) -> Self {
        self.handlers = self
            .handlers
            .into_iter()
            .map(|(m, h)| (m, wrap_endpoint(h, mw.clone())))
            .collect();
        self.any = self.any.map(|h| wrap_endpoint(h, mw));
        self
    }

    pub(super) fn merge(&mut self, other: MethodRouter<S>) {
        for (m, h) in other.handlers {
            self.handlers.retain(|(k, _)| *k != m);
            self.handlers.push((m, h));
        }
        if other.any.is_some() {
            self.any = other.any;
        }
        self.reindex();
    }

    /// Fills `by_index` from `handlers` and `any` (what [`find_slow`](Self::find_slow) gives
    /// for each method a request may carry).
    fn reindex(&mut self) {
        for i in 0..METHOD_COUNT {
            let method = crate::proto::head::method_at(i);
            self.by_index[i] = match self.find_slow(method) {
                None => TO_NONE,
                Some(Found::Any) => TO_ANY,
                Some(Found::At(at)) => u8::try_from(at)
                    .ok()
                    .filter(|&at| at < TO_SLOW)
                    .unwrap_or(TO_SLOW),
            };
        }
    }

    /// The handler for the method with `index` (its position in the parser's method table),
    /// or for `method` when it has none: exact, then GET for HEAD, then `any`.
    #[inline]
    pub(super) fn find(&self, method: &Method, index: Option<u8>) -> Option<&Endpoint<S>> {
        let to = index.map_or(TO_SLOW, |i| self.by_index[usize::from(i)]);
        match to {
            TO_NONE => None,
            TO_ANY => self.any.as_ref(),
            TO_SLOW => match self.find_slow(method)? {
                Found::Any => self.any.as_ref(),
                Found::At(at) => self.handlers.get(at).map(|(_, h)| h),
            },
            at => self.handlers.get(usize::from(at)).map(|(_, h)| h),
        }
    }

    /// [`find`](Self::find) by comparing methods.
    fn find_slow(&self, method: &Method) -> Option<Found> {
        let exact = self.handlers.iter().position(|(m, _)| m == method);
        let head_as_get = || {
            if *method == Method::HEAD {
                self.handlers.iter().position(|(m, _)| *m == Method::GET)
            } else {
                None
            }
        };
        match exact.or_else(head_as_get) {
            Some(at) => Some(Found::At(at)),
            None => self.any.as_ref().map(|_| Found::Any),
        }
    }

    pub(super) fn allow(&self) -> String {
        let mut methods: Vec<&str> = self.handlers.iter().map(|(m, _)| m.as_str()).collect();
        if methods.contains(&"GET") && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
        methods.join(", ")
    }
}

/// `mw` around an endpoint's handler; whether it streams its body stays.
pub(super) fn wrap_endpoint<S: 'static, M: Middleware>(e: Endpoint<S>, mw: Rc<M>) -> Endpoint<S> {
    Endpoint {
        handler: wrap(e.handler, mw),
        streams_body: e.streams_body,
        // The middleware reads the request.
        reads_nothing: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::head::method_index;
    use crate::router::{any, get, post};

    #[test]
    fn the_method_table_sends_every_method_where_comparing_methods_does() {
        let h = || async { "" };
        let routes: Vec<MethodRouter> = vec![
            MethodRouter::default(),
            get(h),
            get(h).on(Method::HEAD, h),
            post(h).put(h),
            any(h),
            get(h).on(Method::TRACE, h),
            {
                let mut m = get(h);
                m.merge(any(h).post(h));
                m
            },
            get(h).post(h).layer(crate::middleware::from_fn(
                |req, next: crate::middleware::Next| next.run(req),
            )),
        ];
        for (r, route) in routes.iter().enumerate() {
            for i in 0..METHOD_COUNT {
                let method = crate::proto::head::method_at(i);
                let fast = route.find(method, Some(i as u8)).map(|e| e as *const _);
                let slow = route.find(method, None).map(|e| e as *const _);
                assert_eq!(fast, slow, "route {r}, {method}");
            }
        }
        // HEAD goes to GET, an unrouted method nowhere, `any` takes the rest.
        let (get_only, post_only, anything): (MethodRouter, MethodRouter, MethodRouter) =
            (get(h), post(h), any(h));
        let head = method_index(&Method::HEAD);
        assert!(get_only.find(&Method::HEAD, head).is_some());
        assert!(post_only.find(&Method::HEAD, head).is_none());
        let delete = method_index(&Method::DELETE);
        assert!(anything.find(&Method::DELETE, delete).is_some());
    }
}
