//! Sizes, and flags around the app's command.

use super::*;

#[test]
fn sizes() {
    assert_eq!(parse_size("4Mi"), Ok(4 << 20));
    assert_eq!(parse_size("4MiB"), Ok(4 << 20));
    assert_eq!(parse_size("16MB"), Ok(16_000_000));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert!(parse_size("0").is_err());
    assert!(parse_size("lots").is_err());
    assert!(parse_size("4Xi").is_err());
    assert!(parse_size("99999999999999999999Gi").is_err());
}

#[test]
fn flags_and_trailing_command() {
    let cli = Cli::try_parse_from([
        "outrider",
        "run",
        "--app-id",
        "a",
        "--app-port",
        "7001",
        "--",
        "app",
        "--flag",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        panic!("not run")
    };
    assert_eq!(args.app_id, "a");
    assert_eq!(args.app_port, Some(7001));
    assert_eq!(args.command, ["app", "--flag"]);
    let cli = Cli::try_parse_from([
        "outrider",
        "run",
        "--app-id",
        "a",
        "--dapr-internal-grpc-port",
        "1",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        panic!("not run")
    };
    assert_eq!(args.mesh_port, Some(1));
}
