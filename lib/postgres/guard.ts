/**
 * The client a coordinated step hands its fn: the step's own pooled client, behind a revocable proxy
 * that refuses what would end or leave the step's transaction. A statement that begins with COMMIT,
 * END, ROLLBACK (but not ROLLBACK TO), ABORT, BEGIN, START, PREPARE TRANSACTION, COMMIT PREPARED or
 * ROLLBACK PREPARED is refused (EINVAL, the statement is not sent; also as a later statement of a
 * multi-statement string) and so are release(), end() and connect(); SAVEPOINT, RELEASE and
 * ROLLBACK TO are fine. A refusal dooms the step even when fn catches it. What the proxy cannot see
 * (a COMMIT inside a DO block or a function) the step catches afterwards: the transaction id must
 * be the one the step began with. Once fn has settled
 * the proxy is revoked: a client kept by fn cannot reach the pooled connection any more.
 */
import { CpError } from '../errors.js';

const LEADING_COMMENTS = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/;
const CONTROL = /^(?:commit|end|abort|begin|start|prepare\s+transaction|rollback(?!\s+(?:work\s+|transaction\s+)?to\b))\b/i;

/** The statement's text, for the forms pg's query() takes: a string, a config object or a Submittable with `text`. */
function textOf(arg: unknown): string | null {
  if (typeof arg === 'string') return arg;
  const text = arg && typeof arg === 'object' ? (arg as { text?: unknown }).text : undefined;   // read once
  return typeof text === 'string' ? text : null;
}

/** The end of the quoted part or comment that starts at `i` (or i itself when none starts there). */
function skipQuoted(sql: string, i: number): number {
  const c = sql[i];
  const until = (close: string, from: number): number => {
    const j = sql.indexOf(close, from);
    return j < 0 ? sql.length : j + close.length;
  };
  if (c === "'" || c === '"') {
    // a doubled quote inside is part of the literal: the scan resumes at it and skips it as a new one
    return until(c, i + 1);
  }
  if (c === '-' && sql[i + 1] === '-') return until('\n', i + 2);
  if (c === '/' && sql[i + 1] === '*') return until('*/', i + 2);
  if (c === '$') {
    const tag = /^\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$/.exec(sql.slice(i));
    if (tag) return until(tag[0], i + tag[0].length);
  }
  return i;
}

/** The statements of a query string: split at the semicolons outside literals, identifiers, dollar quotes and comments. */
export function statements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < sql.length;) {
    const j = skipQuoted(sql, i);
    if (j > i) {
      i = j;
    } else if (sql[i] === ';') {
      out.push(sql.slice(start, i));
      start = ++i;
    } else {
      i++;
    }
  }
  out.push(sql.slice(start));
  return out;
}

/** The transaction-control keyword one of the string's statements begins with, or null. */
export function transactionControl(sql: string): string | null {
  for (const st of statements(sql)) {
    const m = CONTROL.exec(st.replace(LEADING_COMMENTS, ''));
    if (m) return m[0].split(/\s+/)[0]!.toUpperCase();
  }
  return null;
}

export interface Guarded<C> {
  client: C;
  /** What was refused (null while nothing was). */
  readonly misuse: string | null;
  revoke(): void;
}

/** Refuse a call: through its callback when it has one (pg's callback forms), else as a rejected promise. */
function refuse(args: unknown[], err: CpError): unknown {
  const cb = args[args.length - 1];
  if (typeof cb === 'function') {
    queueMicrotask(() => (cb as (e: Error) => void)(err));
    return undefined;
  }
  return Promise.reject(err);
}

export function guardClient<C extends object>(client: C): Guarded<C> {
  let misuse: string | null = null;
  const doom = (what: string): CpError => {
    misuse ??= what;
    return new CpError('EINVAL', `${what} inside a coordinated step is refused: the coordinator commits or rolls back the step's transaction itself; the step will be rolled back`);
  };
  const query = (...args: unknown[]): unknown => {
    const text = textOf(args[0]);
    const kw = text === null ? null : transactionControl(text);
    if (kw) return refuse(args, doom(`a ${kw} statement`));
    return (client as unknown as { query: (...a: unknown[]) => unknown }).query(...args);
  };
  const refused = (name: string) => (...args: unknown[]): unknown => {
    const err = doom(`client.${name}()`);
    if (name === 'release') throw err;
    return refuse(args, err);
  };
  const { proxy, revoke } = Proxy.revocable(client, {
    get(target, prop) {
      if (prop === 'query') return query;
      if (prop === 'release' || prop === 'end' || prop === 'connect') return refused(prop);
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
    set(target, prop, value) {
      return Reflect.set(target, prop, value, target);
    },
  });
  return {
    client: proxy,
    get misuse() {
      return misuse;
    },
    revoke,
  };
}
