//! `freshtoken client-token`: a client-credentials token for some scopes.

use crate::args::ClientTokenArgs;
use crate::failure::Failure;
use crate::output::{now_ms, Output};
use serde::Serialize;

/// The `--json` result.
#[derive(Serialize)]
struct ClientTokenJson<'a> {
    access_token: &'a str,
    token_type: &'static str,
    /// Seconds until it expires (as in a token response).
    expires_in: u64,
    /// When it expires (Unix ms).
    expires_at_ms: u64,
    scope: String,
}

/// The scopes of repeated, space-separated `--scope` options, in order,
/// without duplicates.
pub fn scopes(options: &[String]) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in options.iter().flat_map(|s| s.split_whitespace()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

/// Requests the token and prints it.
pub async fn run(args: ClientTokenArgs, out: Output) -> Result<(), Failure> {
    let scopes = scopes(&args.scopes);
    if scopes.is_empty() {
        return Err(Failure::config("scope", "give at least one scope"));
    }
    let client = crate::client::build(&args.client).await?;
    let issued = client.client_tokens().access_token(&scopes).await?;
    let token = zeroize::Zeroizing::new(issued.value.expose().to_owned());
    let scope = scopes.join(" ");
    out.result(
        || format!("Client token for scope \"{scope}\":\n{}\n", token.as_str()),
        Some(&token),
        &ClientTokenJson {
            access_token: &token,
            token_type: "Bearer",
            expires_in: issued.expires_at_ms.saturating_sub(now_ms()) / 1000,
            expires_at_ms: issued.expires_at_ms,
            scope: scope.clone(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_split_on_spaces_and_keep_the_first_of_each() {
        let given = vec!["a b".to_owned(), "c".to_owned(), " a ".to_owned()];
        assert_eq!(scopes(&given), vec!["a", "b", "c"]);
        assert!(scopes(&["  ".to_owned()]).is_empty());
    }
}
