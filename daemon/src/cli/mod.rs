//! The command line: one module per subcommand, each a thin shell over the
//! domain functions below it (they write the audit entries, not the CLI).

pub mod bench;
