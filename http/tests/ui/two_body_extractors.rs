// Two body extractors: the first argument must be a parts extractor, and `String` is not one.
use ringcore_http::{post, Bytes, Router};

async fn handler(_a: String, _b: Bytes) {}

fn main() {
    let _ = Router::new().route("/", post(handler));
}
