// Fake time for the client's `now`/`sleep` options: it only moves when the
// test (or a recorded sleep) moves it, so backoff is observable at once.

/** `{ ms, sleeps, now, sleep, advance, set }`, starting at `start` (ms). */
export function fakeTime(start = Math.floor(Date.now() / 1000) * 1000) {
  const time = {
    ms: start,
    sleeps: [],
    now: () => time.ms,
    sleep: async (ms) => { time.sleeps.push(ms); time.ms += ms; },
    advance: (ms) => { time.ms += ms; },
    set: (ms) => { time.ms = ms; },
  };
  return time;
}
