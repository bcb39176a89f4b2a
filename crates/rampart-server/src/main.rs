fn main() -> std::process::ExitCode {
    rampart_server::cli::main()
}
