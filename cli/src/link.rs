//! `freshtoken link`: the authorization-code flow for scripts. Starting
//! prints the authorization URL and keeps the PKCE verifier, state and
//! nonce in a state file (0600); finishing reads the redirect URL (or the
//! bare code) from standard input or `FRESHTOKEN_CODE`, checks the state,
//! exchanges the code and stores the session. Without a code source but
//! with `--store` and `--key`, it does both in one run, for people.

use crate::args::LinkArgs;
use crate::failure::Failure;
use crate::file_store::{read_capped, to_hex, write_private, FileStore};
use crate::output::{now_ms, when, Output};
use crate::unsaved::{holds_unsaved, save_held};
use freshtoken::{AuthorizationParams, AuthorizationRequest, TokenClient};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The environment variable `--code-env` reads.
pub const CODE_ENV: &str = "FRESHTOKEN_CODE";

/// The state file's schema tag.
const STATE_SCHEMA: &str = "freshtoken.link/2";

/// The tag of state files written before the provider was recorded in
/// them (no token endpoint, authorization endpoint or issuer).
const STATE_SCHEMA_WITHOUT_PROVIDER: &str = "freshtoken.link/1";

/// Largest state file or code input read.
const MAX_INPUT_BYTES: usize = 16 * 1024;

/// Authorization parameters the core sets itself.
const RESERVED: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
];

/// What is kept between the two steps. The verifier is secret: the file
/// is written 0600 and removed once the code is exchanged.
///
/// The provider the link started with (its token and authorization
/// endpoints, and its issuer when one was configured) is kept too: the
/// finishing run builds its client from its own credentials, options and
/// environment, and must send the code, the verifier and the client's
/// credentials only to the token endpoint of the provider that issued the
/// code (a finishing shell with another FRESHTOKEN_TOKEN_ENDPOINT, --issuer
/// or credentials file would otherwise hand them to another server: a
/// mix-up).
#[derive(Serialize, Deserialize)]
struct LinkState {
    schema: String,
    client_id: String,
    token_endpoint: String,
    authorization_endpoint: String,
    /// The issuer, when the client was made from a discovery document.
    issuer: Option<String>,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_verifier: String,
    created_at_ms: u64,
}

impl Drop for LinkState {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.code_verifier);
    }
}

/// What came back from the authorization server.
struct CodeInput {
    code: Option<Zeroizing<String>>,
    state: Option<String>,
    /// The issuer (RFC 9207), when the redirect names one.
    iss: Option<String>,
    error: Option<(String, Option<String>)>,
}

/// The redirect parameters that must not be repeated (RFC 6749 §3.1: a
/// redirect that repeats one is not a server's answer, and no copy of it
/// can be trusted to be the one the server sent).
const SINGLE_PARAMETERS: [&str; 5] = ["code", "state", "error", "error_description", "iss"];

/// A redirect that repeats the parameter named.
#[derive(Debug, PartialEq, Eq)]
struct Repeated(&'static str);

impl Repeated {
    /// The failure: the redirect is not this link's answer, and nothing is
    /// sent; the state file stays for the genuine one (as for a state
    /// mismatch).
    fn failure(self, out: Output) -> Failure {
        out.note(&format!(
            "the redirect repeats `{}` (RFC 6749 3.1): not an answer of the authorization server",
            self.0
        ));
        Failure::StateMismatch
    }
}

/// Reads a redirect URL (`…?code=…&state=…`, or its query alone) or a bare
/// code; a redirect that repeats one of [`SINGLE_PARAMETERS`] is refused.
fn parse_code_input(text: &str) -> Result<CodeInput, Repeated> {
    let text = text.trim();
    let query = match text.split_once('?') {
        Some((_, query)) => Some(query),
        None if text.starts_with("code=")
            || text.starts_with("error=")
            || text.contains("&code=") =>
        {
            Some(text)
        }
        None => None,
    };
    let Some(query) = query else {
        return Ok(CodeInput {
            code: (!text.is_empty()).then(|| Zeroizing::new(text.to_owned())),
            state: None,
            iss: None,
            error: None,
        });
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut input = CodeInput {
        code: None,
        state: None,
        iss: None,
        error: None,
    };
    let mut seen = [false; SINGLE_PARAMETERS.len()];
    let mut description = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(i) = SINGLE_PARAMETERS.iter().position(|p| *p == name) else {
            continue;
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(Repeated(SINGLE_PARAMETERS[i]));
        }
        match SINGLE_PARAMETERS[i] {
            "code" if !value.is_empty() => input.code = Some(Zeroizing::new(value.into_owned())),
            "state" => input.state = Some(value.into_owned()),
            "iss" => input.iss = Some(value.into_owned()),
            "error" => input.error = Some((value.into_owned(), None)),
            "error_description" => description = Some(value.into_owned()),
            _ => {}
        }
    }
    if let Some((_, d)) = &mut input.error {
        *d = description;
    }
    Ok(input)
}

/// The code input from standard input (its first line) or the environment.
fn read_code_input(from_env: bool, out: Output) -> Result<CodeInput, Failure> {
    let text = if from_env {
        Zeroizing::new(std::env::var(CODE_ENV).map_err(|_| {
            Failure::config(
                CODE_ENV,
                "is not set (or not UTF-8); --code-env reads the code from it",
            )
        })?)
    } else {
        read_line_from_stdin()?
    };
    parse_code_input(&text).map_err(|r| r.failure(out))
}

/// One line of standard input (at most 16 KiB).
fn read_line_from_stdin() -> Result<Zeroizing<String>, Failure> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(MAX_INPUT_BYTES as u64)
        .read_line(&mut line)
        .map_err(|e| Failure::config("stdin", format!("cannot read the code ({})", e.kind())))?;
    Ok(line)
}

/// The authorization request these arguments ask for.
fn authorization_params(
    args: &LinkArgs,
    redirect_uri: &str,
) -> Result<AuthorizationParams, Failure> {
    let mut params = AuthorizationParams {
        redirect_uri: redirect_uri.to_owned(),
        scopes: crate::client_token::scopes(&args.scopes),
        ..AuthorizationParams::default()
    };
    for param in &args.params {
        let Some((name, value)) = param.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            return Err(Failure::Usage(format!(
                "--param takes NAME=VALUE, not {param:?}"
            )));
        };
        if RESERVED.contains(&name) {
            return Err(Failure::Usage(format!(
                "--param cannot set {name}: freshtoken sets it"
            )));
        }
        if name == "prompt" {
            params.prompt = Some(value.to_owned());
        } else {
            params.extra.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(params)
}

/// The issuer `client` was discovered from, if any.
fn issuer(client: &TokenClient) -> Option<&str> {
    client.provider_metadata().map(|m| m.issuer.as_str())
}

/// Whether `client`'s provider announces `iss` in its authorization
/// responses (RFC 9207).
fn announces_iss(client: &TokenClient) -> bool {
    client
        .provider_metadata()
        .is_some_and(|m| m.authorization_response_iss_parameter_supported)
}

/// The state to keep for `request`.
fn link_state(
    client: &TokenClient,
    redirect_uri: &str,
    request: &AuthorizationRequest,
) -> Result<LinkState, Failure> {
    let config = client.config();
    Ok(LinkState {
        schema: STATE_SCHEMA.to_owned(),
        client_id: config.client_id().to_owned(),
        token_endpoint: config.token_endpoint().to_owned(),
        authorization_endpoint: config.authorization_endpoint()?,
        issuer: issuer(client).map(str::to_owned),
        redirect_uri: redirect_uri.to_owned(),
        state: request.state.clone(),
        nonce: request.nonce.clone(),
        code_verifier: request.code_verifier.clone(),
        created_at_ms: now_ms(),
    })
}

/// Refuses to finish the link kept in `saved` with another client or
/// provider than it started with: the code, the PKCE verifier and the
/// client's credentials go to this run's token endpoint, so it must be the
/// one of the provider that issued the code. Nothing is sent before this
/// passes. The endpoints are named, not shown (a URL may carry a secret).
fn check_same_provider(
    client: &TokenClient,
    args: &LinkArgs,
    saved: &LinkState,
) -> Result<(), Failure> {
    if args
        .redirect_uri
        .as_deref()
        .is_some_and(|r| r != saved.redirect_uri)
    {
        return Err(Failure::config(
            "redirect_uri",
            "differs from the one the link started with",
        ));
    }
    let config = client.config();
    if config.client_id() != saved.client_id {
        return Err(Failure::config(
            "credentials",
            "the link was started with another client id",
        ));
    }
    let authorization_endpoint = config.authorization_endpoint().ok();
    let differs = [
        (
            "token_endpoint",
            config.token_endpoint() != saved.token_endpoint,
        ),
        (
            "authorization_endpoint",
            authorization_endpoint.as_deref() != Some(saved.authorization_endpoint.as_str()),
        ),
        ("issuer", issuer(client) != saved.issuer.as_deref()),
    ];
    match differs.iter().find(|(_, differs)| *differs) {
        Some((field, _)) => Err(Failure::config(
            field,
            "differs from the one the link started with (kept in its state file): finish with the credentials, --issuer and endpoint options (or FRESHTOKEN_* variables) the link started with; the code was not sent",
        )),
        None => Ok(()),
    }
}

fn write_state(path: &Path, state: &LinkState) -> Result<(), Failure> {
    let text = Zeroizing::new(serde_json::to_string(state).unwrap_or_default());
    write_private(path, text.as_bytes()).map_err(|e| {
        Failure::config(
            "state_file",
            format!("cannot write {} ({})", path.display(), e.kind()),
        )
    })
}

/// Reads the state kept in `path`; messages name `shown` (the state file
/// as the user gave it).
fn read_state(path: &Path, shown: &Path) -> Result<LinkState, Failure> {
    let unreadable =
        |what: &str| Failure::config("state_file", format!("{} {what}", shown.display()));
    let text = read_capped(path, MAX_INPUT_BYTES)
        .map_err(|e| unreadable(&format!("cannot be read ({})", e.kind())))?
        .map(Zeroizing::new)
        .ok_or_else(|| ClaimedState::missing(shown))?;
    #[derive(Deserialize)]
    struct Schema {
        schema: String,
    }
    let schema = serde_json::from_str::<Schema>(&text)
        .map_err(|_| unreadable("is not a freshtoken link state file"))?
        .schema;
    // A state file of an earlier version does not say which provider the
    // link started with, so this run cannot tell where its code may go:
    // it is refused rather than trusted to this run's endpoints. A state
    // file lives minutes (the code it waits for, less), so starting again
    // costs little.
    if schema == STATE_SCHEMA_WITHOUT_PROVIDER {
        return Err(unreadable(
            "was written by an earlier freshtoken, which did not record the provider the link started with: start the link again with `freshtoken link … --state-file FILE`; nothing was sent",
        ));
    }
    if schema != STATE_SCHEMA {
        return Err(unreadable("is not a freshtoken link state file"));
    }
    serde_json::from_str(&text).map_err(|_| unreadable("is not a freshtoken link state file"))
}

/// The suffix of a state file a finishing run has claimed.
const CLAIMED_SUFFIX: &str = ".claimed";

/// A state file this run has claimed: renamed, before the code can be
/// sent, to a name of its own (`<file>.<pid>.<12 hex>.claimed`, beside it),
/// and the state read again from there. A rename succeeds once: of any
/// number of runs finishing one link (whatever their `--key`), exactly one
/// gets the state and can ever send its code; the others find no file,
/// send nothing and fail with `config`.
/// (Holding the key's lock would not do: the runs may name different keys,
/// and one that waited for the lock would still send the spent code, which
/// makes the server revoke the session the first run stored.)
///
/// Afterwards [`ClaimedState::settle`] removes the claimed file once the
/// code may have left, and puts it back when nothing was sent (a state
/// mismatch, an error redirect, a bad argument, the key's lock not taken,
/// a signal before the exchange), so the real answer can still finish.
///
/// If the process dies while it holds the claim (SIGKILL, a power cut;
/// SIGINT, SIGTERM and SIGHUP are handled as above, but for the instant
/// between the claim and the checks), the claimed file stays:
/// before the code was sent, the code is unspent, but the state file is no
/// longer under its name and `link` refuses it, naming the claimed file
/// (start a new link); after the code was sent,
/// it is spent either way and must never be sent again, which the missing
/// state file guarantees. Whether the new session was saved then depends
/// on whether the answer arrived before the crash (the core saves it
/// before the exchange returns): `inspect` tells.
struct ClaimedState {
    /// The state file as given.
    original: PathBuf,
    /// Where it lies while claimed.
    claimed: PathBuf,
    /// [`crate::interrupt::may_have_reached`] when claimed (nothing else
    /// is sent from then on but the code).
    claimed_at: u64,
}

impl ClaimedState {
    /// Claims `path`; `config` if another run has (or no link was started).
    fn take(path: &Path) -> Result<Self, Failure> {
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random)
            .map_err(|e| Failure::Other(format!("cannot claim the state file ({e})")))?;
        let mut claimed = path.as_os_str().to_owned();
        claimed.push(format!(
            ".{}.{}{CLAIMED_SUFFIX}",
            std::process::id(),
            to_hex(&random)
        ));
        let claimed = PathBuf::from(claimed);
        match std::fs::rename(path, &claimed) {
            Ok(()) => Ok(ClaimedState {
                original: path.to_owned(),
                claimed,
                claimed_at: crate::interrupt::may_have_reached(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Self::missing(path)),
            Err(e) => Err(Failure::config(
                "state_file",
                format!("{} cannot be claimed ({})", path.display(), e.kind()),
            )),
        }
    }

    /// The failure for a state file that is not there: claimed by another
    /// run (its claimed file is there), used up, or never written.
    fn missing(path: &Path) -> Failure {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let claimed = name.and_then(|name| {
            std::fs::read_dir(dir).ok()?.find_map(|entry| {
                let other = entry.ok()?.file_name().to_string_lossy().into_owned();
                (other.starts_with(&format!("{name}.")) && other.ends_with(CLAIMED_SUFFIX))
                    .then_some(other)
            })
        });
        let message = match claimed {
            Some(other) => format!(
                "{} has been claimed by another `link` run finishing this link (it lies at {other} meanwhile): an authorization code is sent once, so this run sent nothing",
                path.display()
            ),
            None => format!(
                "{} does not exist: a link that has finished (or failed after sending its code) is used up, so start a new one with `freshtoken link … --state-file FILE`; nothing was sent",
                path.display()
            ),
        };
        Failure::config("state_file", message)
    }

    /// Where the claimed state lies.
    fn path(&self) -> &Path {
        &self.claimed
    }

    /// Whether the code may have reached the server.
    fn code_may_have_left(&self) -> bool {
        crate::interrupt::may_have_reached() != self.claimed_at
    }

    /// Removes the claimed file if the code may have left, else puts it
    /// back under its name (unless a new link wrote a state file there
    /// meanwhile: then that one is the link to finish).
    fn settle(self) {
        if self.code_may_have_left() {
            let _ = std::fs::remove_file(&self.claimed);
            return;
        }
        match std::fs::hard_link(&self.claimed, &self.original) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.claimed);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&self.claimed);
            }
            // No hard links here: a rename, as when claiming.
            Err(_) => {
                let _ = std::fs::rename(&self.claimed, &self.original);
            }
        }
    }
}

/// The `--json` result of starting.
#[derive(Serialize)]
struct StartJson<'a> {
    authorization_url: &'a str,
    state: &'a str,
    redirect_uri: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_file: Option<String>,
}

/// The `--json` result of finishing.
#[derive(Serialize)]
struct LinkedJson<'a> {
    key: &'a str,
    linked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_expires_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_at_ms: Option<u64>,
}

/// What the mode needs, or a usage error naming what is missing.
fn need<'a, T: ?Sized>(value: Option<&'a T>, flag: &str, mode: &str) -> Result<&'a T, Failure> {
    value.ok_or_else(|| Failure::Usage(format!("{mode} needs {flag}")))
}

/// Runs `link` in the mode its arguments select.
pub async fn run(args: LinkArgs, out: Output) -> Result<(), Failure> {
    let finishing = args.code_stdin || args.code_env;
    // One step when a key is named without a code source (the store may
    // come from FRESHTOKEN_STORE, so it does not decide).
    let one_step_wanted = args.key.is_some();
    let reads_code_from_stdin = args.code_stdin || (!finishing && one_step_wanted);
    if reads_code_from_stdin && args.client.credentials.as_os_str() == "-" {
        return Err(Failure::Usage(
            "the code comes from standard input here: give --credentials a file".into(),
        ));
    }
    if finishing {
        let state_file = need(
            args.state_file.as_deref(),
            "--state-file",
            "finishing a link",
        )?;
        let store = need(args.store.as_deref(), "--store", "finishing a link")?;
        let key = need(args.key.as_deref(), "--key", "finishing a link")?;
        // Read first for its errors; what counts is what this run claims
        // below, once the code is read and the client built (so that a
        // Ctrl-C at the prompt leaves the state file where it was).
        let early = read_state(state_file, state_file)?;
        let input = read_code_input(args.code_env, out)?;
        let client = crate::client::build(&args.client).await?;
        // Another provider is refused before the state file is claimed (and
        // again, by `finish`, for the state read from the claimed file).
        check_same_provider(&client, &args, &early)?;
        drop(early);
        return finish_claimed(&client, &args, state_file, input, store, key, out).await;
    }
    if args.state.is_some() {
        return Err(Failure::Usage(
            "--state goes with --code-stdin or --code-env".into(),
        ));
    }
    let redirect_uri = need(
        args.redirect_uri.as_deref(),
        "--redirect-uri",
        "starting a link",
    )?;
    let one_step = if one_step_wanted {
        Some((
            need(args.store.as_deref(), "--store", "linking in one step")?,
            need(args.key.as_deref(), "--key", "linking in one step")?,
        ))
    } else {
        need(
            args.state_file.as_deref(),
            "--state-file",
            "starting a link without --key",
        )?;
        None
    };
    let params = authorization_params(&args, redirect_uri)?;
    let client = crate::client::build(&args.client).await?;
    let request = client.authorization_url(params)?;
    let saved = link_state(&client, redirect_uri, &request)?;
    if let Some(path) = &args.state_file {
        write_state(path, &saved)?;
    }
    let state_file = args.state_file.as_deref().map(|p| p.display().to_string());
    out.result(
        || match &state_file {
            Some(file) if one_step.is_none() => format!(
                "Open this URL, approve, then finish with\n  freshtoken link --credentials … --state-file {file} --store DIR --key USER --code-stdin\nand paste the URL you were sent back to:\n{}\n",
                request.url
            ),
            _ => format!("Open this URL and approve:\n{}\n", request.url),
        },
        Some(&request.url),
        &StartJson {
            authorization_url: &request.url,
            state: &request.state,
            redirect_uri,
            state_file: state_file.clone(),
        },
    )?;
    let Some((store, key)) = one_step else {
        return Ok(());
    };
    if out.format == crate::output::Format::Human {
        crate::output::write_stderr("Paste the URL you were sent back to (or the code): ");
    }
    let input = parse_code_input(&read_line_from_stdin()?).map_err(|r| r.failure(out))?;
    match &args.state_file {
        // Finished from the state file, as `--code-stdin` would: claimed
        // first (a run finishing it meanwhile has the code, and this one
        // sends nothing), removed once the code may have left, whatever
        // the outcome (a signal, a lost answer, a failed save, a closed
        // stdout), and kept when nothing was sent.
        Some(path) => finish_claimed(&client, &args, path, input, store, key, out).await,
        None => finish(&client, &args, &saved, input, store, key, out).await,
    }
}

/// Finishes the link kept in `state_file`: claims it (see
/// [`ClaimedState`]), finishes from the state read there and settles the
/// claim.
async fn finish_claimed(
    client: &TokenClient,
    args: &LinkArgs,
    state_file: &Path,
    input: CodeInput,
    store: &Path,
    key: &str,
    out: Output,
) -> Result<(), Failure> {
    let claim = ClaimedState::take(state_file)?;
    let finished = match read_state(claim.path(), state_file) {
        Ok(saved) => finish(client, args, &saved, input, store, key, out).await,
        Err(e) => Err(e),
    };
    claim.settle();
    finished
}

/// Checks the answer against the kept state, exchanges the code, stores
/// the session and reports it.
async fn finish(
    client: &TokenClient,
    args: &LinkArgs,
    saved: &LinkState,
    input: CodeInput,
    store: &Path,
    key: &str,
    out: Output,
) -> Result<(), Failure> {
    check_same_provider(client, args, saved)?;
    // The state first, an error redirect's too (RFC 6749 4.1.2.1): a forged
    // or stale redirect is a mismatch, never reported as the provider's answer.
    let state = match (input.state, &args.state) {
        (Some(sent), Some(given)) if &sent != given => return Err(Failure::StateMismatch),
        (Some(sent), _) => Some(sent),
        (None, given) => given.clone(),
    };
    if state.as_ref().is_some_and(|state| *state != saved.state) {
        return Err(Failure::StateMismatch);
    }
    // RFC 9207: the issuer the redirect names must be the one the link
    // started with (when it started from one): a redirect from another
    // provider (a mix-up) sends nothing.
    if let (Some(iss), Some(issuer)) = (&input.iss, &saved.issuer) {
        if iss != issuer {
            out.note("the redirect's issuer (iss) is not the one the link started with (RFC 9207)");
            return Err(Failure::StateMismatch);
        }
    }
    // A provider that announces `iss` names itself in every answer, its
    // error redirects too (RFC 9207 2.4): one without it is not its answer.
    if input.iss.is_none() && announces_iss(client) {
        out.note("the provider names itself (iss) in every redirect (RFC 9207) and this one has none: pass the whole redirect URL");
        return Err(Failure::StateMismatch);
    }
    if let Some((error, description)) = input.error {
        // An error redirect carries the state (RFC 6749 4.1.2.1): one
        // without it cannot be told from a forged one.
        if state.is_none() {
            out.note("the error redirect carries no state (RFC 6749 4.1.2.1): it cannot be told from a forged one");
            return Err(Failure::StateMismatch);
        }
        return Err(Failure::authorization(&error, description.as_deref()));
    }
    let code = input
        .code
        .ok_or_else(|| Failure::config("code", "the input carries no code"))?;
    if state.is_none() {
        return Err(Failure::Usage(
            "the state is missing: pass the whole redirect URL, or --state with the bare code"
                .into(),
        ));
    }
    let files = FileStore::new(PathBuf::from(store));
    let wait = crate::session_lock::lock_wait(&args.client, &args.lock);
    let saving = crate::unsaved::saving_budget(&args.client, wait);
    let flow = async {
        // Inside the shield: a signal while waiting for another process
        // ends the run with nothing sent (and the state file given back).
        let _lock = crate::session_lock::lock_session(&files, key, wait).await?;
        let exchanged = client
            .exchange_code(
                &code,
                &saved.code_verifier,
                &saved.redirect_uri,
                key,
                Arc::new(files.clone()),
            )
            .await;
        let session = match exchanged {
            Ok(session) => session,
            // The code is spent: the new session exists only in memory.
            Err(e) => {
                let session = client.session(key, Arc::new(files))?;
                if e.code() != freshtoken::ErrorCode::Storage || !holds_unsaved(&session) {
                    return Err(e.into());
                }
                save_held(&session, e, saving, out).await?;
                session
            }
        };
        Ok(session.status().await?)
    };
    let status = crate::interrupt::shielded(flow, |text| out.note(text)).await?;
    let json = LinkedJson {
        key,
        linked: true,
        access_expires_at_ms: status.access_expires_at_ms,
        refresh_expires_at_ms: status.refresh_expires_at_ms,
    };
    if status.refresh_expires_at_ms.is_none() {
        out.note("warning: the server issued no refresh token (offline_access not granted?): `freshtoken token` fails once the access token expires");
    }
    out.result(
        || {
            let mut text = format!("Linked {key}.");
            if let Some(at) = status.access_expires_at_ms {
                text.push_str(&format!(" Access token expires {}.", when(at)));
            }
            if let Some(at) = status.refresh_expires_at_ms {
                text.push_str(&format!(" Refresh token valid until {}.", when(at)));
            }
            text.push_str(&format!(
                "\nA fresh token: freshtoken token --store {} --key {key}\n",
                store.display()
            ));
            text
        },
        None,
        &json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(input: &CodeInput) -> Option<&str> {
        input.code.as_ref().map(|c| c.as_str())
    }

    fn parsed(text: &str) -> CodeInput {
        parse_code_input(text).unwrap_or_else(|r| panic!("refused: {r:?}"))
    }

    #[test]
    fn a_redirect_url_gives_code_and_state() {
        let input =
            parsed("  https://app.example/cb?code=a%2Bb&state=s%26t&iss=https%3A%2F%2Fas#frag\n");
        assert_eq!(code(&input), Some("a+b"));
        assert_eq!(input.state.as_deref(), Some("s&t"));
        assert_eq!(input.iss.as_deref(), Some("https://as"));
        assert_eq!(input.error, None);
        let query_only = parsed("code=c1&state=s1");
        assert_eq!(
            (code(&query_only), query_only.state.as_deref()),
            (Some("c1"), Some("s1"))
        );
    }

    #[test]
    fn a_bare_code_is_taken_as_is() {
        let input = parsed("Xy-123_abc\n");
        assert_eq!(code(&input), Some("Xy-123_abc"));
        assert_eq!(input.state, None);
        assert_eq!(code(&parsed("\n")), None);
    }

    #[test]
    fn an_error_redirect_is_reported() {
        let input = parsed("http://x/cb?error=access_denied&error_description=no+thanks&state=s");
        assert_eq!(
            input.error,
            Some(("access_denied".to_owned(), Some("no thanks".to_owned())))
        );
        assert_eq!(code(&input), None);
    }

    #[test]
    fn a_repeated_parameter_is_refused_whatever_its_spelling() {
        for (query, name) in [
            ("code=a&state=s&code=b", "code"),
            ("code=&code=b&state=s", "code"),
            ("code=a&state=s&st%61te=t", "state"),
            ("error=a&error=b&state=s", "error"),
            (
                "error=a&error_description=x&error_description=y",
                "error_description",
            ),
            ("code=a&state=s&iss=x&iss=x", "iss"),
        ] {
            assert_eq!(
                parse_code_input(&format!("https://app.example/cb?{query}")).err(),
                Some(Repeated(name)),
                "{query}"
            );
        }
        // Other parameters may repeat.
        assert!(parse_code_input("https://app.example/cb?code=a&state=s&x=1&x=2").is_ok());
    }
}
