//! Attribute macros that publish Courier events from a service's functions. Use them through
//! the `courier` client crate, which re-exports them: `#[courier::publish_errors]`,
//! `#[courier::publish(type = "...")]` and `#[derive(courier::ErrorType)]`.
//!
//! The generated code only enqueues the event in the client's buffer; it never waits for
//! delivery. Everything it calls lives in `courier::__private`.

mod args;
mod derive;
mod wrap;

use proc_macro::TokenStream;

/// Publishes an error event when the function returns `Err`.
///
/// Arguments, all optional:
/// - `errortype = "payment-declined"`: the error type (topic `{service}.error.{errortype}`);
///   without it, the error's `courier::ErrorType` names it.
/// - `type = "checkout.failed"`: the event type (default `{function}.failed`).
/// - `fields(order_id = order.id, customer)`: values recorded in the event's `data.fields`,
///   evaluated when the function is entered (like `tracing::instrument`), each `Serialize`;
///   a bare name records the argument of that name.
/// - `client = expr`: the `courier::Client` to publish with (a `Client`, `&Client` or
///   `Arc<Client>`), evaluated when the function returns; default: `courier::global()`.
///
/// The event's data is `{"message": error.to_string(), "function", "module", "fields"}`.
#[proc_macro_attribute]
pub fn publish_errors(attr: TokenStream, item: TokenStream) -> TokenStream {
    wrap::expand(wrap::Mode::Errors, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Publishes the `Ok` value (which must be `Serialize`) as an event of the given type when
/// the function succeeds: `#[courier::publish(type = "order.created")]`, optionally with
/// `client = expr`.
#[proc_macro_attribute]
pub fn publish(attr: TokenStream, item: TokenStream) -> TokenStream {
    wrap::expand(wrap::Mode::Success, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `courier::ErrorType`: for an enum, each variant's name in kebab case
/// (`PaymentDeclined` → `payment-declined`); for a struct, its name. `#[courier(errortype =
/// "...")]` on a variant or the struct names it explicitly.
#[proc_macro_derive(ErrorType, attributes(courier))]
pub fn derive_error_type(item: TokenStream) -> TokenStream {
    derive::expand(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
