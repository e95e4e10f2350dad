//! Admitting one event: everything decided about it alone, before anything is sent. In
//! order: the event is valid; its `source` names a service, the caller's own when keys are on
//! (ACL); its data matches the (service, type) schema, if one is registered; it is routed to a
//! topic; the policy lets the service write there (errortype rules, topic ACL); the service is
//! within its rate; it is not a resend within the dedupe window; its record fits the size
//! limit. An event that fails a step gets its outcome here and goes no further.

use std::sync::Arc;

use courier_shared::binding::{ID_HEADER, SOURCE_HEADER};
use courier_shared::topic::{TopicError, service_of};
use courier_shared::{Category, Event, EventError, KafkaRecord, ProblemKind, Refusal, into_record};

use super::{Labels, Ledger, Outcome};
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
    /// The event's key in the dedupe window, when the client chose its id (only such events
    /// are deduplicated) and the window is on.
    pub dedupe: Option<DedupeKey>,
    /// Destination topic.
    pub topic: Arc<str>,
    /// Key, value and headers. The event's id and source are its `ce_id` and `ce_source`
    /// headers: the event moved into the record, and nothing of it is kept twice.
    pub record: KafkaRecord,
}

impl Admitted {
    /// The event's id.
    pub fn id(&self) -> &str {
        self.attribute(ID_HEADER)
    }

    /// The event's source.
    pub fn source(&self) -> &str {
        self.attribute(SOURCE_HEADER)
    }

    /// The event's id, taken out of the record once the record is no longer needed (after
    /// it was sent or stored): the outcome gets it without a copy.
    pub fn into_id(mut self) -> String {
        take_id(&mut self.record)
    }

    /// An attribute header written from a string (so UTF-8) by [`into_record`].
    fn attribute(&self, header: &str) -> &str {
        self.record
            .header(header)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default()
    }
}

/// The id of the event in `record`, taken out of it (see [`Admitted::into_id`]).
fn take_id(record: &mut KafkaRecord) -> String {
    match record.take_header(ID_HEADER).map(String::from_utf8) {
        Some(Ok(id)) => id,
        Some(Err(e)) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        None => String::new(),
    }
}

/// The last routing of a request, reused by the next event that routes the same way: a
/// batch from one service to one topic reads its service and renders its topic once.
#[derive(Default)]
struct RouteMemo {
    /// The last `source` and its service.
    source: Option<(String, Arc<str>)>,
    /// The last routing by the naming policy.
    topic: Option<Routed>,
}

/// A topic the naming policy gave, and what it gave it for.
struct Routed {
    service: Arc<str>,
    category: Category,
    errortype: Option<String>,
    topic: Arc<str>,
}

/// What every event of one request is admitted under.
pub(super) struct Admission<'a> {
    pub state: &'a AppState,
    pub identity: Option<&'a Identity>,
    /// One policy for the whole request, even if an operator changes it meanwhile.
    pub policy: Arc<CompiledPolicy>,
    /// When traces are on, each record carries the request's trace context (`traceparent`),
    /// and so does its copy in the store.
    pub trace_headers: Vec<(String, Vec<u8>)>,
    pub max_event_bytes: usize,
    /// The request's topic, when it names one.
    explicit: Option<Arc<str>>,
    /// Kept only for a request of several events: for one, keeping it would cost more than
    /// it saves.
    memo: Option<RouteMemo>,
}

impl<'a> Admission<'a> {
    pub fn new(
        state: &'a AppState,
        explicit_topic: Option<&'a str>,
        identity: Option<&'a Identity>,
        events: usize,
    ) -> Self {
        Self {
            state,
            identity,
            policy: state.topics().policy(),
            trace_headers: courier_telemetry::record_headers(&tracing::Span::current()),
            max_event_bytes: state.limits().max_event_bytes,
            explicit: explicit_topic.map(Arc::from),
            memo: (events > 1).then(RouteMemo::default),
        }
    }

    /// The service of `source`, the last event's again when its source was the same.
    fn service_of(&mut self, source: &str) -> Result<Arc<str>, TopicError> {
        let Some(memo) = &mut self.memo else {
            return Ok(service_of(source)?.into());
        };
        if let Some((last, service)) = &memo.source
            && last == source
        {
            return Ok(service.clone());
        }
        let service: Arc<str> = service_of(source)?.into();
        memo.source = Some((source.to_owned(), service.clone()));
        Ok(service)
    }

    /// The topic of `event` from `service`: the request's own, or the naming policy's (the
    /// last event's again when it routed the same way).
    fn topic_for(&mut self, service: &Arc<str>, event: &Event) -> Result<Arc<str>, TopicError> {
        if let Some(topic) = &self.explicit {
            return Ok(topic.clone());
        }
        let Some(memo) = &mut self.memo else {
            return Ok(self.policy.route_for(service, event)?.into());
        };
        if let Some(last) = &memo.topic
            && *last.service == **service
            && last.category == event.category
            && last.errortype == event.errortype
        {
            return Ok(last.topic.clone());
        }
        let topic: Arc<str> = self.policy.route_for(service, event)?.into();
        memo.topic = Some(Routed {
            service: service.clone(),
            category: event.category,
            errortype: event.errortype.clone(),
            topic: topic.clone(),
        });
        Ok(topic)
    }

    /// Event `index` through every step; `None` when it got its outcome on the way (in
    /// `ledger`).
    pub fn admit(
        &mut self,
        ledger: &mut Ledger,
        index: usize,
        event: Result<Event, EventError>,
    ) -> Option<Admitted> {
        ledger.outcomes.push(None);
        ledger.labels.push(Labels::default());
        let refuse = |id: Option<String>, error: ApiError| Some(Outcome::Refused { id, error });
        let mut event = match event {
            Ok(e) => e,
            Err(e) => {
                ledger.outcomes[index] = refuse(None, event_error(&e));
                return None;
            }
        };
        // The service is read once and serves routing, the policy check and the rate limit.
        let service = match self.service_of(&event.source) {
            Ok(service) => service,
            Err(e) => {
                let err = ApiError::new(ProblemKind::InvalidTopic, e.to_string());
                if let Some(identity) = self.identity {
                    ledger.labels[index].service = Some(identity.service.as_str().into());
                }
                ledger.outcomes[index] = refuse(Some(event.id), err);
                return None;
            }
        };
        if let Some(identity) = self.identity
            && *identity.service != *service
        {
            let err = ApiError::new(
                ProblemKind::SourceNotAllowed,
                format!(
                    "the API key is service `{}`'s; source `{}` names service `{service}`",
                    identity.service, event.source
                ),
            );
            ledger.labels[index].service = Some(identity.service.as_str().into());
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
                .check(&service, &event, self.explicit.is_none())
            {
                Ok(annotation) => annotation.is_some_and(|a| a.apply(&mut event)),
                Err(err) => {
                    ledger.labels[index].service = Some(service);
                    ledger.outcomes[index] = refuse(Some(event.id), err);
                    return None;
                }
            };
        let topic = match self.topic_for(&service, &event) {
            Ok(t) => t,
            Err(e) => {
                let err = ApiError::new(ProblemKind::InvalidTopic, e.to_string());
                ledger.labels[index].service = Some(service);
                ledger.outcomes[index] = refuse(Some(event.id), err);
                return None;
            }
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
                    .entry((service.to_string(), reason))
                    .or_default() += 1;
                ApiError::new(ProblemKind::TopicNotAllowed, r.to_string())
            })
            .and_then(|()| rate_limit(self.state, &service));
        ledger.labels[index] = Labels {
            service: Some(service),
            topic: Some(topic.clone()),
        };
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
        let mut record = into_record(event);
        record.headers.extend(
            self.trace_headers
                .iter()
                .map(|(k, v)| (k.clone().into(), v.clone().into())),
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
            ledger.outcomes[index] = refuse(Some(take_id(&mut record)), err);
            return None;
        }
        Some(Admitted {
            index,
            dedupe,
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
