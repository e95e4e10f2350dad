//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! It is generated from the code: every route of the API is registered through
//! `utoipa_axum`'s `routes!`, which takes the path, method, parameters and answers from the
//! handler's `#[utoipa::path]` and adds the route to the router in the same step, so a route
//! cannot be served without being documented (the admin page's HTML and assets aside). Every
//! operation answers errors with a problem document (RFC 9457): the `default` response.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::publish::{BatchResult, EventResult};
use crate::state::AppState;

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Courier",
        description = "HTTP-to-Kafka event gateway. 200 means Kafka acknowledged an event \
            (`acks=all`), 202 that it is committed to the store and delivered later; \
            anything else means nothing was accepted. Publishing needs a service's API key; \
            the admin API needs the admin token.",
    ),
    tags(
        (name = "publish", description = "Publishing CloudEvents"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "admin", description = "Topics, topic policy, dead letters, API keys, audit log"),
    ),
    components(schemas(courier_shared::Problem, EventResult<'_>, BatchResult<'_>, PublishAnswer, CloudEvent, CloudEventBatch))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Security schemes, and the problem document as every operation's `default` answer: applied
/// to the whole document once the router has added the paths.
#[derive(Debug)]
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "api_key",
                "A service's API key (`ck_…`); `X-Courier-Key: <key>` works as well",
            ),
            ("admin_token", "The admin token (`admin.token`)"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
        let problem = ResponseBuilder::new()
            .description("A problem document (RFC 9457); nothing of the request was accepted")
            .content(
                courier_shared::problem::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Problem",
                    ))))
                    .build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| RefOr::T(problem.clone()));
            }
        }
    }
}

/// A CloudEvent in structured mode, as the publish endpoints take it. Any other attribute
/// (a CloudEvents extension: lowercase letters and digits) may be added.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct CloudEvent {
    /// `1.0`.
    #[schema(pattern = "^1\\.0$")]
    specversion: String,
    /// The event id; assigned (UUIDv7) when absent. A resend with the same `source` and `id`
    /// gets the first outcome.
    #[schema(min_length = 1)]
    id: Option<String>,
    /// The producer: its service (`/billing/api` → `billing`) must be the API key's.
    #[schema(min_length = 1, pattern = "[A-Za-z0-9]")]
    source: String,
    /// The event type.
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    ty: String,
    /// `event` (default), `log` or `error`; `error` needs `errortype`.
    #[schema(pattern = "^(event|log|error)$")]
    category: Option<String>,
    /// The error type of an error event (its topic: `{service}.error.{errortype}`).
    errortype: Option<String>,
    /// The Kafka record key.
    partitionkey: Option<String>,
    /// Media type of `data`.
    datacontenttype: Option<String>,
    /// Schema of `data`.
    dataschema: Option<String>,
    /// Subject of the event in the context of the producer.
    subject: Option<String>,
    /// RFC 3339 timestamp.
    #[schema(format = DateTime)]
    time: Option<String>,
    /// The payload: any JSON value.
    #[schema(value_type = Object)]
    data: Option<serde_json::Value>,
    /// The payload as base64 (binary data).
    data_base64: Option<String>,
}

/// A batch: a JSON array of at least one event.
#[derive(Debug)]
pub struct CloudEventBatch;

impl utoipa::PartialSchema for CloudEventBatch {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("CloudEvent"))
            .min_items(Some(1))
            .build()
            .into()
    }
}

impl ToSchema for CloudEventBatch {}

/// The answer to a single event ([`EventResult`]) or to a batch ([`BatchResult`]).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
pub enum PublishAnswer {
    /// A single event's outcome.
    Event(EventResult<'static>),
    /// A batch's outcomes, per event.
    Batch(BatchResult<'static>),
}

/// The answers of both publish endpoints (`/v1/events` and `/v1/topics/{topic}/events`), one
/// event or a batch.
#[derive(Debug)]
pub struct PublishResponses;

impl utoipa::IntoResponses for PublishResponses {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let schema = |name: &str| {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    name,
                ))))
                .build()
        };
        let answer = |description: &str, name: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", schema(name))
                .build()
        };
        // Nothing accepted: a status per event for a batch, a problem otherwise.
        let refused = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", schema("BatchResult"))
                .content(courier_shared::problem::PROBLEM_JSON, schema("Problem"))
                .build()
        };
        [
            (
                "200",
                answer("Delivered: Kafka has every event", "PublishAnswer"),
            ),
            (
                "202",
                answer(
                    "Durable: stored events are delivered later",
                    "PublishAnswer",
                ),
            ),
            ("207", answer("A batch with mixed outcomes", "BatchResult")),
            (
                "422",
                refused("Every event invalid: a problem, or for a batch a status per event"),
            ),
            (
                "429",
                refused("Over capacity or rate: nothing accepted, retry after `Retry-After`"),
            ),
            (
                "503",
                refused("Neither Kafka nor the store took the events: nothing accepted"),
            ),
        ]
        .into_iter()
        .map(|(status, response)| (status.to_owned(), RefOr::T(response)))
        .collect()
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn document(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi())
}

#[cfg(test)]
mod tests {
    /// Routes are registered with `routes!` only, so each one is in the document.
    #[test]
    fn every_route_goes_through_the_document() {
        for (file, source) in [
            ("api/mod.rs", include_str!("mod.rs")),
            ("admin/mod.rs", include_str!("../admin/mod.rs")),
            ("router.rs", include_str!("../router.rs")),
        ] {
            assert!(
                !source.contains(concat!(".route", "(")),
                "{file} adds a route outside the OpenAPI document: use routes!(…)"
            );
        }
    }
}
