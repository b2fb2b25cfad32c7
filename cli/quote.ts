/**
 * How text from the command line stands in a one-line message: an error is
 * one line whatever the user typed (a newline in an option value, say).
 *
 * @module
 */

import { printable } from "../lib/internal.ts";

/**
 * A value as a message quotes it: `'fast'`; or, when it holds a control
 * character, JSON-quoted with escapes (`"x\ny"`), as paths are printed.
 */
export function quote(value: string): string {
  const shown = printable(value);
  return shown === value ? `'${value}'` : shown;
}

/**
 * `text` with every control character still in it escaped (`\n`, `\u001b`):
 * the last guard of the one-line rule, for messages built elsewhere.
 */
export function oneLine(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1));
}
