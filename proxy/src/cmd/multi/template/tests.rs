//! Reading a template as the dapr CLI does: what `common` fills in, which paths win, which keys
//! become which flags.

use std::path::Path;

use super::{LogDestination, read};

fn flag<'a>(argv: &'a [String], name: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn common_fills_in_and_the_app_wins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["a/.dapr/resources", "b", "shared", "own"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("b/config.yaml"), "kind: Configuration\n").unwrap();
    let file = root.join("dapr.yaml");
    std::fs::write(
        &file,
        "version: 1\ncommon:\n  resourcesPaths: [shared]\n  appProtocol: grpc\n  appMaxConcurrency: 4\n  enableAppHealthCheck: true\n  logLevel: debug\n  env:\n    A: common\n    B: 2\napps:\n  - appID: first\n    appDirPath: a\n    appPort: 7001\n    daprHTTPPort: 3600\n    env:\n      A: app\n  - appDirPath: b\n    appProtocol: http\n    resourcesPaths: [../own]\n    configFilePath: config.yaml\n    appLogDestination: console\n    command: [sh, -c, \"exit 0\"]\n",
    )
    .unwrap();
    let mut warnings = Vec::new();
    let t = read(&file, None, &mut warnings).unwrap();
    assert_eq!(t.log_level, "debug");
    let (a, b) = (&t.apps[0], &t.apps[1]);
    assert_eq!((a.app_id.as_str(), b.app_id.as_str()), ("first", "b"));
    // Ports given are kept; the others are left to the sidecar to choose.
    assert_eq!(flag(&a.argv, "--dapr-http-port"), ["3600"]);
    assert_eq!(flag(&b.argv, "--dapr-http-port"), ["0"]);
    assert_eq!(flag(&a.argv, "--app-port"), ["7001"]);
    assert_eq!(flag(&a.argv, "--app-protocol"), ["grpc"]);
    assert_eq!(flag(&b.argv, "--app-protocol"), ["http"]);
    assert_eq!(flag(&b.argv, "--app-max-concurrency"), ["4"]);
    assert!(
        b.argv
            .contains(&"--enable-app-health-check=true".to_owned())
    );
    // The app's own resources, else its .dapr/resources, else common's.
    let res = |argv: &[String]| -> Vec<String> {
        flag(argv, "--resources-path")
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        res(&a.argv),
        [root.join("a/.dapr/resources").display().to_string()]
    );
    assert!(
        Path::new(&res(&b.argv)[0]).ends_with("b/../own"),
        "{:?}",
        res(&b.argv)
    );
    assert_eq!(
        flag(&b.argv, "--config"),
        [root.join("b/config.yaml").display().to_string()]
    );
    // Environment merged, the app's value winning; scalars as written.
    assert_eq!(
        a.env,
        [("A".into(), "app".into()), ("B".into(), "2".into())]
    );
    assert_eq!(
        (a.app_log, b.app_log),
        (LogDestination::FileAndConsole, LogDestination::Console)
    );
    assert_eq!(&b.argv[b.argv.len() - 4..], ["--", "sh", "-c", "exit 0"]);
    // An app without a command is run as a sidecar alone, and said so.
    assert!(
        warnings.iter().any(|w| w.at.ends_with("apps[0].command")),
        "{warnings:?}"
    );
}

#[test]
fn missing_paths_are_refused_by_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    let file = dir.path().join("dapr.yaml");
    std::fs::write(
        &file,
        "version: 1\ncommon:\n  configFilePath: nope.yaml\napps:\n  - appDirPath: a\n    resourcesPaths: [missing]\n",
    )
    .unwrap();
    let errs = read(&file, None, &mut Vec::new()).unwrap_err();
    let at: Vec<String> = errs
        .iter()
        .map(|p| p.at.rsplit(": ").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        at,
        ["apps[0].resourcesPaths[0]", "common.configFilePath"],
        "{errs:?}"
    );
}
