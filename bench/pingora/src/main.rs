//! The one-hop cells' Rust peer: a minimal Pingora reverse proxy that sends every request to one
//! upstream over Pingora's pooled HTTP/1.1 connections, with nothing else configured.
//!
//!     bench-pingora LISTEN UPSTREAM CONF
//!
//! CONF is a Pingora server configuration file (YAML); the bench script's sets one worker
//! thread and a short shutdown, as the other proxies there get.

use async_trait::async_trait;
use pingora_core::Result;
use pingora_core::server::Server;
use pingora_core::server::configuration::Opt;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session, http_proxy_service};

/// Proxies to one upstream, plain HTTP.
struct Forward {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, conf] = args.as_slice() else {
        eprintln!("usage: bench-pingora LISTEN UPSTREAM CONF");
        std::process::exit(2);
    };
    let opt = Opt {
        conf: Some(conf.clone()),
        ..Opt::default()
    };
    let mut server = Server::new(Some(opt)).expect("the Pingora configuration");
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Forward {
            upstream: upstream.clone(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
