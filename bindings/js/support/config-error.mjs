// An assert.throws / assert.rejects validator for freshtoken's ConfigError.

import assert from 'node:assert/strict';
import { ConfigError } from 'freshtoken';

/** A ConfigError (code 'config') naming the parameter or option `field`, its message matching `message`. */
export const configError = (field, message) => (e) => {
  assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
  assert.equal(e.code, 'config');
  assert.equal(e.field, field);
  assert.match(e.message, message);
  return true;
};
