//! Wraps a function returning `Result` so that its outcome is published.
//!
//! The body runs unchanged inside a closure (an async block for an `async fn`) whose type is
//! given to the compiler through `courier::__private::{call, typed}`, so `?` and `return`
//! keep their meaning; the result is inspected, an event enqueued, and the result returned.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType, Type};

use crate::args::{Allowed, Args};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `publish_errors`: an error event on `Err`.
    Errors,
    /// `publish`: the `Ok` value as an event.
    Success,
}

impl Mode {
    fn allowed(self) -> Allowed {
        match self {
            Self::Errors => Allowed {
                attribute: "publish_errors",
                names: &["errortype", "type", "fields", "client"],
            },
            Self::Success => Allowed {
                attribute: "publish",
                names: &["type", "client"],
            },
        }
    }
}

pub fn expand(mode: Mode, attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let allowed = mode.allowed();
    let args = Args::parse(attr, &allowed)?;
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`#[courier::{}]` applies to functions", allowed.attribute),
        )
    })?;
    let ret = result_type(&func, allowed.attribute)?;
    if let Some(c) = &func.sig.constness {
        return Err(syn::Error::new(
            c.span(),
            format!(
                "`#[courier::{}]` cannot apply to a `const fn`",
                allowed.attribute
            ),
        ));
    }

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let is_async = sig.asyncness.is_some();
    let run = if is_async {
        quote! { ::courier::__private::typed::<#ret, _>(async #block).await }
    } else {
        quote! { ::courier::__private::call::<#ret, _>(|| #block) }
    };
    let client = match &args.client {
        Some(expr) => quote_spanned! {expr.span()=>
            let __courier_client: &::courier::Client = &(#expr);
            let __courier_client = ::core::option::Option::Some(__courier_client);
        },
        None => quote! {
            let __courier_client = ::courier::__private::default_client();
        },
    };
    let enqueue = if is_async {
        quote! { ::courier::__private::enqueue_async(__courier_client, __courier_event).await; }
    } else {
        quote! { ::courier::__private::enqueue(__courier_client, __courier_event); }
    };

    let (prologue, epilogue) = match mode {
        Mode::Errors => {
            let fields = args.fields.iter().map(|(name, expr)| {
                let name = name.to_string();
                quote_spanned! {expr.span()=> (#name, ::courier::__private::field(&(#expr))) }
            });
            let prologue = quote! {
                let __courier_fields: ::std::vec::Vec<(&'static str, ::courier::__private::Value)> =
                    ::std::vec![#(#fields),*];
            };
            let errortype = match &args.errortype {
                Some(lit) => quote! { #lit },
                None => quote_spanned! {ret.span()=>
                    ::courier::__private::errortype_of(__courier_error)
                },
            };
            let ty = match &args.ty {
                Some(lit) => quote! { ::core::option::Option::Some(#lit) },
                None => quote! { ::core::option::Option::None },
            };
            let function = sig.ident.to_string();
            // An error that is not `Display` is reported at the return type.
            let event = quote_spanned! {ret.span()=>
                let __courier_event = ::courier::__private::error_event(
                    #errortype,
                    #ty,
                    __courier_error,
                    #function,
                    ::core::module_path!(),
                    __courier_fields,
                );
            };
            let epilogue = quote! {
                if let ::core::result::Result::Err(__courier_error) = &__courier_result {
                    #client
                    #event
                    #enqueue
                }
            };
            (prologue, epilogue)
        }
        Mode::Success => {
            let Some(ty) = &args.ty else {
                return Err(syn::Error::new(
                    Span::call_site(),
                    "`#[courier::publish]` needs the event type: `#[courier::publish(type = \"order.created\")]`",
                ));
            };
            // A value that is not `Serialize` is reported at the return type.
            let event = quote_spanned! {ret.span()=>
                let __courier_event = ::courier::__private::ok_event(#ty, __courier_value);
            };
            let epilogue = quote! {
                if let ::core::result::Result::Ok(__courier_value) = &__courier_result {
                    #client
                    #event
                    #enqueue
                }
            };
            (TokenStream::new(), epilogue)
        }
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #prologue
            let __courier_result: #ret = #run;
            #epilogue
            __courier_result
        }
    })
}

/// The function's return type, which must be a `Result` (`Result<T, E>`, `io::Result<T>`,
/// `anyhow::Result<T>`: any path ending in `Result`).
fn result_type<'a>(func: &'a ItemFn, attribute: &str) -> syn::Result<&'a Type> {
    let message = format!("`#[courier::{attribute}]` needs a function returning `Result<_, _>`");
    match &func.sig.output {
        ReturnType::Type(_, ty) => {
            let is_result = matches!(&**ty, Type::Path(p)
                if p.qself.is_none()
                    && p.path.segments.last().is_some_and(|s| s.ident == "Result"));
            if is_result {
                Ok(ty)
            } else {
                Err(syn::Error::new_spanned(ty, message))
            }
        }
        ReturnType::Default => Err(syn::Error::new_spanned(&func.sig, message)),
    }
}
