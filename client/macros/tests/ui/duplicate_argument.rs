#[courier::publish_errors(errortype = "a", errortype = "b")]
fn charge() -> Result<(), std::io::Error> {
    Ok(())
}

#[courier::publish_errors(fields(id = 1, id = 2))]
fn refund() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
