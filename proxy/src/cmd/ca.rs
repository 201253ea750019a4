//! `outrider ca …`: a CA of one's own. `init` creates it (a root, or an intermediate under an
//! offline root), `serve` signs sidecars' requests over TLS, `token create` makes the join
//! tokens their first request is authorised by.

mod authority;
pub(crate) mod serve;
mod sign;

use std::process::ExitCode;
use std::time::SystemTime;

use outrider_certs::{NewAuthority, create_authority, rotate_add, rotate_retire, rotate_switch};

use outrider_certs::{NewToken, TokenStore};

use crate::cli::{CaInitArgs, RotateCommand, TokenCreateArgs};

/// Creates the CA and says where it is and how to use it. Exit status: 0 created, 1 refused.
pub(crate) fn init(args: &CaInitArgs) -> ExitCode {
    let req = NewAuthority {
        dir: &args.dir,
        lifetime: args.issuer.lifetime(),
        root: args.issuer.root(),
    };
    match create_authority(&req) {
        Ok(ca) => {
            let day = 24 * 3600;
            let days = (ca
                .not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs()
                + day / 2)
                / day;
            let dir = ca.dir.display();
            let kind = if ca.intermediate {
                "an intermediate CA"
            } else {
                "a root CA"
            };
            println!(
                "created {kind} {:?} in {dir}, valid {days} more days",
                ca.name
            );
            println!("  {dir}/ca.crt     the CA's certificate");
            println!("  {dir}/ca.key     its private key (mode 0600)");
            println!("  {dir}/bundle.pem the root peers must trust");
            println!(
                "sidecars issue their certificates from it with: outrider run --ca-dir {dir} …"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outrider ca init: {e}");
            ExitCode::from(1)
        }
    }
}

/// Creates a join token and prints it alone on stdout (for `$(…)`), and what it allows on
/// stderr. Exit status: 0 created, 1 refused.
pub(crate) fn token_create(args: &TokenCreateArgs) -> ExitCode {
    if !args.dir.join("ca.key").is_file() {
        eprintln!(
            "outrider ca token create: {} holds no CA (run `outrider ca init --dir {}` first)",
            args.dir.display(),
            args.dir.display()
        );
        return ExitCode::from(1);
    }
    let new = NewToken {
        namespace: args.namespace.clone(),
        app_id: args.app_id.clone(),
        uses: args.uses,
        ttl: args.ttl,
    };
    match TokenStore::new(&args.dir).create(&new) {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "a join token for app {} in namespace {}: {} use(s), valid {}s; give it to the sidecar as OUTRIDER_CA_TOKEN",
                new.app_id,
                new.namespace,
                new.uses,
                new.ttl.as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outrider ca token create: {e}");
            ExitCode::from(1)
        }
    }
}

/// One step of a rotation, and what to do next. Exit status: 0 done, 1 refused.
pub(crate) fn rotate(step: &RotateCommand) -> ExitCode {
    let done = match step {
        RotateCommand::Add(a) => {
            rotate_add(&a.dir, a.issuer.lifetime(), a.issuer.root()).map(|(ca, roots)| {
                format!(
                    "added {:?} in {}/next; the bundle holds {roots} roots.\n\
                 Sidecars of the CA service trust it within a second (outrider_trust_bundle_roots \
                 shows {roots}); hand {}/bundle.pem to sidecars that read files, then run \
                 `outrider ca rotate switch --dir {}`",
                    ca.name,
                    a.dir.display(),
                    a.dir.display(),
                    a.dir.display()
                )
            })
        }
        RotateCommand::Switch(a) => rotate_switch(&a.dir).map(|()| {
            format!(
                "certificates are issued from the new CA now; the old one waits in {}/previous.\n\
                 Once every sidecar has renewed (one workload certificate lifetime), run \
                 `outrider ca rotate retire --dir {}`",
                a.dir.display(),
                a.dir.display()
            )
        }),
        RotateCommand::Retire(a) => rotate_retire(&a.dir, a.grace).map(|n| {
            format!(
                "retired {n} root(s) from {}/bundle.pem and the previous issuer; peers still \
                 holding a certificate from a retired root are refused from now on",
                a.dir.display()
            )
        }),
    };
    match done {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outrider ca rotate: {e}");
            ExitCode::from(1)
        }
    }
}
