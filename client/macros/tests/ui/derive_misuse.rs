#[derive(courier::ErrorType)]
union Bits {
    a: u32,
    b: f32,
}

#[derive(courier::ErrorType)]
enum Failure {
    #[courier(kind = "x")]
    Timeout,
}

#[derive(courier::ErrorType)]
#[courier(errortype = "x")]
enum Other {
    A,
}

fn main() {}
