//! The extraction rules are checked by the compiler: two body extractors, a body extractor
//! before another argument, and an argument that is no extractor do not compile. (The
//! expected messages are in `tests/ui/*.stderr`; regenerate with `TRYBUILD=overwrite` after a
//! compiler upgrade changes their wording.)

#[test]
fn extraction_rules_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
