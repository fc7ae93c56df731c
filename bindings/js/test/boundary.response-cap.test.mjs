// The response cap holds while reading (issue 11 item 6): the fetch
// transport reads the body from its stream and stops one byte past the cap
// (64 KiB), then cancels the stream so that the connection closes. Against a
// loopback server that streams a 200 answer forever, the refresh fails with
// invalid_response and the server sees the connection close. How much the
// transport pulled is counted exactly by a wrapper around the body stream;
// what the server wrote is bounded by the kernel's socket buffers (about
// 4 MiB here), where a client reading on would take without end.
//
// A host `fetch` whose answers have no body stream is still read (whole).

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, test } from 'node:test';

import { InvalidResponseError, MemoryStore, TokenClient } from 'freshtoken';

const MiB = 1024 * 1024;

/**
 * A token endpoint answering 200 with a body that never ends: 16 KiB chunks,
 * each written once the last one drained. `closed` resolves with the bytes
 * written when the client's connection closes.
 */
async function endlessEndpoint(headers = {}) {
  let written = 0;
  let resolveClosed;
  const closed = new Promise((resolve) => { resolveClosed = resolve; });
  const chunk = Buffer.alloc(16 * 1024, 0x20);
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.write('{"access_token":"');
      const pump = () => {
        while (!res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return;
        }
      };
      res.on('drain', pump);
      res.on('close', () => resolveClosed(written));
      pump();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    tokenEndpoint: `http://127.0.0.1:${server.address().port}/connect/token`,
    closed,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

async function refreshAgainst(tokenEndpoint, extra = {}) {
  const client = new TokenClient({ tokenEndpoint, clientId: 'c', clientSecret: 's', timeoutMs: 10_000, ...extra });
  const session = client.session('u1', new MemoryStore());
  await session.seed({ refreshToken: 'rt-1' });
  return session.refresh();
}

/**
 * The global fetch, with each answer's body behind a stream that hands out
 * only what its reader asks for (highWaterMark 0), counting the bytes, and
 * passes a cancel on to the real body.
 */
function countingFetch() {
  const seen = { pulled: 0, cancelled: false };
  const fetch = async (url, init) => {
    const response = await globalThis.fetch(url, init);
    const reader = response.body.getReader();
    const body = new ReadableStream({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
        } else {
          seen.pulled += value.length;
          controller.enqueue(value);
        }
      },
      cancel(reason) {
        seen.cancelled = true;
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { fetch, seen };
}

describe('the response cap holds while reading', () => {
  for (const [label, headers, mostPulled] of [
    ['an endless chunked 200', {}, 256 * 1024],
    ['an endless 200 that declares 1 GiB', { 'content-length': String(1024 * MiB) }, 0],
  ]) {
    test(`${label}: invalid_response, the stream cancelled, the connection closed`, async () => {
      const endpoint = await endlessEndpoint(headers);
      const { fetch, seen } = countingFetch();
      try {
        await assert.rejects(refreshAgainst(endpoint.tokenEndpoint, { fetch }), (err) => err instanceof InvalidResponseError
          && err.code === 'invalid_response' && err.status === 200);
        assert.ok(seen.pulled <= mostPulled, `the transport pulled ${seen.pulled} bytes`);
        if (mostPulled > 0) assert.ok(seen.pulled > 64 * 1024, 'it read up to the cap');
        assert.ok(seen.cancelled, 'the body stream was cancelled');
        const written = await endpoint.closed;
        assert.ok(written < 16 * MiB, `the server wrote ${written} bytes before the connection closed`);
      } finally {
        await endpoint.close();
      }
    });

    test(`${label}, through the global fetch: the connection closes`, async () => {
      const endpoint = await endlessEndpoint(headers);
      try {
        await assert.rejects(refreshAgainst(endpoint.tokenEndpoint), InvalidResponseError);
        const written = await endpoint.closed;
        assert.ok(written < 16 * MiB, `the server wrote ${written} bytes before the connection closed`);
      } finally {
        await endpoint.close();
      }
    });
  }

  test('a host fetch whose answer has no body stream is read whole', async () => {
    const answer = JSON.stringify({ access_token: 'at-2', token_type: 'Bearer', expires_in: 900, refresh_token: 'rt-2' });
    const fetch = async () => ({
      status: 200,
      headers: new Headers({ 'content-type': 'application/json' }),
      body: null,
      arrayBuffer: async () => new TextEncoder().encode(answer).buffer,
    });
    const info = await refreshAgainst('http://127.0.0.1:9/connect/token', { fetch });
    assert.equal(info.accessToken, 'at-2');
  });
});
