/** The CLI's argument parser (cli/args.ts). */

import assert from "node:assert/strict";
import { ArgsError, parseArgs } from "../cli/args.ts";

const options = {
  to: { type: "string", multiple: true },
  method: { type: "string" },
  append: { type: "boolean", short: "a" },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
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
    [["--frob"], "unknown option --frob"],
    [["-z"], "unknown option -z"],
    [["--method"], "option --method needs a value"],
    [["--json=yes"], "option --json takes no value"],
    [["stray"], "unexpected argument 'stray'"],
    [["--toString"], "unknown option --toString"],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseArgs({ args, options }), (err) => {
      assert.ok(err instanceof ArgsError);
      assert.equal(err.message, message);
      return true;
    });
  }
});
