//! The `eventd` binary: parses the command line and hands over to `eventd::cli`.

fn main() -> std::process::ExitCode {
    eventd::cli::main()
}
