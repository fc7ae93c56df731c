// Delivery of the core's events (issue 14). The wasm core hands each event,
// a plain object, to `dispatch` below while the refresh runs; everything
// here waits for the current turn to end (a microtask), so neither a slow
// nor a throwing handler touches the refresh. In Node every event is also
// published on diagnostics_channel `freshtoken:event` (node.js passes the
// channel), the way undici publishes its requests: APM tools subscribe
// without any code in the application.

/** The diagnostics_channel name the Node build publishes on. */
export const EVENT_CHANNEL = 'freshtoken:event';

/** Calls `onEvent(event)`, ignoring what it throws or rejects with. */
function call(onEvent, event) {
  try {
    const result = Reflect.apply(onEvent, undefined, [event]);
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      result.then(undefined, () => {});
    }
  } catch {
    // A handler's failure is its own: the refresh already went on.
  }
}

/**
 * The `dispatch(event, onEvent)` the wasm core calls for every event of a
 * client (`onEvent` is undefined when the client has none). `channel`: a
 * diagnostics_channel Channel (Node), or undefined.
 */
export function eventDispatch(channel) {
  return (event, onEvent) => {
    const publish = channel !== undefined && channel.hasSubscribers;
    if (!publish && typeof onEvent !== 'function') return;
    Object.freeze(event);
    queueMicrotask(() => {
      // publish never throws: diagnostics_channel reports a throwing
      // subscriber itself, as an 'uncaughtException' on the next tick (like
      // every channel), out of this library's reach. The READMEs say so.
      if (publish) channel.publish(event);
      if (typeof onEvent === 'function') call(onEvent, event);
    });
  };
}
