/**
 * Every example in the docs runs, and leaves nothing behind (issue 11). This
 * is the one place `deno task test` runs them (the task has no `--doc` of its
 * own: they would run twice).
 */

import assert from "node:assert/strict";
import { decoder, runDeno, tempDir } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
/** Where the examples are: the published modules and the README. */
const documented = ["mod.ts", "lib/", "ffi/", "cli/", "README.md"];

Deno.test("deno test --doc runs every example, and they leave no file in the temp dir", async () => {
  using tmp = tempDir();
  const out = await runDeno(["test", "--allow-all", "--doc", "--quiet", ...documented], {
    cwd: root,
    env: { TMPDIR: tmp.path, NO_COLOR: "1" },
    signal: AbortSignal.timeout(120_000), // an example that never returns fails, not hangs
  });
  const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.equal(out.code, 0, text);
  const ran = text.match(/#\d+-\d+\.ts \.\.\. ok/g) ?? [];
  assert.ok(ran.length >= 10, `only ${ran.length} examples ran:\n${text}`);
  const left = [...Deno.readDirSync(tmp.path)].map((e) => e.name);
  assert.deepEqual(left, [], "examples must clean up after themselves");
});

Deno.test("no example writes to a fixed path in /tmp", () => {
  const files = [
    "mod.ts",
    "README.md",
    ...["lib", "ffi", "cli"].flatMap((dir) =>
      [...Deno.readDirSync(`${root}${dir}`)]
        .filter((e) => e.name.endsWith(".ts") && !e.name.endsWith(".generated.ts"))
        .map((e) => `${dir}/${e.name}`)
    ),
  ];
  for (const file of files) {
    const text = Deno.readTextFileSync(`${root}${file}`);
    for (const block of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
      assert.doesNotMatch(block[1], /["'`]\/tmp\//, `${file}: use Deno.makeTempDir() instead`);
    }
  }
});
