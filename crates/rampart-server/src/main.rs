// The server's allocator. A request through the hardened stack makes about forty small
// allocations (boxed routes and futures, request extensions, header maps, the access line); on
// glibc's allocator they cost about a tenth of a small request's CPU, part of it arena locks
// the worker threads contend on. mimalloc keeps per-thread free lists and answers those from
// them. The library crate does not choose an allocator for the apps that adopt it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rampart_server::cli::main()
}
