/**
 * Web streams at the edges of a fan-out, each behind a private pipe so the
 * shim's loop sees only fds:
 * - a `ReadableStream` / `AsyncIterable` source is pumped into a pipe: that
 *   write() is the one copy that makes the bytes stable; the loop tee()s from
 *   the pipe as from any pipe source. The stream is read only while the pipe
 *   has room, so it goes as fast as the slowest destination drains.
 * - a `WritableStream` destination is a pipe the loop tee()s into (no copy for
 *   the others); its read end is drained here into `writer.write()`. Its
 *   backpressure fills that pipe, which holds the stage back like any slow
 *   destination; its error fails it alone.
 * Both run beside the loop's batches (the kernel pipe is the only thing they
 * share), and wake the loop when they fail so it returns at once.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { asError, hasCode } from "../ffi/errors.ts";
import { type Fd, ownPipe, waitMs } from "./fd.ts";
import { describeValue } from "./specs.ts";
import { MiB } from "./units.ts";

/** How long a busy drain runs before it lets timers and I/O in. */
const yieldMs = 10;

/** The most one read from a WritableStream's pipe takes (a fresh buffer each: the writer may keep it). */
const maxChunk = MiB;

/** Resolves after `ms` (a bound on how long stopping waits for a stuck stream). */
function within(ms: number, work: Promise<unknown>): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work,
    new Promise((resolve) => (timer = setTimeout(resolve, ms))),
  ]).finally(() => clearTimeout(timer));
}

/** A stream source pumped into a private pipe; `fd` is the pipe's read end, for the loop. */
export class StreamSource {
  /** The pipe's read end: the fan-out's source. */
  readonly fd: Fd;
  readonly #w: Fd;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #stopped = false;
  /** Why the stream failed, once it has. */
  error?: Error;
  /** Called when the stream fails (wakes the loop). */
  onFail: () => void = () => {};

  constructor(stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>, pipeSize: number) {
    const label = stream instanceof ReadableStream ? "ReadableStream" : "async iterable";
    [this.fd, this.#w] = ownPipe(pipeSize, label);
    // Last: once the reader is taken the stream is locked, so nothing may fail after.
    const readable = stream instanceof ReadableStream ? stream : ReadableStream.from(stream);
    this.#reader = readable.getReader();
  }

  /** Starts pumping (it ends by itself, or at `stop()`). */
  start(): void {
    void this.#pump();
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        const { done, value } = await this.#reader.read();
        if (this.#stopped) return;
        if (done) break;
        if (!(value instanceof Uint8Array)) {
          throw new TypeError(`a chunk is ${describeValue(value)}, not a Uint8Array`);
        }
        await this.#write(value);
      }
      this.#w.close(); // the loop sees the end of the stream: no writer left, pipe drained
    } catch (err) {
      if (this.#stopped) return;
      this.error = new Error(`source stream: ${asError(err).message}`, { cause: err });
      this.onFail();
    }
  }

  /** Writes a whole chunk, waiting (off the event loop) while the pipe is full. */
  async #write(chunk: Uint8Array): Promise<void> {
    for (let off = 0; off < chunk.length && !this.#stopped;) {
      try {
        off += raw.write(this.#w.fd, chunk.subarray(off));
        continue;
      } catch (err) {
        if (!hasCode(err, "EAGAIN")) throw err;
      }
      await raw.pollAsync([{ fd: this.#w.fd, events: raw.POLLOUT }], waitMs);
    }
  }

  /**
   * Stops pumping and releases the stream; `reason`, if given, cancels it.
   * Closes both ends. The pump is not waited for: it may be in a worker
   * thread's poll for room (up to `waitMs`), and once it is back it sees
   * `#stopped` before it writes again (a closed end would throw, which is caught).
   */
  async stop(reason?: unknown): Promise<void> {
    this.#stopped = true;
    await within(2 * waitMs, this.#reader.cancel(reason).catch(() => {}));
    this.#reader.releaseLock(); // the caller may look at the stream again
    this.#w.close();
    this.fd.close();
  }
}

/** A WritableStream destination: `fd` is a pipe the loop tee()s into, drained into the writer. */
export class StreamDestination {
  /** The pipe's write end: the destination the loop sees. */
  readonly fd: Fd;
  readonly #r: Fd;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #draining: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Bytes the writer has accepted (its `write()` resolved). */
  bytes = 0;
  /** Why the writer failed, once it has. */
  error?: Error;
  /** Called when the writer fails (wakes the loop, which then drops this destination). */
  onFail: () => void = () => {};

  constructor(stream: WritableStream<Uint8Array>, label: string, pipeSize: number) {
    [this.#r, this.fd] = ownPipe(pipeSize, label);
    // Last: once the writer is taken the stream is locked (a failed pipe, say
    // out of fds, must leave the caller's stream usable).
    this.#writer = stream.getWriter();
  }

  /** Starts draining. */
  start(): void {
    this.#draining = this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      let yielded = performance.now();
      for (;;) {
        const chunk = this.#take();
        if (chunk === null) break; // the loop is done and the pipe is empty
        if (chunk === undefined) {
          if (this.#stopped) return;
          await raw.pollAsync([{ fd: this.#r.fd, events: raw.POLLIN }], waitMs);
          yielded = performance.now();
          continue;
        }
        await this.#writer.write(chunk);
        this.bytes += chunk.length;
        // A synchronous sink resolves write() at once (a microtask): while the
        // pipe keeps bytes, timers and I/O would never run. Let them, every ~10 ms.
        if (performance.now() - yielded > yieldMs) {
          await new Promise((resume) => setTimeout(resume, 0));
          yielded = performance.now();
        }
      }
      await this.#writer.close();
    } catch (err) {
      if (this.#stopped) return;
      this.error = asError(err);
      this.#writer.abort(err).catch(() => {});
      this.onFail();
    }
  }

  /**
   * The next chunk from the pipe, in a fresh buffer (the writer may keep it):
   * undefined when there is nothing yet, null at the end (no writer, empty).
   */
  #take(): Uint8Array | null | undefined {
    const queued = raw.fionread(this.#r.fd);
    const buf = new Uint8Array(Math.max(1, Math.min(queued, maxChunk)));
    try {
      const n = raw.read(this.#r.fd, buf);
      return n === 0 ? null : buf.subarray(0, n);
    } catch (err) {
      if (hasCode(err, "EAGAIN")) return undefined;
      throw err;
    }
  }

  /**
   * The loop is done with this destination: closes the pipe's write end and
   * waits until the writer has taken everything and closed.
   */
  async finish(): Promise<void> {
    this.fd.close();
    await this.#draining;
    this.#writer.releaseLock();
    this.#r.close();
  }

  /** Gives up: aborts the writer with `reason` and closes both ends. */
  async stop(reason: unknown): Promise<void> {
    if (!this.#stopped && !this.error) this.#writer.abort(reason).catch(() => {});
    this.#stopped = true;
    await within(2 * waitMs, this.#draining);
    this.#writer.releaseLock();
    this.fd.close();
    this.#r.close();
  }
}

/** The web streams at the edges of one fan-out: its source, and its destinations by their pipe's Fd. */
export class Streams {
  source?: StreamSource;
  readonly dests = new Map<Fd, StreamDestination>();

  /** Starts pumping and draining; `wake` ends the loop's batch when one of them fails. */
  start(wake: () => void): void {
    for (const side of [this.source, ...this.dests.values()]) {
      if (!side) continue;
      side.onFail = wake;
      side.start();
    }
  }

  #ended = false;

  /**
   * Ends every stream, once. With no `failure` (the source was read to its
   * end), a writer whose destination got every byte is closed, and one cut
   * short (`cutShort` gives its error: its own, or `stopped`) is aborted with
   * that error. With a `failure`, the source is cancelled and every writer
   * aborted with it.
   */
  async end(failure?: unknown, cutShort: (fd: Fd) => Error | undefined = () => undefined) {
    if (this.#ended) return;
    this.#ended = true;
    await this.source?.stop(failure);
    await Promise.all(
      [...this.dests].map(([fd, d]) => {
        const reason = failure ?? cutShort(fd);
        return reason === undefined ? d.finish() : d.stop(reason);
      }),
    );
  }
}
