//! QUIC sockets for HTTP/3 between sidecars: the server endpoint on the mesh port's number (UDP),
//! a client endpoint per outbound connection (its socket connected to the peer, see
//! [`connected`]), the transport settings both use, and the bodies that carry HTTP/3 streams
//! (see [`body`]).
//!
//! The limits mirror the TCP mesh listener's (security rule 6): streams per connection, a bound
//! on what a peer can make us buffer (flow-control windows per stream and per connection), an
//! idle timeout and keep-alives, and a cap on open connections applied by the accept loop.
//! 0-RTT is never offered: the TLS configurations come from `certs` with early data off, so a
//! replayed first flight can never reach the app.

pub(crate) mod body;
pub(crate) mod connected;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::CertificateDer;

use connected::{Connected, Refusal};

/// The ALPN of HTTP/3.
pub(crate) const ALPN_H3: &[u8] = b"h3";

/// Concurrent request streams a peer may open on one connection: as on the TCP mesh listener.
const MAX_STREAMS: u32 = 256;

/// What one stream may have in flight unread: enough for a fast LAN, small enough that many
/// streams cannot add up to much.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// What one connection may have in flight unread, over all its streams.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// A connection with no packet for this long is gone (keep-alives come three times as often): a
/// peer that vanished holds requests at most this long (on TCP, its kernel's reset ends them).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(3);

/// The round trip assumed before the first is measured (quinn's default is 333 ms).
const INITIAL_RTT: Duration = Duration::from_millis(100);

/// The transport settings of every mesh QUIC connection, both ends.
pub(crate) fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        // HTTP/3 needs three each way (control, QPACK encoder and decoder); no push, no more.
        .max_concurrent_uni_streams(VarInt::from_u32(8))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
            u32::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(u32::MAX),
        ))))
        .keep_alive_interval(Some(KEEP_ALIVE))
        // Peers are sidecars on a LAN or in a cluster, not across the internet: the first
        // round trip is assumed short, so a lost (or refused) first flight is resent after a
        // third of a second rather than a second.
        .initial_rtt(INITIAL_RTT)
        // No unreliable datagrams: nothing here sends them, so none are buffered.
        .datagram_receive_buffer_size(None);
    Arc::new(t)
}

/// The QUIC server configuration over a mesh TLS configuration: HTTP/3, no early data, peers
/// that change address keep their connection. Also used to replace an endpoint's configuration
/// when the trust bundle changes.
pub(crate) fn server_config(mut tls: rustls::ServerConfig) -> anyhow::Result<quinn::ServerConfig> {
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // Early data stays off (`certs` never enables it; checked here as well): 0-RTT requests
    // could be replayed.
    anyhow::ensure!(tls.max_early_data_size == 0, "0-RTT must stay off");
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport());
    // A client may change its address (a roaming peer, a NAT rebinding): the connection stays.
    cfg.migration(true);
    Ok(cfg)
}

/// The server endpoint on `socket`, for TLS server configuration `tls` (ALPN set to h3 here).
/// Connections are accepted by the caller, who also applies the connection cap.
pub(crate) fn server(
    socket: std::net::UdpSocket,
    tls: rustls::ServerConfig,
) -> anyhow::Result<quinn::Endpoint> {
    let cfg = server_config(tls)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("QUIC needs the tokio runtime"))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg),
        socket,
        runtime,
    )?)
}

/// A client endpoint for connections to `peer` alone, and where the peer's refusal shows. Its
/// UDP socket is *connected* to the peer, so that the kernel reports the peer's "port
/// unreachable" (its sidecar died) and the connection can end at once, as a TCP reset ends an
/// HTTP/2 connection (see [`connected`]); quinn's shared unconnected socket would hear nothing,
/// and requests would wait for QUIC's idle timeout. The price: the socket's own address is
/// fixed, so a sidecar whose address changes reconnects rather than migrates (peers that
/// migrate are accepted: see [`server`]).
pub(crate) fn client_to(peer: SocketAddr) -> std::io::Result<(quinn::Endpoint, Arc<Refusal>)> {
    let (socket, refusal) = Connected::to(peer)?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((endpoint, refusal))
}

/// The client configuration of connections to one peer: TLS configuration `tls` (which checks
/// the peer's identity) with ALPN h3, and the mesh transport settings.
pub(crate) fn client_config(mut tls: rustls::ClientConfig) -> anyhow::Result<quinn::ClientConfig> {
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// The certificate chain a QUIC peer presented, leaf first.
pub(crate) fn peer_certificates(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}
