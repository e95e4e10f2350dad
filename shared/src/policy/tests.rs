use super::*;
use crate::testing::event;
use crate::topic::{MAX_TOPIC_LEN, check_collision, collision_key};
use proptest::prelude::*;

fn compiled() -> CompiledPolicy {
    TopicPolicy::default().compile().unwrap()
}

#[test]
fn creation_limits_and_errortype_rules_are_checked() {
    let with = |creation: CreationLimits, errortypes: Vec<ErrortypeRule>| {
        TopicPolicy {
            creation,
            errortypes,
            ..TopicPolicy::default()
        }
        .compile()
    };
    let limits = |per_service, interval_secs| CreationLimits {
        per_service,
        interval_secs,
    };
    assert!(with(limits(MAX_CREATIONS, 604_800), vec![]).is_ok());
    assert!(with(limits(MAX_CREATIONS + 1, 60), vec![]).is_err());
    assert!(with(limits(5, 0), vec![]).is_err());
    assert!(with(limits(5, 604_801), vec![]).is_err());
    let rule = |service: &str| ErrortypeRule {
        service: service.into(),
        allow: vec!["payment-*".into()],
    };
    assert!(with(limits(5, 60), vec![rule("*"), rule("billing")]).is_ok());
    assert!(with(limits(5, 60), vec![rule("Billing Team")]).is_err());
    let p = with(limits(5, 60), vec![rule("billing")]).unwrap();
    let declined = crate::testing::event("/billing", r#","errortype":"Payment Declined""#);
    assert!(p.check_errortype("billing", &declined).is_ok());
    let other = crate::testing::event("/billing", r#","errortype":"timeout""#);
    assert!(p.check_errortype("billing", &other).is_err());
    assert!(
        p.check_errortype("orders", &other).is_ok(),
        "no rule, no limit"
    );
}

#[test]
fn default_policy_routes_and_picks_templates() {
    let p = compiled();
    let preview = p
        .preview(&event("/billing", r#","errortype":"Declined""#))
        .unwrap();
    assert_eq!(preview.topic, "billing.error.declined");
    assert_eq!(preview.template.as_deref(), Some("errors"));
    assert_eq!(preview.refusal, None);
    assert_eq!(p.template_for("billing.events").unwrap().name, "default");
    let errors = p.template_for("x.error.y").unwrap();
    assert_eq!(
        errors
            .topic_configs(3)
            .get("retention.ms")
            .map(String::as_str),
        Some("1209600000")
    );
    assert_eq!(
        errors
            .topic_configs(3)
            .get("min.insync.replicas")
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        errors
            .topic_configs(1)
            .get("min.insync.replicas")
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn ownership_allow_and_deny() {
    let p = TopicPolicy {
        shared: vec!["audit.*".into()],
        allow: vec!["*.events".into(), "*.error.*".into(), "audit.*".into()],
        deny: vec!["*.error.secret*".into()],
        ..TopicPolicy::default()
    }
    .compile()
    .unwrap();
    assert_eq!(p.check("billing", "billing.events"), Ok(()));
    assert_eq!(p.check("billing", "audit.trail"), Ok(()));
    assert!(matches!(
        p.check("billing", "shipping.events"),
        Err(Refusal::NotOwner { .. })
    ));
    // A prefix of another service's name is not ownership.
    assert!(p.check("bill", "billing.events").is_err());
    assert!(matches!(
        p.check("billing", "billing.logs"),
        Err(Refusal::NotAllowed(_))
    ));
    assert!(matches!(
        p.check("billing", "billing.error.secret-leak"),
        Err(Refusal::Denied { .. })
    ));
    assert!(p.check_admin("shipping.events").is_ok());
    assert!(p.check_admin("x.error.secrets").is_err());
    let open = TopicPolicy {
        ownership: false,
        ..TopicPolicy::default()
    }
    .compile()
    .unwrap();
    assert_eq!(open.check("billing", "shipping.events"), Ok(()));
}

#[test]
fn acl_entries_open_topics_to_one_service() {
    let p = TopicPolicy {
        acl: vec![
            AclEntry {
                service: "billing".into(),
                topics: vec!["payments.*".into()],
            },
            AclEntry {
                service: "billing".into(),
                topics: vec!["ledger.in".into()],
            },
        ],
        deny: vec!["payments.secret*".into()],
        ..TopicPolicy::default()
    }
    .compile()
    .unwrap();
    assert_eq!(p.check("billing", "payments.settled"), Ok(()));
    assert_eq!(p.check("billing", "ledger.in"), Ok(()));
    // Only the named service, only the named topics, and deny still wins.
    assert!(matches!(
        p.check("shipping", "payments.settled"),
        Err(Refusal::NotOwner { .. })
    ));
    assert!(matches!(
        p.check("billing", "ledger.out"),
        Err(Refusal::NotOwner { .. })
    ));
    assert!(matches!(
        p.check("billing", "payments.secret-keys"),
        Err(Refusal::Denied { .. })
    ));
    let bad = TopicPolicy {
        acl: vec![AclEntry {
            service: "Billing".into(),
            topics: vec!["x".into()],
        }],
        ..TopicPolicy::default()
    };
    assert!(bad.compile().unwrap_err().to_string().contains("acl"));
    let bad = TopicPolicy {
        acl: vec![AclEntry {
            service: "billing".into(),
            topics: vec!["a b".into()],
        }],
        ..TopicPolicy::default()
    };
    assert!(
        bad.compile()
            .unwrap_err()
            .to_string()
            .contains("acl: pattern")
    );
}

#[test]
fn invalid_policies_are_refused_with_reasons() {
    let cases: Vec<(TopicPolicy, &str)> = vec![
        (
            TopicPolicy {
                templates: vec![],
                ..TopicPolicy::default()
            },
            "at least one",
        ),
        (
            TopicPolicy {
                deny: vec!["a b".into()],
                ..TopicPolicy::default()
            },
            "deny: pattern",
        ),
        (
            TopicPolicy {
                allow: vec!["[a".into()],
                ..TopicPolicy::default()
            },
            "allow: pattern",
        ),
        (
            TopicPolicy {
                naming: NamingPolicy {
                    event_template: "events.{service}".into(),
                    ..NamingPolicy::default()
                },
                ..TopicPolicy::default()
            },
            "ownership",
        ),
        (
            TopicPolicy {
                templates: vec![TopicTemplate {
                    partitions: 0,
                    ..TopicTemplate::default()
                }],
                ..TopicPolicy::default()
            },
            "partitions",
        ),
        (
            TopicPolicy {
                templates: vec![TopicTemplate {
                    replication_factor: Some(2),
                    min_insync_replicas: Some(3),
                    ..TopicTemplate::default()
                }],
                ..TopicPolicy::default()
            },
            "refuse every write",
        ),
        (
            TopicPolicy {
                templates: vec![TopicTemplate {
                    compression_type: Some("brotli".into()),
                    ..TopicTemplate::default()
                }],
                ..TopicPolicy::default()
            },
            "compression_type",
        ),
        (
            TopicPolicy {
                templates: vec![TopicTemplate {
                    configs: [("retention.ms".into(), "1".into())].into(),
                    ..TopicTemplate::default()
                }],
                ..TopicPolicy::default()
            },
            "own field",
        ),
        (
            TopicPolicy {
                templates: vec![TopicTemplate::default(), TopicTemplate::default()],
                ..TopicPolicy::default()
            },
            "two templates",
        ),
    ];
    for (policy, expected) in cases {
        let error = policy.compile().unwrap_err().to_string();
        assert!(error.contains(expected), "{error} lacks {expected}");
    }
}

#[test]
fn no_template_means_no_creation() {
    let p = TopicPolicy {
        templates: vec![TopicTemplate {
            pattern: "*.events".into(),
            ..TopicTemplate::default()
        }],
        ..TopicPolicy::default()
    }
    .compile()
    .unwrap();
    let preview = p.preview(&event("/a", r#","category":"log""#)).unwrap();
    assert_eq!(preview.topic, "a.logs");
    assert!(preview.refusal.unwrap().contains("no topic template"));
}

#[test]
fn patterns_longer_than_the_limit_are_refused() {
    let with_deny = |pattern: String| {
        TopicPolicy {
            deny: vec![pattern],
            ..TopicPolicy::default()
        }
        .compile()
    };
    assert!(with_deny("a".repeat(MAX_PATTERN_LEN)).is_ok());
    let long = "[a-z]".repeat(MAX_PATTERN_LEN / 5 + 1);
    let err = with_deny(long).unwrap_err().to_string();
    assert!(err.contains("longer than"), "{err}");
}

#[test]
fn policy_round_trips_through_json() {
    let p = TopicPolicy::default();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<TopicPolicy>(&json).unwrap(), p);
    assert!(serde_json::from_str::<TopicPolicy>(r#"{"ownershp":true}"#).is_err());
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn source() -> impl Strategy<Value = String> {
    "\\PC{0,80}"
}

proptest! {
    /// Whatever the event, a routed name is legal for Kafka, and the service it is
    /// checked against owns it.
    #[test]
    fn routed_names_are_legal_and_owned(
        source in source(),
        errortype in "\\PC{1,100}",
        category in prop_oneof![Just("event"), Just("log"), Just("error")],
    ) {
        let p = compiled();
        let json = serde_json::json!({
            "specversion": "1.0", "source": source, "type": "t",
            "category": category, "errortype": (category == "error").then_some(errortype),
        });
        let Ok(e) = Event::from_json(json.to_string().as_bytes()) else { return Ok(()) };
        if let Ok(preview) = p.preview(&e) {
            prop_assert!(validate_topic_name(&preview.topic).is_ok());
            prop_assert!(preview.topic.len() <= MAX_TOPIC_LEN);
            prop_assert_eq!(preview.refusal, None);
            prop_assert!(owns(&preview.service, &preview.topic));
        }
    }

    /// Two different (service, category, error type) never get the same topic, nor two
    /// topics Kafka would consider colliding.
    #[test]
    fn routed_names_never_collide(
        a in (component(), 0..3usize, component()),
        b in (component(), 0..3usize, component()),
    ) {
        let p = compiled();
        let render = |(service, category, errortype): &(String, usize, String)| {
            let category = ["event", "log", "error"][*category];
            let json = serde_json::json!({
                "specversion": "1.0", "source": format!("/{service}"), "type": "t",
                "category": category, "errortype": (category == "error").then_some(errortype),
            });
            let e = Event::from_json(json.to_string().as_bytes()).unwrap();
            let key = (service.clone(), category, if category == "error" { errortype.clone() } else { String::new() });
            (key, p.route(&e).unwrap())
        };
        let (ka, ta) = render(&a);
        let (kb, tb) = render(&b);
        if ka != kb {
            prop_assert_ne!(&ta, &tb);
            prop_assert_ne!(collision_key(&ta), collision_key(&tb));
            prop_assert!(check_collision(&ta, [tb.as_str()]).is_ok());
        }
    }

    /// Any template set that passes validation never routes an error and an event of
    /// any services to the same topic.
    #[test]
    fn validated_templates_keep_errors_apart(
        event_template in prop_oneof![
            Just("{service}.events".to_owned()),
            Just("{service}.{category}s".to_owned()),
            Just("{service}.{category}".to_owned()),
            Just("{service}.stream".to_owned()),
            Just("{service}".to_owned()),
        ],
        error_template in prop_oneof![
            Just("{service}.error.{errortype}".to_owned()),
            Just("{service}.{errortype}".to_owned()),
            Just("{service}.{errortype}s".to_owned()),
            Just("{service}.err-{errortype}".to_owned()),
            Just("{service}.{category}.{errortype}".to_owned()),
        ],
        service_a in component(), service_b in component(), errortype in component(),
    ) {
        let naming = NamingPolicy { event_template, log_template: "{service}.logs".into(), error_template };
        if naming.validate().is_err() { return Ok(()) }
        let ev = |s: &str, extra: &str| event(&format!("/{s}"), extra);
        let event_topic = naming.topic_for(&ev(&service_a, "")).unwrap();
        let error_topic = naming
            .topic_for(&ev(&service_b, &format!(r#","errortype":"{errortype}""#)))
            .unwrap();
        prop_assert_ne!(event_topic, error_topic);
    }

    /// Bad patterns and templates are refused, never panic.
    #[test]
    fn arbitrary_patterns_never_panic(pattern in "\\PC{0,40}", partitions in -5i32..20_000) {
        let p = TopicPolicy {
            deny: vec![pattern.clone()],
            templates: vec![TopicTemplate { pattern, partitions, ..TopicTemplate::default() }],
            ..TopicPolicy::default()
        };
        if let Ok(c) = p.compile() {
            let _ = c.check("svc", "svc.events");
            let _ = c.template_for("svc.events");
        }
    }
}
