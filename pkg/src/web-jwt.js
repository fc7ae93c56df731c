// 'freshtoken/jwt' (web runtimes): an alias of 'freshtoken', kept so that
// existing imports work. private_key_jwt is in the main entry: WebCrypto signs.
export * from './web.js';
