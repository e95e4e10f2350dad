#[courier::publish_errors(retries = 3)]
fn charge() -> Result<(), std::io::Error> {
    Ok(())
}

#[courier::publish(type = "charged", fields(id = 1))]
fn charged() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
