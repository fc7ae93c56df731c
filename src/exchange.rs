//! One token request, with retries: send, classify, back off, repeat.

use crate::clock::Clock;
use crate::config::{Config, MAX_RESPONSE_BYTES};
use crate::deadline::{no_timer_text, within, Abandoned};
use crate::error::Error;
use crate::grant::{build_request, client_secret_spellings, Grant};
use crate::http::{HttpClient, HttpError};
use crate::random::jitter;
use crate::response::{classify, Answer, OAuthErrorBody, TokenResponse};
use crate::secret::{scrub, Secret};
use crate::spawn::Spawn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How long past its own timeout a host's HTTP request may run before the
/// core abandons it (a host transport that ignores the timeout). The
/// deadline counts from the start of the request's building, which in wasm
/// awaits the host's signature (WebCrypto, a few milliseconds).
pub(crate) const HTTP_GRACE_MS: u64 = 1_000;

/// What the token machinery needs: configuration, HTTP and time.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) http: Arc<dyn HttpClient>,
    pub(crate) clock: Arc<dyn Clock>,
    /// This client's name as a lease owner, in the process that made it
    /// (see [`Context::owner`]).
    pub(crate) owner: String,
    /// The process that made the client (nothing forks in wasm).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) made_by: crate::started_by::StartedBy,
    /// Runs refreshes on their own, when the host provides a way.
    pub(crate) spawn: Option<Arc<dyn Spawn>>,
    /// Saves the store deadline gave up on, still running in the host.
    pub(crate) abandoned_saves: crate::abandoned_saves::AbandonedSaves,
}

impl Context {
    /// This client's name as a fleet lease owner, unique per client and
    /// process. A forked child's is its own: with the parent's, the store
    /// would take the child's `acquire` for the parent's renewal, and both
    /// would send the refresh token the lease guards (a revoked grant).
    pub(crate) fn owner(&self) -> std::borrow::Cow<'_, str> {
        #[cfg(not(target_arch = "wasm32"))]
        if self.made_by.elsewhere() {
            return format!("{}-{}", self.owner, std::process::id()).into();
        }
        self.owner.as_str().into()
    }
}

/// A successful answer and when its request was sent.
pub(crate) struct Issued {
    pub(crate) response: TokenResponse,
    pub(crate) sent_at_ms: u64,
    /// Requests sent, retries included.
    pub(crate) attempts: u32,
}

/// Why a token request failed.
pub(crate) enum Failure {
    /// An RFC 6749 error answer (final).
    OAuth { status: u16, body: OAuthErrorBody },
    /// Anything else, already typed.
    Other(Error),
}

/// A failed token request, and whether the server may have acted on it
/// (then a single-use refresh token it carried may be consumed).
pub(crate) struct CallFailure {
    pub(crate) failure: Failure,
    pub(crate) maybe_processed: bool,
    /// A rotated refresh token from an otherwise unusable success answer.
    pub(crate) salvaged: Option<Secret>,
    /// Requests sent, retries included.
    pub(crate) attempts: u32,
}

impl CallFailure {
    /// The generic error for this failure (see [`oauth_error`]).
    pub(crate) fn into_error(self) -> Error {
        match self.failure {
            Failure::OAuth { status, body } => oauth_error(status, body),
            Failure::Other(error) => error,
        }
    }

    fn new(error: Error, maybe_processed: bool) -> Self {
        CallFailure {
            failure: Failure::Other(error),
            maybe_processed,
            salvaged: None,
            attempts: 0,
        }
    }
}

/// The generic meaning of an OAuth error answer (grant-specific mappings,
/// like `invalid_grant` on refresh, are the caller's).
fn oauth_error(status: u16, body: OAuthErrorBody) -> Error {
    if body.error == "invalid_client" {
        return Error::InvalidClient {
            status,
            description: body.description,
        };
    }
    Error::OAuth {
        status,
        error: body.error,
        description: body.description,
        uri: body.uri,
    }
}

/// Sends `grant` until it succeeds, fails for good, or the retry policy is
/// spent. Only 429, 5xx and requests that never left are retried; an
/// authorization code after a 5xx is not (it may have been redeemed).
pub(crate) async fn call(ctx: &Context, grant: &Grant<'_>) -> Result<Issued, CallFailure> {
    send(ctx, grant).await?.ok_or_else(|| {
        let error = Error::invalid_response(None, "no token in the answer");
        CallFailure::new(error, true)
    })
}

/// Revokes `token` (RFC 7009) with the retry and error rules of token
/// requests; any 2xx answer means done (the body is ignored, §2.2).
/// `known`: the session's other tokens, scrubbed from the server's text.
pub(crate) async fn revoke(
    ctx: &Context,
    token: &str,
    hint: &str,
    known: &[Secret],
) -> Result<(), CallFailure> {
    send(ctx, &Grant::Revoke { token, hint, known })
        .await
        .map(drop)
}

/// [`call`] for every grant: `None` is a revocation's accepted answer.
async fn send(ctx: &Context, grant: &Grant<'_>) -> Result<Option<Issued>, CallFailure> {
    let mut attempts = 0u32;
    let mut result = send_with_retries(ctx, grant, &mut attempts).await;
    match &mut result {
        Ok(Some(issued)) => issued.attempts = attempts,
        Ok(None) => {}
        Err(failure) => failure.attempts = attempts,
    }
    result
}

/// The body of [`send`], counting the requests it sends in `attempts`.
async fn send_with_retries(
    ctx: &Context,
    grant: &Grant<'_>,
    attempts: &mut u32,
) -> Result<Option<Issued>, CallFailure> {
    let revocation = matches!(grant, Grant::Revoke { .. });
    let code = matches!(grant, Grant::AuthorizationCode { .. });
    let spends_nothing = revocation || matches!(grant, Grant::ClientCredentials { .. });
    let policy = ctx.config.retry;
    // The budget counts on a wall clock set back too (see `elapsed`).
    let started = crate::elapsed::Started::now(ctx.clock.as_ref());
    let mut maybe_processed = false;
    // Requests tried: sent, or abandoned before they could be (a signature
    // not made in time); the retry policy counts these.
    let mut tries = 0u32;
    loop {
        tries += 1;
        // One deadline for building the request and sending it: in wasm the
        // client assertion is signed by the host (WebCrypto), which may
        // stall too; and the fleet lease covers the budget and one
        // request's deadline, so a send must not start later than that.
        let sending = AtomicBool::new(false);
        let deadline = ctx.config.timeout_ms.saturating_add(HTTP_GRACE_MS);
        let begun = crate::elapsed::Started::now(ctx.clock.as_ref());
        let attempt = async {
            let (request, assertion) =
                build_request(&ctx.config, grant, ctx.clock.now_ms()).await?;
            // Built past the deadline (a signature the host made late, the
            // deadline's timer set again after a stalled event loop): not
            // sent, as when the deadline ends the building.
            if begun.elapsed_ms(ctx.clock.as_ref()) >= deadline {
                let late = HttpError::NotSent(unbuilt(Abandoned::Expired));
                return Ok((Err(late), assertion, 0));
            }
            let sent_at_ms = ctx.clock.now_ms();
            sending.store(true, Ordering::Relaxed);
            *attempts += 1;
            log::debug!("freshtoken: {} request, attempt {attempts}", grant.name());
            Ok::<_, Error>((ctx.http.send(request).await, assertion, sent_at_ms))
        };
        let attempted = within(ctx.clock.as_ref(), deadline, attempt).await;
        let (sent, assertion, sent_at_ms) = match attempted {
            Ok(Ok(attempted)) => attempted,
            Ok(Err(error)) => return Err(CallFailure::new(error, maybe_processed)),
            // Not sent: retried within the budget, as a connection refused.
            Err(abandoned) if !sending.load(Ordering::Relaxed) => {
                (Err(HttpError::NotSent(unbuilt(abandoned))), None, 0)
            }
            Err(abandoned) => (Err(abandoned_request(abandoned)), None, 0),
        };
        let sent = sent.map_err(|e| match e {
            // The host's message may quote the request (the refresh token,
            // the client secret): scrub it like a server's error body.
            HttpError::NotSent(m) => HttpError::NotSent(scrubbed(ctx, grant, &assertion, &m)),
            HttpError::Interrupted(m) => {
                HttpError::Interrupted(scrubbed(ctx, grant, &assertion, &m))
            }
            other => other,
        });
        let (final_error, retry_after_ms) = match sent {
            Err(HttpError::NotSent(message)) => (
                Error::Network {
                    message,
                    maybe_sent: false,
                },
                None,
            ),
            // A request that spends nothing (a client-credentials token, a
            // revocation, which RFC 7009 makes idempotent) is sent again
            // after one that may have left: a dropped keep-alive socket
            // then costs a retry, not the call.
            Err(HttpError::Timeout) if spends_nothing => {
                maybe_processed = true;
                (Error::Timeout, None)
            }
            Err(HttpError::Timeout) => return Err(CallFailure::new(Error::Timeout, true)),
            Err(HttpError::Interrupted(message)) => {
                let error = Error::Network {
                    message,
                    maybe_sent: true,
                };
                if !spends_nothing {
                    return Err(CallFailure::new(error, true));
                }
                maybe_processed = true;
                (error, None)
            }
            Err(HttpError::TooLarge) => {
                let message = format!("body exceeds {MAX_RESPONSE_BYTES} bytes");
                return Err(CallFailure::new(
                    Error::invalid_response(None, message),
                    true,
                ));
            }
            Ok(response) if revocation && (200..300).contains(&response.status) => return Ok(None),
            Ok(response) => match classify(&response, ctx.clock.now_ms()) {
                Answer::Success(response) => {
                    return Ok(Some(Issued {
                        response,
                        sent_at_ms,
                        attempts: 0,
                    }))
                }
                Answer::OAuthError { status, mut body } => {
                    let scrub = |text: &str| scrubbed(ctx, grant, &assertion, text);
                    body.error = scrub(&body.error);
                    body.description = body.description.map(|d| scrub(&d));
                    body.uri = body.uri.map(|u| scrub(&u));
                    return Err(CallFailure {
                        failure: Failure::OAuth { status, body },
                        maybe_processed,
                        salvaged: None,
                        attempts: 0,
                    });
                }
                Answer::Unusable {
                    status,
                    message,
                    refresh_token,
                } => {
                    let error = Error::invalid_response(Some(status), message);
                    return Err(CallFailure {
                        salvaged: Some(refresh_token),
                        ..CallFailure::new(error, true)
                    });
                }
                Answer::Invalid { status, message } => {
                    // A success the core cannot use, an interim (1xx) answer
                    // (the server got the request and was working on it), or an
                    // answer that is not HTTP at all: the server may have acted
                    // on the request.
                    let processed = maybe_processed
                        || (100..300).contains(&status)
                        || !crate::response::is_http_status(status.into());
                    let error = Error::invalid_response(Some(status), message);
                    return Err(CallFailure::new(error, processed));
                }
                Answer::Retryable {
                    status,
                    retry_after_ms,
                } => {
                    maybe_processed |= status >= 500;
                    let error = Error::Transient {
                        status,
                        attempts: *attempts,
                        retry_after_ms,
                    };
                    // A code is single use, and a 5xx may come from a
                    // gateway while the server went on and redeemed it:
                    // sent again, it would revoke what the first request
                    // issued. (A refresh token is retried: its reuse reads
                    // `lost_rotation`, and a later call recovers nothing
                    // better; a code's caller can start a new login.)
                    if code && maybe_processed {
                        return Err(CallFailure::new(error, true));
                    }
                    (error, retry_after_ms)
                }
            },
        };
        let delay = policy.delay_ms(tries, jitter(), retry_after_ms);
        let elapsed = started.elapsed_ms(ctx.clock.as_ref());
        if !policy.allows(tries, elapsed, delay) {
            return Err(CallFailure::new(final_error, maybe_processed));
        }
        log::debug!("freshtoken: retrying in {delay} ms after: {final_error}");
        ctx.clock.sleep(delay).await;
        // A wait that ran long (a process or VM paused, a throttled timer)
        // may end past the budget, and so past the fleet lease the budget
        // fits in: another process may hold it by now and send this very
        // refresh token. The budget is looked at again before a retry.
        if started.elapsed_ms(ctx.clock.as_ref()) > policy.budget_ms {
            return Err(CallFailure::new(final_error, maybe_processed));
        }
    }
}

/// Why a request abandoned before it was sent was not: its client
/// assertion was not signed in time, or no timer could be set to bound the
/// signing.
fn unbuilt(abandoned: Abandoned) -> String {
    let why = match abandoned {
        Abandoned::Expired => "the client assertion was not signed in time".to_owned(),
        Abandoned::NoTimer(why) => no_timer_text(&why),
    };
    format!("the request was not sent: {why}")
}

/// The transport error of a request whose deadline abandoned it: a timeout,
/// or, when no timer could be set, an interruption saying so (the request
/// was started, so it may have been sent).
pub(crate) fn abandoned_request(abandoned: Abandoned) -> HttpError {
    match abandoned {
        Abandoned::Expired => HttpError::Timeout,
        Abandoned::NoTimer(why) => HttpError::Interrupted(format!(
            "the request was abandoned: {}",
            no_timer_text(&why)
        )),
    }
}

/// `text` with every secret of the request removed: the grant's, the
/// client's and the request's client assertion.
fn scrubbed(ctx: &Context, grant: &Grant<'_>, assertion: &Option<Secret>, text: &str) -> String {
    let client = client_secret_spellings(&ctx.config);
    let mut secrets = grant.secrets();
    for secret in &client {
        secrets.push(secret.expose());
    }
    if let Some(assertion) = assertion {
        secrets.push(assertion.expose());
    }
    scrub(text, &secrets)
}
