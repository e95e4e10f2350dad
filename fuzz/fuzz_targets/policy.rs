//! The compiled topic policy: arbitrary allow, deny and shared patterns, topic templates and
//! topic names, as the configuration file and the admin API carry them. Never a panic; a
//! policy compiles only with valid naming templates, and its decisions follow its rules: a
//! denied topic is refused to everyone, ownership keeps a service to its own prefix (or the
//! shared topics), and a topic a template applies to gets that template.
#![no_main]

use arbitrary::Arbitrary;
use courier_shared::policy::{Refusal, owns};
use courier_shared::{NamingPolicy, TopicPolicy, TopicTemplate};
use libfuzzer_sys::fuzz_target;

/// A piece of a glob pattern: wildcards and topic-name text often, any text sometimes.
#[derive(Arbitrary, Debug)]
enum Glob {
    Star,
    Question,
    Class(u8, u8),
    Dot,
    Word(u8),
    Text(String),
}

const WORDS: [&str; 6] = ["events", "error", "x", "svc", "-", "_"];

#[derive(Arbitrary, Debug)]
struct Input {
    ownership: bool,
    plain_naming: bool,
    shared: Vec<Vec<Glob>>,
    allow: Vec<Vec<Glob>>,
    deny: Vec<Vec<Glob>>,
    templates: Vec<Vec<Glob>>,
    service: u8,
    topics: Vec<(u8, Vec<Glob>)>,
}

/// A pattern of at most 16 pieces: real policies hold short patterns, and a long one only
/// costs compile time (the policy refuses patterns over `MAX_PATTERN_LEN`, a unit test checks).
fn pattern(pieces: &[Glob]) -> String {
    pieces
        .iter()
        .take(16)
        .map(|p| match p {
            Glob::Star => "*".to_owned(),
            Glob::Question => "?".to_owned(),
            Glob::Class(a, b) => format!("[{}-{}]", char::from(*a), char::from(*b)),
            Glob::Dot => ".".to_owned(),
            Glob::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_owned(),
            Glob::Text(s) => s.chars().take(16).collect(),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    // A few patterns per list: compiling globs is the slow part, and what matters is their
    // shapes, not their number.
    let patterns = |v: &[Vec<Glob>]| v.iter().take(2).map(|p| pattern(p)).collect::<Vec<_>>();
    let mut policy = TopicPolicy {
        ownership: input.ownership,
        shared: patterns(&input.shared),
        allow: patterns(&input.allow),
        deny: patterns(&input.deny),
        ..TopicPolicy::default()
    };
    if input.plain_naming {
        // Not under `{service}.`: refused when ownership is on.
        policy.naming = NamingPolicy {
            event_template: "all.events".into(),
            log_template: "all.logs".into(),
            error_template: "all.error.{errortype}".into(),
        };
    }
    if !input.templates.is_empty() {
        policy.templates = input
            .templates
            .iter()
            .take(2)
            .enumerate()
            .map(|(i, p)| TopicTemplate {
                name: format!("t{i}"),
                pattern: pattern(p),
                ..TopicTemplate::default()
            })
            .collect();
    }
    let Ok(compiled) = policy.clone().compile() else {
        return;
    };
    assert!(!(policy.ownership && input.plain_naming));
    let service = ["svc", "x", "events"][usize::from(input.service) % 3];
    for (kind, pieces) in input.topics.iter().take(8) {
        // Topic names built like patterns (so they often match), or from a pattern's text.
        let topic = match kind % 3 {
            0 => format!("{service}.{}", pattern(pieces)),
            1 => pattern(pieces),
            _ => policy.deny.first().cloned().unwrap_or_default(),
        };
        let verdict = compiled.check(service, &topic);
        let admin = compiled.check_admin(&topic);
        match &verdict {
            Err(Refusal::Denied { .. }) => {
                assert!(
                    admin.is_err(),
                    "denied {topic} to a service, not to an operator"
                )
            }
            Err(Refusal::NotOwner { .. }) => {
                assert!(policy.ownership && !owns(service, &topic))
            }
            Err(Refusal::NotAllowed(_)) => assert!(!policy.allow.is_empty()),
            Err(Refusal::NoTemplate(_)) => panic!("check does not look at templates"),
            Err(Refusal::ErrortypeNotAllowed { .. }) => {
                panic!("check does not look at errortypes")
            }
            Ok(()) => {
                if courier_shared::topic::validate_topic_name(&topic).is_ok() {
                    assert!(
                        admin.is_ok(),
                        "{topic} open to a service, not to an operator: {admin:?}"
                    );
                }
            }
        }
        if let Ok(template) = compiled.template_for(&topic) {
            assert!(compiled.template_named(&template.name).is_some());
        }
    }
});
