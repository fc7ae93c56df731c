//! Running the built `freshtoken` binary against the emulator (started in
//! process through its library) in a scratch directory.

use freshtoken::Record;
use freshtoken_emulator::{Emulator, Options};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_freshtoken");

/// The emulator's default confidential client.
pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// `freshtoken -q link` for the emulator's redirect URI and the `accounts`
/// scope: how the tests start a link.
pub const LINK_START: [&str; 6] = [
    "-q",
    "link",
    "--redirect-uri",
    REDIRECT_URI,
    "--scope",
    "accounts",
];

/// A directory removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random).unwrap();
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("freshtoken-cli-test-{name}-{hex}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `contents` to `name`, readable by the owner only.
    pub fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns itself.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "exit status; stderr: {}; stdout: {}",
            self.stderr, self.stdout
        );
        self
    }

    /// Asserts the exit status and returns itself.
    #[track_caller]
    pub fn exits(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit status; stderr: {}; stdout: {}",
            self.stderr, self.stdout
        );
        self
    }

    /// Stdout as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {}", self.stdout))
    }

    /// Stdout and stderr together (for "never shows" checks).
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A command line for the binary, with no FRESHTOKEN_* variable inherited.
pub struct Cli {
    command: Command,
    stdin: Option<String>,
}

pub fn freshtoken<I, S>(args: I) -> Cli
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FRESHTOKEN_") {
            command.env_remove(name);
        }
    }
    command.args(args);
    Cli {
        command,
        stdin: None,
    }
}

impl Cli {
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// The same command started by `sh` with `signal` (`HUP`, …) ignored,
    /// as `nohup` or `trap '' HUP` leave it.
    #[cfg(unix)]
    pub fn ignoring(self, signal: &str) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("trap '' {signal}; exec \"$0\" \"$@\""))
            .arg(self.command.get_program())
            .args(self.command.get_args());
        for (name, value) in self.command.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        Cli {
            command,
            stdin: self.stdin,
        }
    }

    /// Starts the process with piped stdio (stdin left open).
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts")
    }

    /// Starts the process with `stderr` as its standard error (stdin and
    /// stdout piped, stdin left open).
    pub fn spawn_with_stderr(mut self, stderr: impl Into<Stdio>) -> std::process::Child {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the binary starts")
    }

    pub fn run(self) -> Run {
        let input = self.stdin.clone();
        let mut child = self.spawn();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(text) = input {
            // A run that fails before reading its stdin closes the pipe.
            if let Err(e) = stdin.write_all(text.as_bytes()) {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
            }
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

/// The emulator, a scratch directory, a credentials file for the default
/// client and a store directory.
pub struct Env {
    pub emu: Emulator,
    pub scratch: Scratch,
    pub creds: PathBuf,
    pub store: PathBuf,
}

impl Env {
    pub fn new(name: &str) -> Self {
        Self::with(name, Options::default())
    }

    pub fn with(name: &str, options: Options) -> Self {
        let emu = Emulator::start(options).expect("emulator starts");
        let scratch = Scratch::new(name);
        let creds = scratch.write_private(
            "creds.json",
            &credentials(CLIENT_ID, Some(CLIENT_SECRET), &emu.token_endpoint()),
        );
        let store = scratch.path("tokens");
        Env {
            emu,
            scratch,
            creds,
            store,
        }
    }

    /// `freshtoken ARGS --credentials creds.json`.
    pub fn with_creds(&self, args: &[&str]) -> Cli {
        freshtoken(args).args(["--credentials".as_ref(), self.creds.as_os_str()])
    }

    /// `freshtoken ARGS --store DIR --key KEY`.
    pub fn on(&self, args: &[&str], key: &str) -> Cli {
        freshtoken(args).args([
            "--store".as_ref(),
            self.store.as_os_str(),
            "--key".as_ref(),
            key.as_ref(),
        ])
    }

    /// `freshtoken ARGS --credentials creds.json --store DIR --key KEY`.
    pub fn full(&self, args: &[&str], key: &str) -> Cli {
        self.on(args, key)
            .args(["--credentials".as_ref(), self.creds.as_os_str()])
    }

    /// Links `key` end to end: start (state file), approval at the
    /// emulator's authorize endpoint, finish with the redirect URL on stdin.
    pub fn link(&self, key: &str) {
        let state_file = self.scratch.path(&format!("link-{key}.json"));
        let url = self
            .with_creds(&LINK_START)
            .args(["--state-file".as_ref(), state_file.as_os_str()])
            .run()
            .ok()
            .stdout;
        let redirect = authorize(url.trim());
        self.full(&["link", "--code-stdin"], key)
            .args(["--state-file".as_ref(), state_file.as_os_str()])
            .stdin(redirect)
            .run()
            .ok();
    }

    /// Starts a one-step link of `key` (keeping its state in `state_file`
    /// too, when given); returns the running command, its stdin open, and
    /// the redirect URL the emulator approved its authorization URL with.
    pub fn one_step_link(
        &self,
        key: &str,
        state_file: Option<&Path>,
    ) -> (std::process::Child, String) {
        let mut cli = self.full(&LINK_START, key);
        if let Some(state_file) = state_file {
            cli = cli.args(["--state-file".as_ref(), state_file.as_os_str()]);
        }
        let mut child = cli.spawn();
        let mut url = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut url,
        )
        .unwrap();
        let redirect = authorize(url.trim());
        (child, redirect)
    }

    /// The record file of `key` (the npm FileStore's name for it).
    pub fn record_path(&self, key: &str) -> PathBuf {
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        self.store.join(format!("x.{hex}.json"))
    }

    pub fn record(&self, key: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.record_path(key)).ok()?;
        Some(Record::decode(&text).expect("a valid record"))
    }

    pub fn write_record(&self, key: &str, record: &Record) {
        std::fs::write(self.record_path(key), record.encode()).unwrap();
    }

    /// Ages the stored access token past its expiry, as if time had passed.
    pub fn expire_access_token(&self, key: &str) {
        let mut record = self.record(key).expect("a stored record");
        let access = record.access_token.as_mut().expect("an access token");
        access.expires_at_ms = now_ms() - 1_000;
        access.issued_at_ms = access.expires_at_ms - 900_000;
        self.write_record(key, &record);
    }

    pub fn refresh_token(&self, key: &str) -> String {
        self.record(key)
            .and_then(|r| r.refresh_token)
            .expect("a refresh token")
            .expose()
            .to_owned()
    }

    pub fn access_token(&self, key: &str) -> String {
        self.record(key)
            .and_then(|r| r.access_token)
            .expect("an access token")
            .value
            .expose()
            .to_owned()
    }

    /// Whether the emulator's API accepts `token`.
    pub fn api_accepts(&self, token: &str) -> bool {
        let base = self.emu.base_url();
        let (status, _) = http_get(&format!("{base}/api/me"), Some(token));
        status == 200
    }
}

/// A credentials JSON as a provider hands it out.
pub fn credentials(client_id: &str, secret: Option<&str>, token_endpoint: &str) -> String {
    let mut creds = serde_json::json!({
        "clientId": client_id,
        "slidingRefreshTokenLifetime": 31_536_000,
        "tokenEndpoint": token_endpoint,
    });
    if let Some(secret) = secret {
        creds["clientSecret"] = secret.into();
    }
    creds.to_string()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A GET over loopback HTTP/1.1: the status and the `Location` header.
pub fn http_get(url: &str, bearer: Option<&str>) -> (u16, Option<String>) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(host).unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let location = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        });
    (status, location)
}

/// Approves an authorization URL at the emulator (which approves without
/// a person) and returns the redirect URL it sends the user back to.
pub fn authorize(url: &str) -> String {
    let (status, location) = http_get(url, None);
    assert_eq!(status, 302, "the emulator approves");
    location.expect("a Location header")
}

/// The query parameter `name` of `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether `path` is readable by its owner only.
#[cfg(unix)]
pub fn is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077 == 0
}

/// Sends `signal` (`INT`, `TERM`, …) to `child`.
#[cfg(unix)]
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -s {signal}");
}

/// Waits for `child` to end, failing (and ending it) if it is still
/// running after `limit`: the command must never hang.
pub fn wait_at_most(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    let end = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the command still ran after {limit:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Sets the modification time of the file at `path` to `at`.
pub fn set_modified(path: &Path, at: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// `secs` seconds ago.
pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Writes `text` to the file `name` in the store directory, modified at `at`.
pub fn write_temp(env: &Env, name: &str, text: &str, at: SystemTime) -> PathBuf {
    let path = env.store.join(name);
    std::fs::write(&path, text).unwrap();
    set_modified(&path, at);
    path
}

/// Links `key` and refreshes it once: the record's text before the
/// rotation and after it.
pub fn rotated_once(env: &Env, key: &str) -> (String, String) {
    env.link(key);
    let before = std::fs::read_to_string(env.record_path(key)).unwrap();
    env.expire_access_token(key);
    env.full(&["-q", "token"], key).run().ok();
    let after = std::fs::read_to_string(env.record_path(key)).unwrap();
    (before, after)
}

/// Leaves `key`'s record as a save killed after its refresh leaves it: the
/// write-ahead's in-doubt record of the refresh token the refresh spent
/// (`before`), its access token expired, modified at `at`. With the
/// rotated record in a temporary file beside it ([`write_temp`]), that is
/// the save killed between its temporary file's fsync and its rename.
pub fn killed_after_the_refresh(env: &Env, key: &str, before: &str, at: SystemTime) {
    let mut in_doubt = Record::decode(before).unwrap();
    in_doubt.in_doubt = true;
    in_doubt.access_token.as_mut().unwrap().expires_at_ms = now_ms() - 1_000;
    env.write_record(key, &in_doubt);
    set_modified(&env.record_path(key), at);
}
