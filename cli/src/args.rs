//! The command line (clap derive). No argument carries a secret: client
//! secrets, certificates and authorization codes come from files, standard
//! input or environment variables.

use crate::failure::EXIT_CODES;
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Keeps OAuth 2.0 tokens fresh from scripts: client tokens, linking a user,
/// fresh user tokens (rotating single-use refresh tokens without losing
/// one), inspection, revocation, and a local emulator for tests.
#[derive(Debug, Parser)]
#[command(name = "freshtoken", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Print a JSON object (errors too, as {"error":{…}}), for scripts.
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub json: bool,
    /// Print only the value a script needs (the token, the URL).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a client token (client_credentials grant) for the given scopes.
    #[command(after_help = EXIT_CODES)]
    ClientToken(ClientTokenArgs),
    /// Link a user: print the authorization URL (PKCE, state and nonce kept
    /// in a state file), then exchange the code and store the session.
    #[command(after_help = LINK_HELP)]
    Link(LinkArgs),
    /// Print a fresh access token from a stored session, refreshing it (and
    /// saving the rotated refresh token) only when needed.
    #[command(after_help = EXIT_CODES)]
    Token(TokenArgs),
    /// Show a stored session's status, expiry times and dead reason, with
    /// its tokens redacted. Sends nothing and needs no credentials.
    #[command(after_help = EXIT_CODES)]
    Inspect(InspectArgs),
    /// Revoke a stored session at the server (RFC 7009) and mark it dead.
    #[command(after_help = EXIT_CODES)]
    Revoke(RevokeArgs),
    /// Run the token-endpoint emulator with Stitch's rules, for your own
    /// integration tests. Prints one JSON ready line, serves until SIGINT or
    /// SIGTERM.
    #[command(after_help = EMULATOR_HELP)]
    Emulator(EmulatorArgs),
}

const LINK_HELP: &str = "\
Two steps, for scripts:
  freshtoken link --credentials creds.json --redirect-uri URI --scope accounts --state-file link.json
      prints the authorization URL and writes the verifier, state, nonce and the provider's
      endpoints to link.json (0600)
  freshtoken link --credentials creds.json --state-file link.json --store DIR --key USER --code-stdin
      reads the redirect URL (or the bare code, then pass --state; not with a provider whose
      discovery document announces iss, RFC 9207: its redirect URL is needed) from standard input,
      checks the state (and the issuer), exchanges the code and stores the session; link.json
      is removed. Finish with the credentials and endpoint options the link started with:
      the code is sent to no other token endpoint
One step, for people: give --key (and --store) without a code source: the URL
is printed and the redirect URL is read from standard input. With --state-file
too, the link is also kept there (to finish later if this run ends first) and
finished from it as with --code-stdin.
The code may also come from FRESHTOKEN_CODE (--code-env). It is never an argument.

Exit status: as for every command (see `freshtoken --help`); 13 when the redirect is
not this link's answer (another state or issuer, no issuer from a provider that announces one
(RFC 9207), a repeated parameter, an error without a state).";

const EMULATOR_HELP: &str = "\
Ready line (stdout, one JSON object): ready, port, issuer, token_endpoint,
authorization_endpoint, api_endpoint, admin_endpoint, revocation_endpoint,
discovery_endpoint. Default clients: test-client / test-secret and public-client.
--write-credentials writes a credentials JSON for test-client (or the first client
of --clients-file) pointing at the emulator, for `freshtoken … --credentials FILE`.
Environment (flags win): FRESHTOKEN_EMULATOR_PORT, FRESHTOKEN_EMULATOR_ACCESS_TTL,
FRESHTOKEN_EMULATOR_CLIENT_TTL, FRESHTOKEN_EMULATOR_REFRESH_TTL,
FRESHTOKEN_EMULATOR_REUSE_DETECTION=0|1.";

/// How to reach and authenticate at the provider.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client credentials JSON (clientId, clientSecret or certificate,
    /// slidingRefreshTokenLifetime, optional tokenEndpoint), or `-` for
    /// standard input. FRESHTOKEN_CLIENT_SECRET, when set, supplies or
    /// replaces its secret.
    #[arg(
        long,
        env = "FRESHTOKEN_CREDENTIALS",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub credentials: PathBuf,
    /// Read the endpoints from this issuer's discovery document
    /// (/.well-known/openid-configuration); a tokenEndpoint in the
    /// credentials still wins over the discovered one.
    #[arg(
        long,
        env = "FRESHTOKEN_ISSUER",
        hide_env_values = true,
        value_name = "URL",
        conflicts_with = "token_endpoint"
    )]
    pub issuer: Option<String>,
    /// The token endpoint (default: the credentials' tokenEndpoint, else the
    /// discovered one with --issuer, else Stitch's).
    #[arg(
        long,
        env = "FRESHTOKEN_TOKEN_ENDPOINT",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub token_endpoint: Option<String>,
    /// The authorization endpoint (default: the discovered one with --issuer,
    /// else the token endpoint's /authorize sibling).
    #[arg(
        long,
        env = "FRESHTOKEN_AUTHORIZATION_ENDPOINT",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub authorization_endpoint: Option<String>,
    /// The revocation endpoint (default: the discovered one with --issuer,
    /// else the token endpoint's /revocation sibling; without one, `revoke`
    /// fails with config and changes nothing).
    #[arg(
        long,
        env = "FRESHTOKEN_REVOCATION_ENDPOINT",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub revocation_endpoint: Option<String>,
    /// Timeout of one request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub timeout: u32,
    /// Requests sent at most for one token (1: no retries of 5xx, 429 or
    /// unsent requests).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
}

/// Where a user's session is stored.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store directory: one file per key, the layout of the npm
    /// package's FileStore (created 0700 if missing; files 0600).
    #[arg(
        long,
        env = "FRESHTOKEN_STORE",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub store: PathBuf,
    /// The session key (your user id).
    #[arg(long, value_name = "USER", value_parser = NonEmptyStringValueParser::new())]
    pub key: String,
}

/// Waiting for another process using the same session.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Longest wait for another process refreshing, linking or revoking the
    /// same session (its lock file), after which the command gives up with
    /// conflict (12) having sent nothing. Default: --timeout plus 40 s, the
    /// longest refresh another process may be making. `token` and `link`
    /// also try this long, and never less than --timeout plus 5 s, to save
    /// a renewed session that cannot be saved at once (a full disk, a
    /// stalled writer) before giving up with storage (11).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub lock_wait: Option<u32>,
}

/// `client-token`.
#[derive(Debug, Args)]
pub struct ClientTokenArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A scope (repeat it, or separate scopes with spaces).
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,
}

/// `link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where the provider sends the user back (registered with the client).
    /// Required to start; when finishing, it must match the state file's.
    #[arg(long, value_name = "URI")]
    pub redirect_uri: Option<String>,
    /// A scope to ask for (repeat it, or separate with spaces);
    /// offline_access is always added.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// A further authorization parameter (e.g. provider=…), repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The file keeping the PKCE verifier, state, nonce and the provider's endpoints between the two steps (0600).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Finish: read the redirect URL (or the bare code) from standard input.
    #[arg(long, conflicts_with = "code_env")]
    pub code_stdin: bool,
    /// Finish: read the redirect URL (or the bare code) from FRESHTOKEN_CODE.
    #[arg(long)]
    pub code_env: bool,
    /// The state the provider sent back, when only the bare code is given.
    /// Hyphen values allowed: a state is random base64url, and one in 64
    /// begins with `-`, which clap would otherwise read as an option.
    #[arg(long, value_name = "STATE", allow_hyphen_values = true)]
    pub state: Option<String>,
    /// The store directory to save the session in (finishing).
    #[arg(
        long,
        env = "FRESHTOKEN_STORE",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub store: Option<PathBuf>,
    /// The session key (finishing).
    #[arg(long, value_name = "USER", value_parser = NonEmptyStringValueParser::new())]
    pub key: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Refresh even if the stored access token is still fresh (e.g. the API
    /// rejected it). Each refresh may cost the user a banking session, so
    /// if another process renews the session while this one waits for it,
    /// that renewed token is printed instead of refreshing again.
    #[arg(long)]
    pub refresh: bool,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(
        long,
        env = "FRESHTOKEN_EMULATOR_PORT",
        hide_env_values = true,
        default_value_t = 0
    )]
    pub port: u16,
    /// User access-token lifetime.
    #[arg(
        long,
        env = "FRESHTOKEN_EMULATOR_ACCESS_TTL",
        hide_env_values = true,
        value_name = "SECONDS",
        default_value_t = 900
    )]
    pub access_ttl: u64,
    /// Client-token (client_credentials) lifetime.
    #[arg(
        long,
        env = "FRESHTOKEN_EMULATOR_CLIENT_TTL",
        hide_env_values = true,
        value_name = "SECONDS",
        default_value_t = 3600
    )]
    pub client_ttl: u64,
    /// Sliding refresh-token lifetime.
    #[arg(
        long,
        env = "FRESHTOKEN_EMULATOR_REFRESH_TTL",
        hide_env_values = true,
        value_name = "SECONDS",
        default_value_t = 31_536_000
    )]
    pub refresh_ttl: u64,
    /// Do not revoke a token family when a consumed refresh token returns.
    #[arg(long, conflicts_with = "reuse_detection")]
    pub no_reuse_detection: bool,
    /// Revoke it (the default).
    #[arg(long)]
    pub reuse_detection: bool,
    /// Confidential clients, one `ID:SECRET` per line (replaces the default clients).
    #[arg(long, value_name = "FILE")]
    pub clients_file: Option<PathBuf>,
    /// A public client (repeatable; replaces the default clients).
    #[arg(long, value_name = "ID")]
    pub public_client: Vec<String>,
    /// Write a credentials JSON for the first confidential client (0600).
    #[arg(long, value_name = "FILE")]
    pub write_credentials: Option<PathBuf>,
    /// Exit when standard input closes (for test harnesses).
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// Log method, path and status of each request to stderr (never tokens).
    #[arg(long)]
    pub verbose: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_that_begins_with_a_hyphen_is_a_value() {
        let cli = Cli::try_parse_from([
            "freshtoken",
            "link",
            "--credentials",
            "c.json",
            "--code-stdin",
            "--state",
            "-sQx9_Zp",
        ])
        .unwrap();
        match cli.command {
            Command::Link(args) => assert_eq!(args.state.as_deref(), Some("-sQx9_Zp")),
            other => panic!("parsed as {other:?}"),
        }
    }
}
