#[derive(Debug)]
struct Plain;

impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("plain")
    }
}

#[courier::publish_errors]
fn charge() -> Result<(), Plain> {
    Err(Plain)
}

fn main() {}
