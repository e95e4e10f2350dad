#[courier::publish_errors(errortype = "boom")]
struct Order;

fn main() {}
