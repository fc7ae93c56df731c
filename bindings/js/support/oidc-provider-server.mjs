// Runs the oidc-provider test server as a child process for the Kotlin and
// Python suites: prints one JSON line with its endpoints and client ids
// when ready, and exits when its stdin closes. Nothing secret is printed
// beyond the throwaway test clients' credentials.
//   node bindings/js/support/oidc-provider-server.mjs

import { startOidcProvider } from './oidc-provider.mjs';

const op = await startOidcProvider();
process.stdout.write(`${JSON.stringify({
  ready: true,
  issuer: op.issuer,
  token_endpoint: op.tokenEndpoint,
  authorization_endpoint: op.authorizationEndpoint,
  clients: op.clients,
})}\n`);
process.stdin.resume();
process.stdin.on('end', async () => {
  await op.close();
  process.exit(0);
});
