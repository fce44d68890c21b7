/// jemalloc hands freed pages back to the OS after a short decay. Under glibc malloc the
/// soak's RSS climbed for tens of minutes (to 105 MiB) over a live heap that heaptrack showed
/// flat at ~10 MiB: the allocator kept what the server had freed (RELIABILITY.md, "Soak").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
