//! The sink binary's command line.

#[test]
fn help_offers_both_sinks() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier-consumer-es"))
        .arg("--help")
        .output()
        .expect("run courier-consumer-es");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "elasticsearch",
        "splunk",
        "--es-index",
        "--splunk-token",
        "--batch-docs",
        "--listen",
    ] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn a_bad_index_template_is_refused_at_startup() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier-consumer-es"))
        .args(["--es-index", "{topic}-no-prefix"])
        .output()
        .expect("run courier-consumer-es");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("literal prefix"));
}
