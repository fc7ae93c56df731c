//! The main job, end to end on the built-in emulator: adopt a user's refresh
//! token, serve 100 concurrent callers with one refresh, persist the rotated
//! record to a file, and show what a dead session looks like.
//!
//! Run with `bash scripts/demo.sh` (or `cargo run --example demo --features native-http`).

use freshtoken::{
    async_trait, Config, Record, Seed, StoreError, TokenClient, TokenStore, UserSession,
};
use freshtoken_emulator::{Emulator, Options};
use futures_util::future::join_all;
use std::path::PathBuf;
use std::sync::Arc;

/// A store that keeps one JSON file per session: write a temp file, fsync,
/// rename, so a crash never leaves half a record. Records hold refresh
/// tokens: files are 0600, in a directory of this process's own (0700).
struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The file of `key`: lowercase letters, digits and `-` as they are,
    /// every other byte as `_` and two hex digits. No two keys share a file
    /// (`a.b`, `a_b` and `a@b` would, were each mapped to `_`; `Alice` and
    /// `alice` would on a file system that ignores case), so no user's
    /// rotated record lands on another's.
    fn path(&self, key: &str) -> PathBuf {
        let mut safe = String::with_capacity(key.len());
        for byte in key.bytes() {
            if byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' {
                safe.push(char::from(byte));
            } else {
                safe.push_str(&format!("_{byte:02x}"));
            }
        }
        self.dir.join(format!("{safe}.json"))
    }
}

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError> {
        match std::fs::read_to_string(self.path(key)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError(format!("cannot read the record: {}", e.kind()))),
        }
    }

    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.path(key);
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            // A temporary file a crash left is this store's own (the
            // directory is): replaced, never written through.
            let _ = std::fs::remove_file(&tmp);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(record.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| StoreError(format!("cannot write the record: {}", e.kind())))
    }
}

fn shown(secret: &str) -> String {
    format!(
        "{}… ({} chars)",
        &secret[..secret.len().min(6)],
        secret.len()
    )
}

fn describe_file(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match Record::decode(&text) {
        Ok(r) => format!(
            "refresh token {}, access token expires at {} ms, dead: {}",
            r.refresh_token
                .map(|t| shown(t.expose()))
                .unwrap_or_else(|| "none".into()),
            r.access_token.map(|a| a.expires_at_ms).unwrap_or(0),
            r.reauth.map(|r| r.as_str()).unwrap_or("no"),
        ),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Seeds `key` of `client` with `refresh_token` and asks for an access
/// token: the error a replay of a consumed token meets.
async fn replay(
    client: &TokenClient,
    key: &str,
    store: &Arc<FileStore>,
    refresh_token: &str,
) -> Result<freshtoken::Error, Box<dyn std::error::Error>> {
    let session = client.session(key, store.clone())?;
    session
        .seed(Seed {
            refresh_token: refresh_token.to_owned().into(),
            ..Seed::default()
        })
        .await?;
    Ok(session.access_token().await.unwrap_err())
}

async fn hundred_callers(session: &UserSession) -> Vec<String> {
    let calls = (0..100).map(|_| {
        let session = session.clone();
        async move { session.access_token().await }
    });
    join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("token"))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(Options::default())?;
    println!(
        "1. Emulator with Stitch's rules at {}",
        emulator.token_endpoint()
    );

    let dir = std::env::temp_dir().join(format!("freshtoken-demo-{}", std::process::id()));
    // A new directory, never one that someone else prepared under this name.
    let mut new_dir = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut new_dir, 0o700);
    new_dir.create(&dir)?;
    let store = Arc::new(FileStore { dir: dir.clone() });
    let config = Config::builder(emulator.token_endpoint(), "test-client")
        .client_secret("test-secret")
        .build()?;
    let client = TokenClient::native(config)?;

    // The user linked their bank earlier; hand-written code kept this token.
    let linked = emulator.seed("test-client", "openid offline_access accounts");
    let session = client.session("user-42", store.clone())?;
    session
        .seed(Seed {
            refresh_token: linked.refresh_token.clone().into(),
            ..Seed::default()
        })
        .await?;
    println!(
        "2. Seeded session user-42 with refresh token {}",
        shown(&linked.refresh_token)
    );

    let tokens = hundred_callers(&session).await;
    let counters = emulator.counters();
    let same = tokens.iter().all(|t| *t == tokens[0]);
    println!(
        "3. 100 concurrent callers -> {} refresh request(s); all got the same token: {same}",
        counters.by_grant.get("refresh_token").copied().unwrap_or(0)
    );
    let file = store.path("user-42");
    println!("4. Rotated record persisted to {}", file.display());
    println!("   {}", describe_file(&file));

    let again = hundred_callers(&session).await;
    println!(
        "5. 100 more callers while the token is fresh -> {} refresh request(s) in total (served from memory)",
        emulator.counters().by_grant.get("refresh_token").copied().unwrap_or(0)
    );
    assert!(again.iter().all(|t| *t == tokens[0]));

    // Someone replays the consumed refresh token. In this process the
    // library refuses to send it: the token was rotated here.
    let refused = replay(&client, "replayer", &store, &linked.refresh_token).await?;
    println!(
        "6. Replaying the consumed token in this process: {} ({})",
        refused.code(),
        refused
    );
    // From elsewhere (another process, here a client of the same server
    // named apart): the server sees reuse and revokes the whole family, as
    // Stitch-style servers do.
    let elsewhere = TokenClient::native(
        Config::builder(
            format!("{}?elsewhere", emulator.token_endpoint()),
            "test-client",
        )
        .client_secret("test-secret")
        .build()?,
    )?;
    let replayed = replay(&elsewhere, "attacker", &store, &linked.refresh_token).await?;
    println!(
        "   Replaying it from elsewhere: {} ({})",
        replayed.code(),
        replayed
    );

    match session.refresh().await {
        Ok(_) => println!("7. unexpected: the revoked family still refreshed"),
        Err(e) => {
            println!(
                "7. The user's session now: code={} reason={} — {e}",
                e.code(),
                e.reason().map(|r| r.as_str()).unwrap_or("-")
            );
        }
    }
    let before = emulator.counters().token_requests;
    let again = session.access_token().await.unwrap_err();
    println!(
        "8. Remembered: the next call fails fast ({}), {} request(s) sent; record: {}",
        again.code(),
        emulator.counters().token_requests - before,
        describe_file(&file)
    );
    std::fs::remove_dir_all(&dir)?;
    println!("Demo finished.");
    Ok(())
}
