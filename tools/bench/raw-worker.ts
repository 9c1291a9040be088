/**
 * P1's thread floor (subject raw-worker): the raw append + fdatasync done in a worker thread, one
 * message each way, the worker polling its port between commits as cpfile's flusher does
 * (DEFAULT_FLUSHER_POLL_US). What any design pays that keeps fsync off the main thread, on this machine:
 * raw fs's latency plus two thread hand-offs, one of them to a main thread whose CPU went idle while
 * it waited.
 */
import * as fs from 'node:fs';
import { Worker, MessageChannel, receiveMessageOnPort, workerData, isMainThread, type MessagePort } from 'node:worker_threads';
import { DEFAULT_FLUSHER_POLL_US } from '../../lib/flusher/protocol.js';

type Msg = { data: Uint8Array } | { close: true };

/** The main thread's end: `commit(data)` appends and fdatasyncs `data` in the worker. */
export class RawWorker {
  private channel = new MessageChannel();
  private worker: Worker;

  constructor(file: string) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: { port: this.channel.port2, file }, transferList: [this.channel.port2] });
  }

  commit(data: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      this.channel.port1.once('message', () => resolve());
      this.channel.port1.postMessage({ data } satisfies Msg);
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
    fs.writeSync(fd, m.data);
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
