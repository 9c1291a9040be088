/**
 * An IO that runs every call through `around(call, args, next)`: tests record, count or fail calls
 * without each writing its own Proxy. `next()` performs the real call with the same arguments (all of
 * them: open's third argument, `{ noFollow }` for O_NOFOLLOW, reaches the base IO unchanged).
 */
import * as fs from 'node:fs';
import { nodeIO, type IO } from '../../lib/io.js';

export type Around = (call: keyof IO, args: unknown[], next: () => Promise<unknown>) => Promise<unknown>;

export function interceptIO(around: Around, base: IO = nodeIO): IO {
  return new Proxy(base, {
    get(t, k: string) {
      const f = (t as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[k];
      if (typeof f !== 'function') return f;
      return (...args: unknown[]) => around(k as keyof IO, args, () => f.apply(t, args));
    },
  }) as IO;
}

/** An error as node:fs would throw it, with `code`. */
export const injected = (code: string, call: string): Error => Object.assign(new Error(`injected ${code} in ${call}`), { code });

/**
 * The path a just-opened fd names, for recording: the real path behind an fd-relative one
 * (IO.dirRef's /proc/self/fd/N/name, which names.ts uses to reach store files), else `opened`.
 */
export function openedPath(fd: number, opened: string): string {
  if (!opened.startsWith('/proc/self/fd/')) return opened;
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return opened;
  }
}
