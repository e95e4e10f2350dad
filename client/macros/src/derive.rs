//! `#[derive(ErrorType)]`: an enum names each variant, a struct names itself.

use heck::ToKebabCase;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, LitStr};

pub fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let body = match &input.data {
        Data::Enum(e) => {
            if let Some(attr) = input.attrs.iter().find(|a| a.path().is_ident("courier")) {
                return Err(syn::Error::new_spanned(
                    attr,
                    "on an enum, put `#[courier(errortype = \"...\")]` on the variants",
                ));
            }
            let arms = e
                .variants
                .iter()
                .map(|v| {
                    let ident = &v.ident;
                    let errortype =
                        explicit(&v.attrs)?.unwrap_or_else(|| ident.to_string().to_kebab_case());
                    Ok(quote! { Self::#ident { .. } => #errortype, })
                })
                .collect::<syn::Result<Vec<_>>>()?;
            quote! {
                match self {
                    #(#arms)*
                }
            }
        }
        Data::Struct(_) => {
            let errortype =
                explicit(&input.attrs)?.unwrap_or_else(|| name.to_string().to_kebab_case());
            quote! { #errortype }
        }
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(
                u.union_token,
                "`courier::ErrorType` can be derived for enums and structs, not unions",
            ));
        }
    };
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::courier::ErrorType for #name #ty_generics #where_clause {
            fn error_type(&self) -> &str {
                #body
            }
        }
    })
}

/// `#[courier(errortype = "...")]`, if present.
fn explicit(attrs: &[Attribute]) -> syn::Result<Option<String>> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("courier")) {
        attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("errortype") {
                return Err(meta.error("expected `errortype = \"...\"`"));
            }
            if found.is_some() {
                return Err(meta.error("`errortype` is given more than once"));
            }
            let lit: LitStr = meta.value()?.parse()?;
            if !lit.value().chars().any(|c| c.is_ascii_alphanumeric()) {
                return Err(syn::Error::new(
                    lit.span(),
                    "`errortype` needs letters or digits to name a topic with",
                ));
            }
            found = Some(lit.value());
            Ok(())
        })?;
    }
    Ok(found)
}
