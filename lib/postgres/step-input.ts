/**
 * What a coordinated step is given, checked before anything happens (a refusal changes nothing), and
 * the in-process order of steps: two steps that share a store run one after the other, in call
 * order (each takes all its stores at once, at the call), except a step made inside a holder, which
 * does not wait for its place (see exclusive).
 */
import { CpError } from '../errors.js';
import type { Store } from '../store/store.js';
import { insideHolder } from '../store/hold.js';

/** The stores of a step, refused with EINVAL (bad input), ECLOSED (a closed store) or EPREPARED (a store prepared by someone else). */
export function validateStep(stores: unknown, fn: unknown): Store[] {
  if (!Array.isArray(stores) || stores.length === 0) throw new CpError('EINVAL', 'check needs a non-empty array of stores');
  if (typeof fn !== 'function') throw new CpError('EINVAL', 'check needs a function fn(client)');
  const seen = new Set<string>();
  for (const s of stores as unknown[]) {
    const st = s as Store;
    if (!st || typeof st !== 'object' || typeof st.prepare !== 'function' || typeof st.id !== 'string') {
      throw new CpError('EINVAL', 'check takes stores made by openStore');
    }
    if (seen.has(st.id)) throw new CpError('EINVAL', `store ${st.dir} is named twice in one step`);
    seen.add(st.id);
    st.assertCallable();
  }
  return [...(stores as Store[])];
}

/** The last step (settled or not) of each store in this process. */
const tails = new WeakMap<Store, Promise<void>>();

/**
 * Run `fn` once every earlier step sharing a store with `list` has settled; at once inside a holder
 * (a step in the fn of a transaction on another store): an earlier step may wait for that holder's
 * stores, and the holder for this step. The holds (store/hold.ts) still keep the steps apart.
 */
export async function exclusive<T>(list: readonly Store[], fn: () => Promise<T>): Promise<T> {
  const before = insideHolder() ? [] : list.map((s) => tails.get(s));
  let done!: () => void;
  const mine = new Promise<void>((r) => { done = r; });
  for (const s of list) tails.set(s, mine);
  try {
    await Promise.all(before);
    return await fn();
  } finally {
    done();
    for (const s of list) if (tails.get(s) === mine) tails.delete(s);
  }
}
