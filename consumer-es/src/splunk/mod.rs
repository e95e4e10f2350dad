//! The Splunk HTTP Event Collector sink: batches of events `POST`ed to
//! `/services/collector/event` (`Authorization: Splunk <token>`, concatenated JSON event
//! objects) on a request channel (`X-Splunk-Request-Channel`), each batch then confirmed by
//! indexer acknowledgement — `POST /services/collector/ack` with `{"acks":[id]}` until it
//! answers true — before its offsets may be committed. A batch not acknowledged within the
//! ack timeout is sent again (Splunk has no idempotent write: a resend may duplicate).

mod sink;

pub use sink::{SplunkConfig, SplunkSink, hec_event};
