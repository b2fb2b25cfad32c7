/**
 * What JSR users get: only the files `deno publish` ships, fetched over http
 * into an empty cache, must load the shim and make a syscall, with no Zig and
 * no build step (issue 2).
 */

import assert from "node:assert/strict";
import { decoder, runDeno, tempDir } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;

async function publishedFiles(): Promise<string[]> {
  const out = await runDeno(["publish", "--dry-run", "--allow-dirty"], { cwd: root });
  const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.equal(out.code, 0, text);
  return [...text.matchAll(/file:\/\/(\/\S+)/g)].map((m) => m[1].slice(root.length - 1));
}

Deno.test("the published files alone, over http from a fresh cache, load the shim without Zig", async () => {
  const files = new Set(await publishedFiles());
  assert.ok(
    files.has("/mod.ts") && files.has("/ffi/shim_x86_64.generated.ts"),
    [...files].join(" "),
  );
  const served: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    served.push(path);
    if (!files.has(path)) return new Response("not published", { status: 404 });
    return new Response(await Deno.readFile(`${root}${path.slice(1)}`), {
      headers: { "content-type": "application/typescript" },
    });
  });
  try {
    using dir = tempDir();
    const url = `http://127.0.0.1:${server.addr.port}/mod.ts`;
    const script = `import { Checksum, Fd } from "${url}";
      const [r, w] = Fd.pipe();
      await w.writable().getWriter().write(new TextEncoder().encode("hi"));
      console.log(r.kind, new Checksum("xxh64").update(new TextEncoder().encode("hello")).digest());`;
    const out = await runDeno(["eval", "--quiet", script], {
      cwd: dir.path,
      clearEnv: true,
      env: {
        DENO_DIR: `${dir.path}/deno`,
        XDG_CACHE_HOME: `${dir.path}/cache`,
        HOME: dir.path,
        PATH: "/usr/bin:/bin",
      },
    });
    assert.equal(
      decoder.decode(out.stdout).trim(),
      "pipe 26c7827d889f6da3",
      decoder.decode(out.stderr),
    );
    assert.ok(served.every((p) => files.has(p)), `asked for unpublished files: ${served}`);
    assert.equal([...Deno.readDirSync(`${dir.path}/cache/onecopy`)].length, 1);
  } finally {
    await server.shutdown();
  }
});
