// 'freshtoken/jwt': an alias of 'freshtoken' (kept for existing imports);
// private_key_jwt (TokenClientOptions.privateKeyPem, fromCredentialsJson
// with a certificate) is in the main entry.
export * from './index.js';
