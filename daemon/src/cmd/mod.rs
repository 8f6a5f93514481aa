//! One-shot subcommands that work on files (binary side: errors are anyhow here).

pub mod forecast;
