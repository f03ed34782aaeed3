// A body extractor before another argument.
use ringcore_http::{Handler, Json, Method};

async fn handler(_body: Json<u32>, _m: Method) {}

// What `get`/`post` require, stated here so the expected output does not quote the router.
fn route<T, H: Handler<T, ()>>(_: H) {}

fn main() {
    route(handler);
}
