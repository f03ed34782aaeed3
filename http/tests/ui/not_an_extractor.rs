// An argument type that is no extractor.
use ringcore_http::Handler;

struct NotAnExtractor;

async fn handler(_x: NotAnExtractor) {}

// What `get`/`post` require, stated here so the expected output does not quote the router.
fn route<T, H: Handler<T, ()>>(_: H) {}

fn main() {
    route(handler);
}
