struct Receipt;

#[courier::publish(type = "paid")]
fn pay() -> Result<Receipt, std::io::Error> {
    Ok(Receipt)
}

fn main() {}
