#[courier::publish_errors(errortype = "boom", client = 5)]
fn charge() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
