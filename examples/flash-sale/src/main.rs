//! `flash-sale serve | demo`: under construction (issue 6).

fn main() {
    eprintln!("flash-sale: not built yet");
    std::process::exit(2);
}
