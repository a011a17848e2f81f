//! The `sfprocessor` binary.

fn main() {
    std::process::exit(sfprocessor::app::main_with_args(std::env::args_os()));
}
