//! The arguments of the attributes, parsed and checked with errors that point at the
//! offending token.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::{Expr, Ident, LitStr, Token};

/// `errortype = "..."`, `type = "..."`, `fields(..)`, `client = expr`.
#[derive(Default)]
pub struct Args {
    pub errortype: Option<LitStr>,
    pub ty: Option<LitStr>,
    pub fields: Vec<(Ident, Expr)>,
    pub client: Option<Expr>,
}

/// Which arguments an attribute takes.
pub struct Allowed {
    pub attribute: &'static str,
    pub names: &'static [&'static str],
}

impl Args {
    pub fn parse(tokens: TokenStream, allowed: &Allowed) -> syn::Result<Self> {
        let mut args = Self::default();
        let mut fields_seen = false;
        let parser = syn::meta::parser(|meta| {
            let name = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            if !allowed.names.contains(&name.as_str()) {
                let expected = allowed
                    .names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let shown = if name.is_empty() {
                    quote::ToTokens::to_token_stream(&meta.path).to_string()
                } else {
                    name
                };
                return Err(meta.error(format!(
                    "unknown argument `{shown}` of `#[courier::{}]`; expected {expected}",
                    allowed.attribute
                )));
            }
            match name.as_str() {
                "errortype" => {
                    let lit = string_value(&meta, "errortype", "\"payment-declined\"")?;
                    if !lit.value().chars().any(|c| c.is_ascii_alphanumeric()) {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`errortype` needs letters or digits to name a topic with",
                        ));
                    }
                    set_once(&meta, &mut args.errortype, lit)
                }
                "type" => {
                    let lit = string_value(&meta, "type", "\"order.created\"")?;
                    if lit.value().is_empty() {
                        return Err(syn::Error::new(lit.span(), "`type` must not be empty"));
                    }
                    set_once(&meta, &mut args.ty, lit)
                }
                "client" => {
                    let expr: Expr = meta.value()?.parse()?;
                    set_once(&meta, &mut args.client, expr)
                }
                "fields" => {
                    if fields_seen {
                        return Err(meta.error("`fields` is given more than once"));
                    }
                    fields_seen = true;
                    meta.parse_nested_meta(|field| {
                        let Some(ident) = field.path.get_ident().cloned() else {
                            return Err(field.error("a field name is a plain identifier"));
                        };
                        let expr = if field.input.peek(Token![=]) {
                            field.value()?.parse::<Expr>()?
                        } else {
                            syn::parse_quote!(#ident)
                        };
                        if args.fields.iter().any(|(n, _)| *n == ident) {
                            return Err(field.error(format!("field `{ident}` appears twice")));
                        }
                        args.fields.push((ident, expr));
                        Ok(())
                    })
                }
                _ => Err(meta.error("unsupported argument")),
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }
}

fn string_value(meta: &ParseNestedMeta<'_>, name: &str, example: &str) -> syn::Result<LitStr> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{name}` must be a string literal, like `{name} = {example}`"),
        )),
    }
}

fn set_once<T>(meta: &ParseNestedMeta<'_>, slot: &mut Option<T>, value: T) -> syn::Result<()> {
    if slot.is_some() {
        let name = quote::ToTokens::to_token_stream(&meta.path).to_string();
        return Err(meta.error(format!("`{name}` is given more than once")));
    }
    *slot = Some(value);
    Ok(())
}
