//! Admitting one event: everything decided about it alone, before anything is sent. In
//! order: the event is valid; its `source` names a service, the caller's own when keys are on
//! (ACL); its data matches the (service, type) schema, if one is registered; it is routed to a
//! topic; the policy lets the service write there (errortype rules, topic ACL); the service is
//! within its rate; it is not a resend within the dedupe window; its record fits the size
//! limit. An event that fails a step gets its outcome here and goes no further.

use std::sync::Arc;

use courier_shared::topic::service_of;
use courier_shared::{Event, EventError, KafkaRecord, ProblemKind, Refusal, into_record};

use super::{Ledger, Outcome};
use crate::auth::Identity;
use crate::dedupe::DedupeKey;
use crate::error::ApiError;
use crate::error::event_error;
use crate::state::AppState;
use courier_shared::policy::CompiledPolicy;

/// An event admitted: routed, allowed, turned into its Kafka record.
pub(super) struct Admitted {
    /// Position in the request.
    pub index: usize,
    /// Event id.
    pub id: String,
    /// With `id`, the event's identity.
    pub source: String,
    /// The event's key in the dedupe window, when the client chose its id (only such events
    /// are deduplicated) and the window is on.
    pub dedupe: Option<DedupeKey>,
    /// Destination topic.
    pub topic: String,
    /// Key, value and headers.
    pub record: KafkaRecord,
}

/// What every event of one request is admitted under.
pub(super) struct Admission<'a> {
    pub state: &'a AppState,
    pub explicit_topic: Option<&'a str>,
    pub identity: Option<&'a Identity>,
    /// One policy for the whole request, even if an operator changes it meanwhile.
    pub policy: Arc<CompiledPolicy>,
    /// When traces are on, each record carries the request's trace context (`traceparent`),
    /// and so does its copy in the store.
    pub trace_headers: Vec<(String, Vec<u8>)>,
    pub max_event_bytes: usize,
}

impl<'a> Admission<'a> {
    pub fn new(
        state: &'a AppState,
        explicit_topic: Option<&'a str>,
        identity: Option<&'a Identity>,
    ) -> Self {
        Self {
            state,
            explicit_topic,
            identity,
            policy: state.topics().policy(),
            trace_headers: courier_telemetry::record_headers(&tracing::Span::current()),
            max_event_bytes: state.limits().max_event_bytes,
        }
    }

    /// Event `index` through every step; `None` when it got its outcome on the way (in
    /// `ledger`).
    pub fn admit(
        &self,
        ledger: &mut Ledger,
        index: usize,
        event: Result<Event, EventError>,
    ) -> Option<Admitted> {
        ledger.outcomes.push(None);
        ledger.labels.push(("unknown".to_owned(), String::new()));
        let refuse = |id: Option<String>, error: ApiError| Some(Outcome::Refused { id, error });
        let mut event = match event {
            Ok(e) => e,
            Err(e) => {
                ledger.outcomes[index] = refuse(None, event_error(&e));
                return None;
            }
        };
        // The service is read once and serves routing, the policy check and the rate limit.
        let service = match service_of(&event.source) {
            Ok(service) => service,
            Err(e) => {
                let err = ApiError::new(ProblemKind::InvalidTopic, e.to_string());
                if let Some(identity) = self.identity {
                    ledger.labels[index].0.clone_from(&identity.service);
                }
                ledger.outcomes[index] = refuse(Some(event.id), err);
                return None;
            }
        };
        if let Some(identity) = self.identity
            && identity.service != service
        {
            let err = ApiError::new(
                ProblemKind::SourceNotAllowed,
                format!(
                    "the API key is service `{}`'s; source `{}` names service `{service}`",
                    identity.service, event.source
                ),
            );
            ledger.labels[index].0.clone_from(&identity.service);
            *ledger
                .auth_refusals
                .entry((identity.service.clone(), "spoofed_source"))
                .or_default() += 1;
            ledger.outcomes[index] = refuse(Some(event.id), err);
            return None;
        }
        // The JSON Schema of (service, type), when one is registered: an invalid event is
        // refused, or goes to its service's error topic under a proxy-chosen errortype.
        let to_error_topic =
            match self
                .state
                .schemas()
                .check(&service, &event, self.explicit_topic.is_none())
            {
                Ok(annotation) => annotation.is_some_and(|a| a.apply(&mut event)),
                Err(err) => {
                    ledger.labels[index].0 = service;
                    ledger.outcomes[index] = refuse(Some(event.id), err);
                    return None;
                }
            };
        let topic = match self.explicit_topic {
            Some(t) => t.to_owned(),
            None => match self.policy.route_for(&service, &event) {
                Ok(t) => t,
                Err(e) => {
                    let err = ApiError::new(ProblemKind::InvalidTopic, e.to_string());
                    ledger.labels[index].0 = service;
                    ledger.outcomes[index] = refuse(Some(event.id), err);
                    return None;
                }
            },
        };
        let errortype_allowed = match to_error_topic {
            true => Ok(()),
            false => self.policy.check_errortype(&service, &event),
        };
        let allowed = errortype_allowed
            .and_then(|()| self.policy.check(&service, &topic))
            .map_err(|r| {
                let reason = match r {
                    Refusal::NotOwner { .. } => "acl",
                    _ => "policy",
                };
                *ledger
                    .auth_refusals
                    .entry((service.clone(), reason))
                    .or_default() += 1;
                ApiError::new(ProblemKind::TopicNotAllowed, r.to_string())
            })
            .and_then(|()| rate_limit(self.state, &service));
        ledger.labels[index] = (service, topic.clone());
        if let Err(err) = allowed {
            ledger.outcomes[index] = refuse(Some(event.id), err);
            return None;
        }
        let dedupe = (!event.id_assigned && self.state.dedupe().is_on())
            .then(|| DedupeKey::new(&topic, &event.source, &event.id));
        if let Some(first) = dedupe.as_ref().and_then(|k| self.state.dedupe().get(k)) {
            ledger.outcomes[index] = Some(Outcome::Duplicate {
                id: event.id,
                topic,
                first,
            });
            return None;
        }
        // The id and source stay with the event's outcome; the rest moves into the record.
        let (id, source) = (event.id.clone(), event.source.clone());
        let mut record = into_record(event);
        record.headers.extend(
            self.trace_headers
                .iter()
                .map(|(k, v)| (k.clone().into(), v.clone())),
        );
        let size = record_size(&record);
        if size > self.max_event_bytes {
            let err = ApiError::new(
                ProblemKind::EventTooLarge,
                format!(
                    "the event takes {size} bytes in Kafka; the limit is {}",
                    self.max_event_bytes
                ),
            );
            ledger.outcomes[index] = refuse(Some(id), err);
            return None;
        }
        Some(Admitted {
            index,
            dedupe,
            source,
            id,
            topic,
            record,
        })
    }
}

/// Takes one event from `service`'s rate limit, if there is one.
fn rate_limit(state: &AppState, service: &str) -> Result<(), ApiError> {
    let Some(limits) = state.rate_limits() else {
        return Ok(());
    };
    limits.check(service).map_err(|wait| {
        ApiError::new(
            ProblemKind::RateLimited,
            format!(
                "service `{service}` is over its limit of {} events/s; nothing of this event was accepted",
                state.limits().service_events_per_sec
            ),
        )
        .retry_after(wait.as_secs().max(1))
    })
}

/// Bytes the record takes in a Kafka batch, near enough for a limit check.
fn record_size(r: &KafkaRecord) -> usize {
    r.key.as_ref().map_or(0, Vec::len)
        + r.value.as_ref().map_or(0, Vec::len)
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
        + 32
}
