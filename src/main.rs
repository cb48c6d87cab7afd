//! The `eventd` binary: parses the command line and hands over to `eventd::cli`.

/// mimalloc instead of the system allocator: the request and delivery paths allocate small
/// buffers on every exchange, and glibc's malloc spent about a fifth of the worker threads' CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventd::cli::main()
}
