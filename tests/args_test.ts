/** The CLI's argument parser (cli/args.ts). */

import assert from "node:assert/strict";
import { argmatch, ArgsError, parseArgs } from "../cli/args.ts";

const options = {
  to: { type: "string", multiple: true },
  method: { type: "string" },
  append: { type: "boolean", short: "a" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  multi: { type: "string", short: "m", optional: "all" },
} as const;

Deno.test("args: every accepted form", () => {
  const { values, positionals } = parseArgs({
    args: ["in.bin", "--to", "a", "--to=-", "--method=copy", "-aq", "--json", "-", "--", "--x"],
    options,
    allowPositionals: true,
  });
  assert.deepEqual(values, {
    to: ["a", "-"],
    method: "copy",
    append: true,
    quiet: true,
    json: true,
  });
  assert.deepEqual(positionals, ["in.bin", "-", "--x"]);
});

Deno.test("args: a value may start with a dash; the last of a single option wins", () => {
  const { values } = parseArgs({ args: ["--method", "-x", "--method", "y"], options });
  assert.equal(values.method, "y");
});

Deno.test("args: one-line errors for what it cannot take", () => {
  const cases: [string[], string][] = [
    [["--frob"], "unrecognized option '--frob'"],
    [["-z"], "invalid option -- 'z'"],
    [["--method"], "option '--method' requires an argument"],
    [["--json=yes"], "option '--json' doesn't allow an argument"],
    [["stray"], "unexpected argument 'stray'"],
    [["--toString"], "unrecognized option '--toString'"],
    [["--jso", "--m"], "option '--m' is ambiguous; possibilities: '--method' '--multi'"],
    // A control character in what the user typed is escaped: the message stays one line.
    [["--fr\nob"], `unrecognized option "--fr\\nob"`],
    [["-\x1b"], `invalid option -- "\\u001b"`],
    [["st\nray"], `unexpected argument "st\\nray"`],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseArgs({ args, options }), (err) => {
      assert.ok(err instanceof ArgsError);
      assert.equal(err.message, message);
      return true;
    });
  }
});

Deno.test("args: getopt_long's forms: prefixes, optional values, grouped shorts, permutation", () => {
  const parsed = parseArgs({
    args: ["a", "--app", "--meth", "copy", "b", "--mu", "-qm", "--", "-q"],
    options,
    allowPositionals: true,
  });
  assert.deepEqual(parsed.values, { append: true, method: "copy", multi: "all", quiet: true });
  assert.deepEqual(parsed.positionals, ["a", "b", "-q"]);
  assert.equal(parseArgs({ args: ["--multi=x"], options }).values.multi, "x");
  // --multi takes its value only after '=': the next word is an operand.
  assert.deepEqual(
    parseArgs({ args: ["--multi", "x"], options, allowPositionals: true }).positionals,
    ["x"],
  );
  // POSIXLY_CORRECT: the first operand ends the options.
  const posix = parseArgs({
    args: ["-a", "f", "-q"],
    options,
    allowPositionals: true,
    stopAtPositional: true,
  });
  assert.deepEqual(posix, { values: { append: true }, positionals: ["f", "-q"] });
});

Deno.test("args: argmatch takes a value or an unambiguous prefix of one", () => {
  const modes = ["warn", "warn-nopipe", "exit", "exit-nopipe"] as const;
  assert.equal(argmatch("--output-error", "warn", modes), "warn");
  assert.equal(argmatch("--output-error", "warn-", modes), "warn-nopipe");
  assert.equal(argmatch("--output-error", "exit-nop", modes), "exit-nopipe");
  for (const [value, why] of [["e", "ambiguous"], ["", "ambiguous"], ["x", "invalid"]]) {
    assert.throws(
      () => argmatch("--output-error", value, modes),
      new RegExp(`^ArgsError: ${why} argument '${value}' for '--output-error'`),
    );
  }
  assert.throws(
    () => argmatch("--output-error", "x\ny", modes),
    /^ArgsError: invalid argument "x\\ny" for '--output-error'/,
  );
});

Deno.test("args: an exact option is selected by its full name only, never by a prefix", () => {
  const options = {
    append: { type: "boolean" },
    progress: { type: "boolean", exact: true },
    print: { type: "boolean" },
  } as const;
  const parse = (args: string[]) => parseArgs({ args, options }).values;
  assert.deepEqual(parse(["--progress"]), { progress: true });
  // "--pr" would be ambiguous among all three; the exact one does not count.
  assert.deepEqual(parse(["--pr"]), { print: true });
  assert.throws(() => parseArgs({ args: ["--prog"], options }), (e) => {
    assert.ok(e instanceof ArgsError);
    assert.equal(e.message, "unrecognized option '--prog'");
    return true;
  });
});
