// authorizedFetch() and bodies that can be read or sent only once, against
// real servers: the emulator (tokens) and a loopback API whose answers
// stream, and which rejects the first token it sees (401).
//
// - An answer's body is looked into for GraphQL errors only when it is one
//   JSON text (application/json or +json), and only its first 64 KiB, up
//   to its first whole JSON text: a stream of JSON texts (NDJSON), a JSON
//   stream (a watch) or a big download is handed back unread, instead of
//   being read to its end first (which never comes for an open stream).
//   The caller's signal ends that look too.
// - A fetch whose bodies are Node streams (node-fetch, as `options.fetch`)
//   is looked into the same way.
// - A request body that is a stream is consumed by the first send: when the
//   API rejects the token, the session is told (the next call has a new
//   token) and the rejection is returned, instead of fetch throwing a
//   TypeError on the resend.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';

import nodeFetch from 'node-fetch';
import { MemoryStore, TokenClient, authorizedFetch, isUnauthenticated } from 'freshtoken';
import { startEmulator } from '../support/emulator.mjs';

const MiB = 1024 * 1024;
/** Bounds a call that used to wait for a body's end: a failure, not a hang. */
const BOUND = { timeout: 10_000 };
/** The same for a 64 MiB answer read whole: that alone can take seconds on a loaded machine. */
const BIG_BOUND = { timeout: 60_000 };

describe('authorizedFetch() and bodies read or sent once', () => {
  let emu;
  let api;
  /** The streaming API's open responses, by path, for the test to end. */
  const open = new Map();
  /** Bytes the /big route has written so far. */
  let bigWritten = 0;
  /** The bodies /upload received, and the one token it rejects (the first it saw). */
  const uploads = [];
  let rejectedToken;

  before(async () => {
    emu = await startEmulator();
    api = createServer(async (req, res) => {
      if (req.url === '/watch') {
        // One JSON event, then the stream stays open (a Kubernetes watch, labelled application/json).
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"type":"ADDED","object":{}}\n');
        open.set(req.url, res);
      } else if (req.url === '/silent') {
        // The headers of a JSON answer, and no byte of its body yet (a long poll).
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        open.set(req.url, res);
      } else if (req.url === '/ndjson') {
        // One event, then the stream stays open (a watch API).
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write('{"event":1}\n');
        open.set(req.url, res);
      } else if (req.url === '/big') {
        // 64 MiB of one JSON text, written as fast as it is read.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"data":"');
        const chunk = 'x'.repeat(64 * 1024);
        for (let i = 0; i < 1024; i += 1) {
          bigWritten += chunk.length;
          if (!res.write(chunk)) await new Promise((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
          if (res.destroyed) return;
        }
        res.end('"}');
      } else if (req.url === '/sized') {
        // 1 MiB of one JSON text, its length said.
        const text = JSON.stringify({ data: 's'.repeat(MiB) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      } else if (req.url === '/upload') {
        const chunks = [];
        for await (const chunk of req) chunks.push(chunk);
        uploads.push(Buffer.concat(chunks).toString('utf8'));
        rejectedToken ??= req.headers.authorization;
        res.writeHead(req.headers.authorization === rejectedToken ? 401 : 200).end();
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise((resolve) => { api.listen(0, '127.0.0.1', resolve); });
  });

  after(async () => {
    for (const res of open.values()) res.end();
    api?.closeAllConnections();
    await new Promise((resolve) => (api ? api.close(resolve) : resolve()));
    await emu?.stop();
  });

  beforeEach(async () => { await emu.reset(); });

  const url = (path) => `http://127.0.0.1:${api.address().port}${path}`;

  /** A session holding a fresh (900 s) access token from a new emulator family. */
  async function freshSession() {
    const client = new TokenClient({ tokenEndpoint: emu.tokenEndpoint, clientId: 'test-client', clientSecret: 'test-secret' });
    const family = await emu.seed();
    const session = client.session('u1', new MemoryStore());
    await session.seed({ refreshToken: family.refresh_token, accessToken: family.access_token, expiresIn: 900 });
    return { client, session };
  }

  test('an NDJSON answer that stays open is returned at once, its body unread', BOUND, async () => {
    const { client, session } = await freshSession();
    const response = await authorizedFetch(session, url('/ndjson'));
    assert.equal(response.status, 200);
    assert.equal(await emu.refreshRequests(), 0);
    open.get('/ndjson').end('{"event":2}\n');
    assert.equal(await response.text(), '{"event":1}\n{"event":2}\n', 'the caller reads the whole stream');
    client.free();
  });

  test('a JSON answer that stays open is returned once its first JSON text has come, like fetch does', BOUND, async () => {
    const { client, session } = await freshSession();
    const response = await authorizedFetch(session, url('/watch'));
    // Back while the server still holds the body open.
    assert.equal(response.status, 200);
    assert.equal(await emu.refreshRequests(), 0);
    open.get('/watch').end('{"type":"MODIFIED","object":{}}\n');
    assert.equal(await response.text(), '{"type":"ADDED","object":{}}\n{"type":"MODIFIED","object":{}}\n', 'the caller reads the whole stream');
    client.free();
  });

  test('a JSON stream returned, then ended by init.signal: its body errors as fetch\'s would, nothing is left unhandled', BOUND, async () => {
    // (An unhandled rejection, such as Node's fetch cancelling a body beside a cancelled copy, fails the test.)
    const { client, session } = await freshSession();
    const controller = new AbortController();
    const response = await authorizedFetch(session, url('/watch'), { signal: controller.signal });
    assert.equal(response.status, 200);
    controller.abort();
    await assert.rejects(response.text(), { name: 'AbortError' });
    await new Promise((resolve) => { setImmediate(resolve); });
    client.free();
  });

  test('a JSON answer whose body has not begun: init.signal ends the look into it, even with a fetch that ignores the signal', BOUND, async () => {
    const { client, session } = await freshSession();
    let fetched;
    const answered = new Promise((resolve) => { fetched = resolve; });
    const unsignalled = async (input, { signal, ...init }) => {
      const response = await fetch(input, init);
      fetched();
      return response;
    };
    const controller = new AbortController();
    const pending = authorizedFetch(session, url('/silent'), { signal: controller.signal }, { fetch: unsignalled });
    await answered;
    controller.abort();
    const response = await pending;
    assert.equal(response.status, 200, 'the answer as fetch gave it');
    open.get('/silent').end('{"data":{}}');
    assert.equal(await response.text(), '{"data":{}}', 'its body unread');
    assert.equal(await emu.refreshRequests(), 0);
    client.free();
  });

  test('a 64 MiB JSON answer is returned after at most 64 KiB of it was looked at, and reads whole', BIG_BOUND, async () => {
    const { client, session } = await freshSession();
    bigWritten = 0;
    const response = await authorizedFetch(session, url('/big'));
    // What the kernel's and fetch's buffers hold is written too: a few MiB at most.
    assert.ok(bigWritten < 32 * MiB, `${bigWritten} bytes were written before the answer came back`);
    const text = await response.text();
    assert.equal(text.length, 64 * MiB + '{"data":""}'.length, 'the caller still reads all of it');
    assert.equal(await emu.refreshRequests(), 0);
    client.free();
  });

  test('isUnauthenticated: JSON and +json bodies are looked into, up to their first JSON text; NDJSON and bodies over 64 KiB are not', BOUND, async () => {
    const answer = (type, body) => new Response(body, { status: 200, headers: { 'content-type': type } });
    const rejected = JSON.stringify({ errors: [{ message: 'UNAUTHENTICATED: Token is expired or malformed' }] });
    assert.equal(await isUnauthenticated(answer('application/json; charset=utf-8', rejected)), true);
    assert.equal(await isUnauthenticated(answer('application/graphql-response+json', rejected)), true);
    assert.equal(await isUnauthenticated(answer('Application/JSON', rejected)), true);
    assert.equal(await isUnauthenticated(answer('application/x-ndjson', rejected)), false);
    assert.equal(await isUnauthenticated(answer('application/json-seq', rejected)), false);
    const padded = JSON.stringify({ errors: [{ message: 'UNAUTHENTICATED: x' }], pad: 'p'.repeat(64 * 1024) });
    const big = answer('application/json', padded);
    assert.equal(await isUnauthenticated(big), false, 'not an error answer: read no further than 64 KiB');
    assert.equal((await big.text()).length, padded.length, 'the body stays readable');
    // Decided at the first whole JSON text, however its chunks fall; a stream that stays open is not waited out.
    const streamed = (parts, close = true) => answer('application/json', new ReadableStream({
      start(controller) {
        for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
        if (close) controller.close();
      },
    }));
    assert.equal(await isUnauthenticated(streamed(['{"errors":[{"message":"UNAUTHENTICATED: x"}', ']}'])), true, 'a brace inside the text is not its end');
    assert.equal(await isUnauthenticated(streamed(['{"errors":[{"message":"UNAUTHENTICATED: x"}]}\n'], false)), true, 'open after its text');
    assert.equal(await isUnauthenticated(streamed(['{"type":"ADDED","object":{}}\n'], false)), false, 'a watch stream');
    assert.equal(await isUnauthenticated(streamed(['[{"errors":'], false)), false, 'not an object: no GraphQL answer');
  });

  test('node-fetch as options.fetch: a GraphQL UNAUTHENTICATED answer (a Node stream body) is one refresh and one retry', BOUND, async () => {
    const { client, session } = await freshSession();
    await emu.advanceClock(1000); // the API now rejects the token the client thinks fresh
    const response = await authorizedFetch(session, emu.apiEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ viewer { clientId } }' }),
    }, { fetch: nodeFetch });
    assert.equal((await response.json()).data?.viewer?.clientId, 'test-client');
    assert.equal(await emu.refreshRequests(), 1);
    const counters = await emu.counters();
    assert.equal(counters.api_requests, 2);
    assert.equal(counters.api_unauthenticated, 1);
    const rejected = await nodeFetch(emu.apiEndpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ viewer { clientId } }"}' });
    assert.equal(await isUnauthenticated(rejected), true, 'no token: UNAUTHENTICATED');
    assert.match((await rejected.json()).errors[0].message, /^UNAUTHENTICATED/, 'the body stays readable');
    // Longer than 64 KiB by its Content-Length: returned unread (node-fetch's clone would stall).
    const sized = await authorizedFetch(session, url('/sized'), undefined, { fetch: nodeFetch });
    assert.equal((await sized.text()).length, MiB + '{"data":""}'.length);
    client.free();
  });

  test('a stream request body: on 401 the session is told and the 401 returned, nothing sent twice', async () => {
    const { client, session } = await freshSession();
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"upload":1}'));
        controller.close();
      },
    });
    const response = await authorizedFetch(session, url('/upload'), { method: 'POST', body, duplex: 'half' });
    assert.equal(response.status, 401, 'the rejection, as fetch would have returned it');
    assert.deepEqual(uploads, ['{"upload":1}'], 'the stream was sent once');
    assert.equal(await emu.refreshRequests(), 1, 'one refresh: the rejected token is replaced');
    // The caller sends again (a new body), with the new token and no other refresh.
    const again = await authorizedFetch(session, url('/upload'), { method: 'POST', body: '{"upload":1}' });
    assert.equal(again.status, 200);
    assert.equal(uploads.length, 2);
    assert.equal(await emu.refreshRequests(), 1);
    client.free();
  });
});
