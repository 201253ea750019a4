//! `outrider ca init`: a CA of one's own, a root or an intermediate under an offline root, for
//! sidecars to issue their workload certificates from (`--ca-dir`).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use outrider_certs::{NewAuthority, create_authority};

use crate::cli::CaInitArgs;

/// Creates the CA and says where it is and how to use it. Exit status: 0 created, 1 refused.
pub(crate) fn init(args: &CaInitArgs) -> ExitCode {
    let req = NewAuthority {
        dir: &args.dir,
        lifetime: Duration::from_secs(u64::from(args.days) * 24 * 3600),
        root: args.root_cert.as_deref().zip(args.root_key.as_deref()),
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
