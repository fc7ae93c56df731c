//! The accept loop, per-connection handling, routing and CORS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::counters::InFlight;
use crate::http::{self, Outcome, ReadError, Request, Response};
use crate::state::Shared;
use crate::{admin, api, authorize, discovery, endless, revocation, token_endpoint};

/// Accepts connections until `shutdown` fires (or its sender is dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Counted here, before the next accept, so a connection
                    // accepted later sees every earlier one counted.
                    let open = OpenConnection::enter(&shared);
                    tokio::spawn(connection(stream, Arc::clone(&shared), open));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// Counts one accepted connection as open until it is dropped.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.lock().open_connections += 1;
        OpenConnection(Arc::clone(shared))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.open_connections = st.open_connections.saturating_sub(1);
    }
}

/// Serves one request on one connection, then closes it. `open` counts it
/// until just before the client can see its end, so a connection the client
/// opens next never sees this one still counted.
async fn connection(mut stream: TcpStream, shared: Arc<Shared>, open: OpenConnection) {
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let req = match http::read_request(&mut stream).await {
        Ok(req) => req,
        Err(ReadError::Closed) => return,
        Err(ReadError::Reject(response)) => {
            log(&shared, "-", "-", Some(response.status), started);
            drop(open);
            http::write_rejection(&mut stream, &response).await;
            return;
        }
    };
    let is_token = req.path == "/connect/token" && req.method == "POST";
    let in_flight = is_token.then(|| InFlight::enter(&shared));
    let status = match route(&shared, &req).await {
        Outcome::Respond(response) => {
            http::write_response(&mut stream, &response).await;
            Some(response.status)
        }
        Outcome::Close => None,
        Outcome::Endless(spec) => {
            endless::write(&mut stream, &shared.streams, spec).await;
            Some(spec.status)
        }
    };
    // Out of flight before the client can see the end of the answer, so a
    // request it sends next is never counted as overlapping this one.
    drop(in_flight);
    drop(open);
    match status {
        Some(_) => http::finish(&mut stream).await,
        None => drop(stream),
    }
    log(&shared, &req.method, &req.path, status, started);
}

/// Dispatches a request by method and path.
async fn route(shared: &Shared, req: &Request) -> Outcome {
    if req.method == "OPTIONS" {
        return Outcome::Respond(preflight());
    }
    let response = match req.path.as_str() {
        "/connect/token" => return token_endpoint::handle(shared, req).await,
        "/connect/revocation" => return revocation::handle(shared, req).await,
        "/connect/authorize" => authorize::handle(shared, req),
        "/graphql" => api::graphql(shared, req),
        "/.well-known/openid-configuration" => discovery::handle(shared, req),
        p if p.starts_with("/api/") => api::rest(shared, req),
        p if p.starts_with("/admin/") => admin::handle(shared, req).await,
        _ => Response::error(404, "not_found", "no such endpoint"),
    };
    Outcome::Respond(response)
}

/// The CORS preflight answer, for any path.
fn preflight() -> Response {
    Response::empty(204)
        .header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
        .header(
            "Access-Control-Allow-Headers",
            "authorization, content-type",
        )
        .header("Access-Control-Max-Age", "600")
}

/// One stderr line per request when verbose: method, path (never the query
/// or any header or body), status, duration.
fn log(shared: &Shared, method: &str, path: &str, status: Option<u16>, started: Instant) {
    if !shared.verbose {
        return;
    }
    let outcome = status.map_or_else(|| "closed without response".to_owned(), |s| s.to_string());
    eprintln!(
        "freshtoken-emulator: {method} {path} -> {outcome} ({} ms)",
        started.elapsed().as_millis()
    );
}
