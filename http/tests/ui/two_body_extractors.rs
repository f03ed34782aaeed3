// Two body extractors: the first argument must be a parts extractor, and `String` is not one.
use ringcore_http::{Bytes, Handler};

async fn handler(_a: String, _b: Bytes) {}

// What `get`/`post` require, stated here so the expected output does not quote the router.
fn route<T, H: Handler<T, ()>>(_: H) {}

fn main() {
    route(handler);
}
