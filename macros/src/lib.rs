//! # ringcore-macros
//!
//! `#[test]` for async tests on a ringcore core, re-exported as
//! `ringcore_runtime::test` (use it through that path; this crate is an implementation
//! detail of `ringcore-runtime`).
//!
//! ```ignore
//! #[ringcore_runtime::test]
//! async fn sleeps_on_a_core() {
//!     ringcore_runtime::time::sleep(std::time::Duration::from_millis(1)).await;
//!     assert_eq!(ringcore_runtime::shard_id(), 0);
//! }
//! ```
//!
//! expands to a plain `#[test] fn` whose body is
//! `::ringcore_runtime::block_on_with(|| async move { .. })`: a one-core runtime (signal
//! handling left to the test harness) runs the test's future to its end. The future is
//! created on the core, so it may hold `Rc`s across awaits; the test's return value (`()` or
//! a `Result`) must be `Send`. A crate that reaches the runtime through another path (such
//! as `ringcore_http::runtime`) names it: `#[ringcore_http::runtime::test(crate =
//! ringcore_http::runtime)]`.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::{parse_macro_input, ItemFn, Path};

/// Runs an `async fn` test to its end on one ringcore core (see the crate docs).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut krate: Path = syn::parse_quote!(::ringcore_runtime);
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            krate = meta.value()?.parse()?;
            Ok(())
        } else {
            Err(meta.error("unknown argument: the only one is `crate = path::to::ringcore_runtime`"))
        }
    });
    if let Err(e) = parser.parse(args) {
        return e.to_compile_error().into();
    }
    let input = parse_macro_input!(item as ItemFn);
    if input.sig.asyncness.is_none() {
        return syn::Error::new_spanned(input.sig.fn_token, "#[ringcore test] needs an `async fn`")
            .to_compile_error()
            .into();
    }
    if !input.sig.inputs.is_empty() {
        return syn::Error::new_spanned(&input.sig.inputs, "a test takes no arguments")
            .to_compile_error()
            .into();
    }
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = input;
    sig.asyncness = None;
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #sig {
            #krate::block_on_with(|| async move #block)
        }
    }
    .into()
}
