// oidc-provider for the freshtoken command's Rust tests: starts the
// JavaScript suite's server (bindings/js/support/oidc-provider.mjs), prints
// one JSON line (issuer, token endpoint, redirect URI, client ids and
// secrets of the throwaway test clients), then answers each line of stdin
// (an authorization URL built by `freshtoken link`) with one JSON line: the
// URL oidc-provider sends the user back to after a scripted login and
// consent ({"redirect":…}) or {"error":…}. Exits when stdin closes.
//   node cli/tests/support/oidc-provider-driver.mjs

import { createInterface } from 'node:readline';
import { REDIRECT_URI, startOidcProvider } from '../../../bindings/js/support/oidc-provider.mjs';

const op = await startOidcProvider();
const line = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const { confidential, basic, jwt } = op.clients;
line({
  ready: true,
  issuer: op.issuer,
  token_endpoint: op.tokenEndpoint,
  redirect_uri: REDIRECT_URI,
  clients: { confidential, basic, jwt: { clientId: jwt.clientId } },
});

for await (const url of createInterface({ input: process.stdin })) {
  try {
    const params = await op.authorize(url.trim());
    line({ redirect: `${REDIRECT_URI}?${params}` });
  } catch (error) {
    line({ error: String(error?.message ?? error) });
  }
}
await op.close();
process.exit(0);
