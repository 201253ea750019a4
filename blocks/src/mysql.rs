//! The MariaDB/MySQL connection `state.mysql` and `bindings.mysql` share: daprd's connection
//! string (the Go driver's DSN, `user:password@tcp(host:port)/dbname?param=value`) read into a
//! pool of connections, and the errors of the client worded for both.
//!
//! Connections are plain TCP or a Unix socket: a DSN asking for TLS (`tls=true`, `skip-verify`,
//! `preferred` or a custom name) is refused rather than silently sent in the clear.

use std::time::Duration;

use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::fault::Fault;

/// What a DSN names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dsn {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    /// `host:port`'s parts, for `tcp`.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The socket path, for `unix`.
    pub(crate) socket: Option<String>,
    pub(crate) database: Option<String>,
    /// `timeout`: how long connecting may take.
    pub(crate) connect_timeout: Option<Duration>,
}

/// Reads a Go driver DSN; the error says what is wrong, never quoting the password.
pub(crate) fn parse_dsn(dsn: &str) -> Result<Dsn, String> {
    let dsn = dsn.trim();
    let slash = dsn
        .rfind('/')
        .ok_or("the connection string has no '/' before the database name")?;
    let (head, tail) = (&dsn[..slash], &dsn[slash + 1..]);
    let (database, params) = tail.split_once('?').unwrap_or((tail, ""));
    let (credentials, address) = match head.rfind('@') {
        Some(at) => (Some(&head[..at]), &head[at + 1..]),
        None => (None, head),
    };
    let (user, password) = match credentials {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(c.to_owned()), None),
        },
        None => (None, None),
    };
    let (protocol, addr) = match address.split_once('(') {
        Some((p, rest)) => (
            p,
            rest.strip_suffix(')')
                .ok_or("the address is not closed by ')'")?,
        ),
        None => (address, ""),
    };
    let mut out = Dsn {
        user: user.filter(|u| !u.is_empty()),
        password,
        host: "127.0.0.1".into(),
        port: 3306,
        socket: None,
        database: (!database.is_empty()).then(|| database.to_owned()),
        connect_timeout: None,
    };
    match protocol {
        "" | "tcp" => {
            if !addr.is_empty() {
                let (host, port) = match addr.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || addr.starts_with('[') => (
                        h.trim_start_matches('[').trim_end_matches(']'),
                        p.parse::<u16>()
                            .map_err(|_| format!("{p:?} is not a port"))?,
                    ),
                    _ => (addr, 3306),
                };
                out.host = host.to_owned();
                out.port = port;
            }
        }
        "unix" => out.socket = Some(addr.to_owned()),
        // Without an `@`, a password would sit here: quoted only when it cannot be one.
        other if other.contains(':') => {
            return Err("the connection string is not user:password@tcp(host:port)/dbname".into());
        }
        other => return Err(format!("the protocol {other:?} is not tcp or unix")),
    }
    for (k, v) in params.split('&').filter_map(|p| p.split_once('=')) {
        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
        match k {
            "tls" if !matches!(v.as_ref(), "false" | "0") => {
                return Err(format!(
                    "tls={v}: TLS to MariaDB/MySQL is not supported by this build; connect over \
                     a private network or a Unix socket"
                ));
            }
            "timeout" => {
                let d = crate::pubsub::cloudevent::go_duration(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("timeout={v} is not a duration like 5s"))?;
                out.connect_timeout = Some(d);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A pool of at most `max` connections to what `dsn` names, on database `database` when given
/// (else the DSN's).
pub(crate) fn pool(dsn: &Dsn, database: Option<&str>, max: usize) -> Pool {
    let constraints = PoolConstraints::new(0, max.max(1)).unwrap_or_default();
    let opts = OptsBuilder::default()
        .ip_or_hostname(dsn.host.clone())
        .tcp_port(dsn.port)
        .socket(dsn.socket.clone())
        .prefer_socket(dsn.socket.is_some())
        .user(dsn.user.clone())
        .pass(dsn.password.clone())
        .db_name(database.map(str::to_owned).or(dsn.database.clone()))
        .stmt_cache_size(64)
        .pool_opts(PoolOpts::default().with_constraints(constraints));
    Pool::new(opts)
}

/// A client error as a fault, worded `<what>: <error>`.
pub(crate) fn fault(what: &str, e: mysql_async::Error) -> Fault {
    Fault::caused_by(format!("{what}: {e}"), e)
}

/// Whether `e` is the server refusing the statement itself (its syntax, a name, a value, a
/// constraint): trying again would fail the same way. Deadlocks, lock waits, a full server or
/// one shutting down are failures, worth another try.
pub(crate) fn is_refusal(e: &mysql_async::Error) -> bool {
    let mysql_async::Error::Server(s) = e else {
        return false;
    };
    matches!(
        s.code,
        1048 // column cannot be null
            | 1052 // ambiguous column
            | 1054 // unknown column
            | 1062 // duplicate key
            | 1064 // syntax
            | 1109 // unknown table
            | 1136 // column count
            | 1146 // no such table
            | 1149 // syntax
            | 1210 // wrong arguments (placeholders)
            | 1264 // out of range
            | 1265 // truncated
            | 1292 // incorrect value
            | 1364 // no default
            | 1366 // incorrect value
            | 1406 // too long
            | 1451
            ..=1452 // foreign key
            | 3140 // invalid JSON
            | 3819 // check constraint
            | 4025 // check constraint (MariaDB)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_as_the_go_driver_reads_them() {
        let d =
            parse_dsn("root:p@ss:w@rd@tcp(db.local:3307)/app?parseTime=true&timeout=5s").unwrap();
        assert_eq!(d.user.as_deref(), Some("root"));
        assert_eq!(d.password.as_deref(), Some("p@ss:w@rd"));
        assert_eq!((d.host.as_str(), d.port), ("db.local", 3307));
        assert_eq!(d.database.as_deref(), Some("app"));
        assert_eq!(d.connect_timeout, Some(Duration::from_secs(5)));
        let d = parse_dsn("root@tcp(127.0.0.1:3306)/").unwrap();
        assert_eq!((d.password, d.database), (None, None));
        let d = parse_dsn("u:p@/db").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 3306));
        let d = parse_dsn("u@unix(/run/mysqld/mysqld.sock)/db").unwrap();
        assert_eq!(d.socket.as_deref(), Some("/run/mysqld/mysqld.sock"));
        let d = parse_dsn("u@tcp([::1]:3306)/db").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 3306));
        for (bad, says) in [
            ("root@tcp(localhost:3306)", "no '/'"),
            ("root@tcp(localhost:3306/db", "not closed"),
            ("root@udp(localhost)/db", "not tcp or unix"),
            ("root:secret/db", "is not user:password@tcp"),
            ("root@tcp(localhost:x)/db", "not a port"),
            ("root:secret@tcp(h:1)/db?tls=true", "not supported"),
            ("root@tcp(h:1)/db?timeout=soon", "not a duration"),
        ] {
            let e = parse_dsn(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(parse_dsn("root@tcp(h:1)/db?tls=false").is_ok());
    }
}
