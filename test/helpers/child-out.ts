/**
 * Lines a child process prints for its parent's oracle (BASE, ACK <k> <epoch>, FAIL ...), when the
 * parent may SIGKILL it at any moment. Await them: the child must not go on until its line has left
 * the process.
 *
 * Why: a child's stdout with stdio 'pipe' is a Unix socket pair (libuv), non-blocking. While the
 * parent does not read it (its event loop busy or starved on a loaded machine: the same stall that
 * makes its kill timer late), the socket's send buffer fills after about 278 short lines (every
 * write is one buffer of ~768 bytes of kernel accounting against net.core.wmem_default, 208 KiB), and
 * from then on process.stdout.write() queues the line inside the child and returns at once. A
 * SIGKILL throws that queue away: the child had gone on checking past ACKs its parent never sees,
 * and the oracle, which allows one durable unacknowledged epoch, finds dozens (a torture run saw
 * 278 lines, ACK 277, and a store that had durably reached check 312). The write callback runs once
 * the bytes are in the kernel, where they outlive the writer: a child that awaits it never runs
 * ahead of what its parent can read.
 */
export function say(line: string): Promise<void> {
  return new Promise<void>((resolve) => {
    // an error (EPIPE: the parent is gone) ends nothing here; the parent's oracle no longer matters
    process.stdout.write(line + '\n', () => resolve());
  });
}

/** say(line), then exit with `code` once the line has left the process (process.exit drops queued writes). */
export function sayAndExit(line: string, code: number): Promise<never> {
  return new Promise<never>(() => {
    process.stdout.write(line + '\n', () => process.exit(code));
  });
}
