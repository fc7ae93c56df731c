// The code flow's first half against the emulator, for the tests: its
// authorize endpoint approves at once and redirects to REDIRECT.

import assert from 'node:assert/strict';

/** The redirect URI the tests register. */
export const REDIRECT = 'https://app.example/callback';

/** Follows the authorize URL one hop (the emulator approves at once) and returns the redirect's query parameters. */
export async function approve(url) {
  const response = await fetch(url, { redirect: 'manual' });
  await response.arrayBuffer();
  assert.equal(response.status, 302);
  const location = new URL(response.headers.get('location'));
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT);
  return location.searchParams;
}
