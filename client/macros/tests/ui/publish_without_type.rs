#[courier::publish]
fn create() -> Result<u32, std::io::Error> {
    Ok(1)
}

fn main() {}
