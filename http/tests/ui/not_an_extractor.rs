// An argument type that is no extractor.
use ringcore_http::{get, Router};

struct NotAnExtractor;

async fn handler(_x: NotAnExtractor) {}

fn main() {
    let _ = Router::new().route("/", get(handler));
}
