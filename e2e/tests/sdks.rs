//! Conformance with the official CloudEvents SDKs: the Python SDK (`cloudevents` from PyPI) and
//! the JavaScript SDK (`cloudevents` from npm) send events to a proxy on the shared cluster in
//! every HTTP mode Courier takes (binary, structured, batched), and decode the records Courier
//! wrote with their own Kafka binding; each decoded event must equal the one sent. The scripts
//! are `e2e/sdk/python/conformance.py` and `e2e/sdk/js/conformance.mjs`; `scripts/setup.sh`
//! installs the Python SDK in a venv of its own and `scripts/test.sh` hands its interpreter over
//! as `COURIER_TEST_PYTHON`, after `npm ci --prefix e2e/sdk/js`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use courier_e2e::{TestProxy, bootstrap, unique};

/// How long one script may take (it reads Kafka for at most 60 s of that).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// The venv's Python interpreter, which has the SDK and a Kafka reader.
fn python() -> PathBuf {
    let python = std::env::var_os("COURIER_TEST_PYTHON")
        .map(PathBuf::from)
        .expect(
            "COURIER_TEST_PYTHON is not set: it names the Python of the CloudEvents SDK venv. \
         Run the suite with scripts/test.sh, which installs the venv (scripts/setup.sh) and sets \
         it, or run scripts/setup.sh and export \
         COURIER_TEST_PYTHON=${COURIER_CACHE:-$HOME/.cache/courier}/sdk-venv/bin/python",
        );
    assert!(
        python.exists(),
        "COURIER_TEST_PYTHON={} does not exist: run scripts/setup.sh to install the CloudEvents \
         SDK venv",
        python.display()
    );
    python
}

/// `node`, once `e2e/sdk/js/node_modules` has the SDK and kafkajs.
fn node() -> PathBuf {
    let modules = sdk_dir().join("js/node_modules");
    for package in ["cloudevents", "kafkajs"] {
        assert!(
            modules.join(package).join("package.json").exists(),
            "{} has no {package}: run `npm ci --prefix e2e/sdk/js` (scripts/test.sh does)",
            modules.display()
        );
    }
    PathBuf::from(std::env::var_os("COURIER_TEST_NODE").unwrap_or_else(|| "node".into()))
}

/// Runs `program script --proxy … --bootstrap … --service …`, prints what it printed, and
/// returns its output; panics unless it exits 0.
async fn run_script(program: PathBuf, script: PathBuf, proxy: &TestProxy, service: &str) -> String {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out_path = out_dir.path().join("out.txt");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = out.try_clone().expect("output file");
    let mut child = Command::new(&program)
        .arg(&script)
        .args(["--proxy", &proxy.url("")])
        .args(["--bootstrap", &bootstrap()])
        .args(["--service", service])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // The proxy runs on this runtime: wait without blocking it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!(
        "---- {} ({:.1} s)\n{output}",
        script.display(),
        started.elapsed().as_secs_f64()
    );
    match status {
        None => panic!(
            "{} did not finish within {SCRIPT_TIMEOUT:?}",
            script.display()
        ),
        Some(s) => assert!(
            s.success(),
            "{} failed ({s}); its output is above",
            script.display()
        ),
    }
    output
}

/// The numbers of the script's `SUMMARY … sent=N checked=N mismatches=N` line.
fn summary(output: &str) -> (u64, u64, u64) {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("SUMMARY "))
        .expect("the script printed no SUMMARY line");
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in `{line}`"))
    };
    (field("sent"), field("checked"), field("mismatches"))
}

fn assert_all_checked(output: &str) {
    let (sent, checked, mismatches) = summary(output);
    assert!(checked > 0, "no event was checked");
    assert_eq!(checked, sent, "every event sent is read back and decoded");
    assert_eq!(mismatches, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sends_every_mode_and_decodes_every_record() {
    let python = python();
    let proxy = TestProxy::start(|_| {}).await;
    proxy.wait_serving().await;
    let script = sdk_dir().join("python/conformance.py");
    let output = run_script(python, script, &proxy, &unique("sdkpy")).await;
    assert_all_checked(&output);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_sdk_sends_every_mode_and_decodes_every_record() {
    let node = node();
    let proxy = TestProxy::start(|_| {}).await;
    proxy.wait_serving().await;
    let script = sdk_dir().join("js/conformance.mjs");
    let output = run_script(node, script, &proxy, &unique("sdkjs")).await;
    assert_all_checked(&output);
    proxy.stop().await;
}
