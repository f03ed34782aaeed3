// A body extractor before another argument.
use ringcore_http::{post, Json, Method, Router};

async fn handler(_body: Json<u32>, _m: Method) {}

fn main() {
    let _ = Router::new().route("/", post(handler));
}
