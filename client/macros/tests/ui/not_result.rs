#[courier::publish_errors(errortype = "boom")]
fn count() -> u32 {
    1
}

#[courier::publish(type = "done")]
fn nothing() {}

fn main() {}
