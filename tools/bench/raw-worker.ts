/**
 * The thread floor (subject raw-worker): raw fs calls done in a worker thread. P1: the append +
 * fdatasync, one message each way, the worker polling its port between commits as cpfile's flusher
 * does (DEFAULT_FLUSHER_POLL_US): what any design pays that keeps fsync off the main thread, on this
 * machine: raw fs's latency plus two thread hand-offs, one of them to a main thread whose CPU went idle
 * while it waited. P2/P7: each write posted to the worker (a copy: the caller keeps its buffer), a
 * sync awaited at each checkpoint: the event-loop delay of a main thread that only hands bytes over
 * while another thread writes them and the kernel writes them back, on the same cores.
 */
import * as fs from 'node:fs';
import { Worker, MessageChannel, receiveMessageOnPort, workerData, isMainThread, type MessagePort } from 'node:worker_threads';
import { DEFAULT_FLUSHER_POLL_US } from '../../lib/flusher/protocol.js';

/** data: append + fdatasync, answered; append: append, not answered; sync: fdatasync, answered. */
type Msg = { data: Uint8Array } | { append: Uint8Array } | { sync: true } | { close: true };

/** The main thread's end: `commit(data)` appends and fdatasyncs `data` in the worker. */
export class RawWorker {
  private channel = new MessageChannel();
  private worker: Worker;

  constructor(file: string) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: { port: this.channel.port2, file }, transferList: [this.channel.port2] });
  }

  commit(data: Uint8Array): Promise<void> {
    return this.ask({ data });
  }

  /** Post `data` to be appended (copied into the message); not waited for. */
  append(data: Uint8Array): void {
    this.channel.port1.postMessage({ append: data } satisfies Msg);
  }

  /** fdatasync, after every append posted before. */
  sync(): Promise<void> {
    return this.ask({ sync: true });
  }

  private ask(m: Msg): Promise<void> {
    return new Promise((resolve) => {
      this.channel.port1.once('message', () => resolve());
      this.channel.port1.postMessage(m);
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.channel.port1.once('message', () => resolve());
      this.channel.port1.postMessage({ close: true } satisfies Msg);
    });
    this.channel.port1.close();
    await this.worker.terminate();
  }
}

if (!isMainThread && workerData?.file) {
  const { port, file } = workerData as { port: MessagePort; file: string };
  const fd = fs.openSync(file, 'a');
  const handle = (m: Msg): void => {
    if ('close' in m) {
      fs.closeSync(fd);
      port.postMessage(0);
      return;
    }
    if ('append' in m) {
      for (let done = 0; done < m.append.length; ) done += fs.writeSync(fd, m.append, done);
      return;
    }
    if ('data' in m) fs.writeSync(fd, m.data);
    fs.fdatasyncSync(fd);
    port.postMessage(0);
  };
  port.on('message', (first: Msg) => {
    for (let m: Msg | null = first; m; ) {
      handle(m);
      m = null;
      const until = process.hrtime.bigint() + BigInt(DEFAULT_FLUSHER_POLL_US * 1000);
      do {
        const got = receiveMessageOnPort(port);
        if (got) {
          m = got.message as Msg;
          break;
        }
      } while (process.hrtime.bigint() < until);
    }
  });
}
