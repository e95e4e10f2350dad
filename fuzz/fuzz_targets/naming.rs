//! The naming policy: arbitrary naming templates, `source`s and error types. Never a panic;
//! templates that validate route every event that has a service (and, for an error, an error
//! type with a letter or digit) to a legal topic name, and never route an error to the topic of
//! an event or a log line. (The `policy` target covers patterns and the compiled policy.)
#![no_main]

use arbitrary::Arbitrary;
use courier_shared::envelope::Category;
use courier_shared::topic::{
    MAX_COMPONENT_LEN, MAX_TOPIC_LEN, normalise_component, service_of, validate_topic_name,
};
use courier_shared::{Event, NamingPolicy, TopicError};
use libfuzzer_sys::fuzz_target;

/// A piece of a naming template: placeholders and separators often, any text sometimes.
#[derive(Arbitrary, Debug)]
enum Piece {
    Service,
    Category,
    Errortype,
    Dot,
    Underscore,
    Dash,
    Word(u8),
    Brace(bool),
    Text(String),
}

/// A piece of a `source`: URI syntax often, any text sometimes.
#[derive(Arbitrary, Debug)]
enum SourcePiece {
    Slash,
    Colon,
    Scheme,
    Urn,
    At,
    Dot,
    Word(u8),
    Text(String),
}

const WORDS: [&str; 8] = ["events", "logs", "error", "x", "a", "svc", "kind", "__"];

#[derive(Arbitrary, Debug)]
struct Probe {
    source: Vec<SourcePiece>,
    category: u8,
    errortype: String,
}

#[derive(Arbitrary, Debug)]
struct Input {
    event: Option<Vec<Piece>>,
    log: Option<Vec<Piece>>,
    error: Option<Vec<Piece>>,
    probes: Vec<Probe>,
    topics: Vec<String>,
}

fn template(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Service => "{service}".to_owned(),
            Piece::Category => "{category}".to_owned(),
            Piece::Errortype => "{errortype}".to_owned(),
            Piece::Dot => ".".to_owned(),
            Piece::Underscore => "_".to_owned(),
            Piece::Dash => "-".to_owned(),
            Piece::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_owned(),
            Piece::Brace(open) => if *open { "{" } else { "}" }.to_owned(),
            Piece::Text(s) => s.clone(),
        })
        .collect()
}

fn source(pieces: &[SourcePiece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            SourcePiece::Slash => "/".to_owned(),
            SourcePiece::Colon => ":".to_owned(),
            SourcePiece::Scheme => "https://".to_owned(),
            SourcePiece::Urn => "urn:".to_owned(),
            SourcePiece::At => "@".to_owned(),
            SourcePiece::Dot => ".".to_owned(),
            SourcePiece::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_owned(),
            SourcePiece::Text(s) => s.clone(),
        })
        .collect()
}

fn event(source: String, category: Category, errortype: Option<String>) -> Event {
    Event {
        id: "1".into(),
        source,
        ty: "t".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        data: None,
        category,
        errortype,
        partitionkey: None,
        extensions: Default::default(),
        id_assigned: false,
    }
}

fuzz_target!(|input: Input| {
    let defaults = NamingPolicy::default();
    let naming = NamingPolicy {
        event_template: input
            .event
            .as_deref()
            .map_or(defaults.event_template, template),
        log_template: input.log.as_deref().map_or(defaults.log_template, template),
        error_template: input
            .error
            .as_deref()
            .map_or(defaults.error_template, template),
    };
    for topic in &input.topics {
        let n = normalise_component(topic);
        assert_eq!(normalise_component(&n), n, "normalising is idempotent");
        assert!(n.len() <= MAX_COMPONENT_LEN);
        let _ = validate_topic_name(topic);
    }
    let valid = naming.validate().is_ok();
    let mut routed: Vec<(String, Category, String)> = Vec::new();
    for probe in &input.probes {
        let source = source(&probe.source);
        let service = match service_of(&source) {
            Ok(s) => s,
            Err(TopicError::NoService(_)) => continue,
            Err(e) => panic!("service_of({source:?}): unexpected {e}"),
        };
        assert!(
            !service.is_empty()
                && service.len() <= MAX_COMPONENT_LEN
                && normalise_component(&service) == service,
            "service {service:?} of {source:?} is not a component"
        );
        let category =
            [Category::Event, Category::Log, Category::Error][usize::from(probe.category) % 3];
        let errortype = (category == Category::Error).then(|| probe.errortype.clone());
        let e = event(source.clone(), category, errortype);
        let routed_name = naming.topic_for(&e);
        if !valid {
            continue;
        }
        let topic = match routed_name {
            Ok(t) => t,
            Err(TopicError::Illegal { reason, .. })
                if category == Category::Error
                    && normalise_component(&probe.errortype).is_empty() =>
            {
                assert!(reason.contains("errortype"), "{reason}");
                continue;
            }
            Err(err) => panic!("valid naming templates {naming:?} cannot route {e:?}: {err}"),
        };
        assert!(validate_topic_name(&topic).is_ok() && topic.len() <= MAX_TOPIC_LEN);
        assert_eq!(naming.topic_for_service(&service, &e).as_ref(), Ok(&topic));
        routed.push((service, category, topic));
    }
    for (s1, c1, t1) in &routed {
        for (s2, c2, t2) in &routed {
            if *c1 == Category::Error && *c2 != Category::Error {
                assert_ne!(
                    t1, t2,
                    "an error of {s1} and a {c2} of {s2} share a topic under {naming:?}"
                );
            }
        }
    }
});
