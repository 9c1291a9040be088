/**
 * The call queue: every store call runs after every call made before it, so calls take effect in
 * call order (awaited or not). It is also the gate every call passes: it refuses calls once close()
 * was called (ECLOSED) or the store failed (EREOPEN, ECOMPROMISED), and it holds that state.
 */
import { CpError, ioError } from '../errors.js';

export interface QueueDeps {
  dir: string;
  /** The writer's failure, if the flusher failed (the journal is then in an unknown state). */
  writerFailure: () => CpError | null;
  /** The last durable epoch, which recovery restores after a failure. */
  durableEpoch: () => number;
}

export class CallQueue {
  private tail: Promise<unknown> = Promise.resolve();
  /** No call is queued or running: a call that needs no I/O may run at once, keeping call order. */
  private idleNow = true;
  private failed: CpError | null = null;
  /** The store is closed (or, for tests, taken as crashed): nothing runs any more. */
  closed = false;
  /** close() was called: every later call is refused with ECLOSED (the final check covers those before). */
  closeCalled = false;

  constructor(private deps: QueueDeps) {}

  get idle(): boolean {
    return this.idleNow;
  }

  /** What failed the store (only reopening it is safe), or null. */
  get failure(): CpError | null {
    return this.failed;
  }

  /** What every earlier call leaves to wait on. */
  get settled(): Promise<unknown> {
    return this.tail;
  }

  /** At call time: refuses calls made after close() was called (ECLOSED), and on a failed store. */
  assertCallable(): void {
    if (this.closeCalled) throw new CpError('ECLOSED', `store ${this.deps.dir} is closed`);
    this.assertUsable();
  }

  assertUsable(): void {
    if (this.closed) throw new CpError('ECLOSED', `store ${this.deps.dir} is closed`);
    if (this.failed) throw this.failed;
  }

  /** When it is a call's turn: a flusher failure since fails the store, then the store must be usable. */
  admit(): void {
    const wf = this.deps.writerFailure();
    if (wf && !this.closed) this.fail(wf);
    this.assertUsable();
  }

  /** Run `fn` after every earlier call of this store: calls take effect in call order. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    this.idleNow = false;
    const p = this.tail.then(async () => {
      this.admit();
      try {
        return await fn();
      } catch (e) {
        // Whatever fails below (fs, the flusher), callers only ever see a CpError.
        throw e instanceof CpError ? e : ioError(e, 'cpfile');
      }
    });
    const settled = (): void => {
      if (this.tail === t) this.idleNow = true;
    };
    const t: Promise<unknown> = p.then(settled, settled);
    this.tail = t;
    return p;
  }

  /** A flusher failure leaves the journal in an unknown state: only reopening (recovery) is safe. */
  fail(err: CpError): CpError {
    if (!this.failed) {
      this.failed = err.code === 'ECOMPROMISED' ? err
        : new CpError('EREOPEN', `store ${this.deps.dir} must be reopened after an I/O failure (${err.code}: ${err.message}); recovery restores epoch ${this.deps.durableEpoch()}`, { cause: err });
    }
    return err;
  }

  /** The lock was lost. */
  compromised(err: CpError): void {
    if (!this.failed && !this.closed) this.failed = err;
  }
}
