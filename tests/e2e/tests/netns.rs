//! The testkit's LAN of network namespaces: hosts reach each other, nothing of the LAN is in the
//! machine's own namespace, and nothing is left behind. All traffic stays inside the namespaces.

use std::process::{Command, Stdio};
use std::time::Duration;

use outrider_testkit::netns::Lan;
use outrider_testkit::wait_until;

fn namespaces() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[tokio::test]
async fn hosts_on_a_lan_reach_each_other_and_only_each_other() {
    let lan = match Lan::new(3) {
        Ok(lan) => lan,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let names: Vec<String> = lan.hosts.iter().map(|h| h.netns.clone()).collect();
    assert!(names.iter().all(|n| namespaces().contains(n.as_str())));
    let (a, b) = (&lan.hosts[0], &lan.hosts[1]);
    assert_eq!(b.addr.to_string(), "10.77.0.2");

    // A server on b, bound to its LAN address; a and c fetch from it.
    let mut server = b
        .tokio_command("python3")
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            &b.addr.to_string(),
            "--directory",
            "/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{}:8000/", b.addr);
    for host in [a, &lan.hosts[2]] {
        wait_until(Duration::from_secs(10), "the server on b to answer", || {
            let mut curl = host.command("curl");
            curl.args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "1",
                &url,
            ]);
            async move {
                (String::from_utf8_lossy(&curl.output().unwrap().stdout) == "200").then_some(())
            }
        })
        .await;
    }
    // Nothing of the LAN is in the machine's own namespace: no address from its range, no port
    // of its bridge. (Checked by looking, never by sending: from here such an address would be
    // routed out to the real network.)
    let root = |args: &[&str]| {
        String::from_utf8_lossy(&Command::new("ip").args(args).output().unwrap().stdout)
            .into_owned()
    };
    assert!(
        !root(&["-o", "-4", "addr"]).contains("10.77.0."),
        "a LAN address in the machine's namespace"
    );
    server.kill().await.unwrap();

    drop(lan);
    let left = namespaces();
    assert!(
        names.iter().all(|n| !left.contains(n.as_str())),
        "namespaces left behind: {left}"
    );
}
