#[derive(Debug, courier::ErrorType)]
enum Failure {
    Timeout,
}

#[courier::publish_errors]
fn call() -> Result<(), Failure> {
    Err(Failure::Timeout)
}

fn main() {}
