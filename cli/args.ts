/**
 * A strict command-line parser with the shape of `node:util` `parseArgs`, for
 * the few forms onecopy takes: `--name`, `--name=value`, `--name value`, `-a`,
 * repeatable options, `--` and `-` (stdin/stdout) as positionals. Its own
 * because importing `node:util` cost ~18 ms of every CLI start (measured).
 *
 * @module
 */

/** One option: a string or a boolean, maybe with a one-letter alias, maybe repeatable. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
}

/** The parsed values, typed from the option specs. */
export type Values<O extends Record<string, OptionSpec>> = {
  [K in keyof O]?: O[K]["type"] extends "string" ? O[K]["multiple"] extends true ? string[]
    : string
    : boolean;
};

/** A command line that breaks the rules; the message is one line. */
export class ArgsError extends Error {
  override name = "ArgsError";
}

/** Parses `args` against `options`; throws `ArgsError` on anything unknown or malformed. */
export function parseArgs<const O extends Record<string, OptionSpec>>(config: {
  args: string[];
  options: O;
  allowPositionals?: boolean;
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
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const spec = Object.hasOwn(options, name) ? options[name] : undefined;
      if (!spec) throw new ArgsError(`unknown option --${name}`);
      if (spec.type === "boolean") {
        if (eq >= 0) throw new ArgsError(`option --${name} takes no value`);
        set(name, true);
      } else if (eq >= 0) {
        set(name, arg.slice(eq + 1));
      } else {
        if (i + 1 >= args.length) throw new ArgsError(`option --${name} needs a value`);
        set(name, args[++i]);
      }
    } else if (arg.startsWith("-") && arg !== "-") {
      for (const letter of arg.slice(1)) {
        const name = shorts.get(letter);
        if (!name) throw new ArgsError(`unknown option -${letter}`);
        if (options[name].type !== "boolean") {
          throw new ArgsError(`option -${letter} needs a value: use --${name}=VALUE`);
        }
        set(name, true);
      }
    } else if (config.allowPositionals) {
      positionals.push(arg);
    } else {
      throw new ArgsError(`unexpected argument '${arg}'`);
    }
  }
  return { values: values as Values<O>, positionals };
}
