/// mimalloc: the warehouse loader and ingest allocate many small strings from several
/// threads; glibc malloc spent a fifth of the loader's CPU in its locks (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
