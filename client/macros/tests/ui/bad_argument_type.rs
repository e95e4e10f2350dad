#[courier::publish_errors(errortype = 5)]
fn charge() -> Result<(), std::io::Error> {
    Ok(())
}

#[courier::publish(type = order_created)]
fn create() -> Result<(), std::io::Error> {
    Ok(())
}

#[courier::publish_errors(errortype = "--")]
fn refund() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
