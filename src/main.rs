use std::process::ExitCode;

fn main() -> ExitCode {
    claude_bottle::cli::main()
}
