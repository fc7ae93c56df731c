// What both entry points export besides the wasm classes.

export {
  FreshTokenError,
  ReauthorizationRequiredError,
  InvalidClientError,
  OAuthError,
  TransientError,
  NetworkError,
  TimeoutError,
  InvalidResponseError,
  StorageError,
  ConflictError,
  ConfigError,
} from './errors.js';
export { authorizedFetch, isUnauthenticated } from './authorized-fetch.js';
export { EVENT_CHANNEL } from './events.js';
