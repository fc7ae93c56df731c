// 'freshtoken/jwt': the same API as 'freshtoken', built with private_key_jwt
// client assertions (TokenClientOptions.privateKeyPem, fromCredentialsJson
// with a certificate).
export * from './index.js';
