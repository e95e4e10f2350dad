//! The example main server's command line.

#[test]
fn help_names_the_handlers_and_the_journal() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier-consumer-main"))
        .arg("--help")
        .output()
        .expect("run courier-consumer-main");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--orders",
        "--errors",
        "--journal",
        "--group",
        "--listen",
        "COURIER_CONSUMER_LISTEN",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}
