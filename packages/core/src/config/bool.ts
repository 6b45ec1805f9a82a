/**
 * Accelerate's boolean spellings (`str_to_bool`): the one boolean parser of
 * the code base. Environment variables, launch flags and the dict sections of
 * config files all read booleans through it.
 * @module
 */
import { ConfigError, showValue } from './errors.js';

/** Strings Accelerate's `str_to_bool` reads as true (compared lower-cased). */
export const BOOL_TRUE_STRINGS: readonly string[] = ['y', 'yes', 't', 'true', 'on', '1'];
/** Strings Accelerate's `str_to_bool` reads as false (compared lower-cased). */
export const BOOL_FALSE_STRINGS: readonly string[] = ['n', 'no', 'f', 'false', 'off', '0'];

/**
 * Parses a boolean the way Accelerate's `str_to_bool` does: `y, yes, t, true,
 * on, 1` are true and `n, no, f, false, off, 0` false, in any case; anything
 * else throws a {@link ConfigError} naming `name` (the variable) and the value.
 */
export function parseBoolEnv(name: string, value: string): boolean {
  const b = strToBoolOrUndefined(value);
  if (b !== undefined) return b;
  const expected = `a boolean: one of ${BOOL_TRUE_STRINGS.join(', ')} (true) or ${BOOL_FALSE_STRINGS.join(', ')} (false)`;
  throw new ConfigError('the environment', [
    {
      kind: 'invalid-value',
      key: name,
      value,
      expected,
      message: `${name}=${showValue(value)} is not ${expected}`,
    },
  ]);
}


/** Accelerate's `str_to_bool` on text: true, false, or undefined when the text is none of its spellings. */
export function strToBoolOrUndefined(text: string): boolean | undefined {
  const lower = String(text).trim().toLowerCase();
  if (BOOL_TRUE_STRINGS.includes(lower)) return true;
  if (BOOL_FALSE_STRINGS.includes(lower)) return false;
  return undefined;
}
