/**
 * A strict command-line parser with the shape of `node:util` `parseArgs` and
 * the rules of GNU `getopt_long`, for the forms onecopy takes: `--name`,
 * `--name=value`, `--name value`, unambiguous prefixes of long names (`--app`),
 * grouped short flags (`-ai`), options after operands, `--` and `-` (a
 * positional). Its own because importing `node:util` cost ~18 ms of every CLI
 * start (measured), and because `onecopy tee` must take what GNU tee takes.
 *
 * @module
 */

import { quote } from "./quote.ts";

/**
 * One option: a string or a boolean, maybe with a one-letter alias, maybe
 * repeatable. A string option with `optional` takes its value only as
 * `--name=value`; given bare (or by its short letter) it is `optional`.
 */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  optional?: string;
  /**
   * Only its full name selects it, never a prefix: for options a command adds
   * to a standard tool's, so that a prefix the tool rejects (`tee --p`) stays
   * an error rather than meaning the addition.
   */
  exact?: boolean;
}

/** The parsed values, typed from the option specs. */
export type Values<O extends Record<string, OptionSpec>> = {
  [K in keyof O]?: O[K]["type"] extends "string" ? O[K]["multiple"] extends true ? string[]
    : string
    : boolean;
};

/** A command line that breaks the rules; the message is one line, in getopt's words. */
export class ArgsError extends Error {
  override name = "ArgsError";
}

/** The long option `name` stands for: itself, or the one option it is a prefix of. */
function longName(name: string, options: Record<string, OptionSpec>): string {
  if (Object.hasOwn(options, name)) return name;
  const matches = Object.keys(options).filter((o) =>
    name !== "" && o.startsWith(name) && !options[o].exact
  );
  if (matches.length === 1) return matches[0];
  if (matches.length === 0) throw new ArgsError(`unrecognized option ${quote(`--${name}`)}`);
  const possibilities = matches.map((m) => `'--${m}'`).join(" ");
  throw new ArgsError(`option ${quote(`--${name}`)} is ambiguous; possibilities: ${possibilities}`);
}

/**
 * Parses `args` against `options`; throws `ArgsError` on anything unknown or
 * malformed. Options may follow operands (GNU permutes) unless
 * `stopAtPositional` (POSIXLY_CORRECT) is set.
 */
export function parseArgs<const O extends Record<string, OptionSpec>>(config: {
  args: string[];
  options: O;
  allowPositionals?: boolean;
  stopAtPositional?: boolean;
}): { values: Values<O>; positionals: string[] } {
  const { args, options } = config;
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  const shorts = new Map(
    Object.entries(options).flatMap(([name, o]) => (o.short ? [[o.short, name]] : [])),
  );
  const set = (name: string, value: string | boolean) => {
    const spec = options[name];
    if (spec.multiple) values[name] = [...((values[name] as string[]) ?? []), value as string];
    else values[name] = value;
  };
  const positional = (arg: string) => {
    if (!config.allowPositionals) throw new ArgsError(`unexpected argument ${quote(arg)}`);
    positionals.push(arg);
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      args.slice(i + 1).forEach(positional);
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = longName(arg.slice(2, eq < 0 ? undefined : eq), options);
      const spec = options[name];
      if (spec.type === "boolean") {
        if (eq >= 0) throw new ArgsError(`option '--${name}' doesn't allow an argument`);
        set(name, true);
      } else if (eq >= 0) {
        set(name, arg.slice(eq + 1));
      } else if (spec.optional !== undefined) {
        set(name, spec.optional);
      } else {
        if (i + 1 >= args.length) throw new ArgsError(`option '--${name}' requires an argument`);
        set(name, args[++i]);
      }
    } else if (arg.startsWith("-") && arg !== "-") {
      for (const letter of arg.slice(1)) {
        const name = shorts.get(letter);
        if (!name) throw new ArgsError(`invalid option -- ${quote(letter)}`);
        const spec = options[name];
        if (spec.type === "boolean") set(name, true);
        else if (spec.optional !== undefined) set(name, spec.optional);
        else throw new ArgsError(`option -${letter} needs a value: use --${name}=VALUE`);
      }
    } else if (config.stopAtPositional) {
      args.slice(i).forEach(positional);
      break;
    } else {
      positional(arg);
    }
  }
  return { values: values as Values<O>, positionals };
}

/**
 * The one of `choices` that `value` is, or is an unambiguous prefix of (as
 * coreutils' argmatch: `warn-` is `warn-nopipe`, `warn` is `warn`). Throws
 * `ArgsError` naming the valid choices.
 */
export function argmatch<const C extends string>(
  option: string,
  value: string,
  choices: readonly C[],
): C {
  if ((choices as readonly string[]).includes(value)) return value as C;
  const matches = choices.filter((c) => c.startsWith(value));
  if (matches.length === 1) return matches[0];
  const valid = choices.map((c) => `'${c}'`).join(", ");
  const why = matches.length ? "ambiguous" : "invalid";
  throw new ArgsError(`${why} argument ${quote(value)} for '${option}' (valid: ${valid})`);
}
