// file.readableWebStream(): a ReadableStream of bytes (BYOB-capable) over the read-ahead, for
// new Response(stream), fetch bodies and web-stream pipelines. As FileHandle.readableWebStream,
// it does not close the file unless asked (autoClose).
import { abortError, readPlan, readStreamFlags, type WebStreamOptions } from './options';
import { ReadAhead, type Chunk } from './read-ahead';
import { ownedCopy } from './read-stream';
import type { StreamFile } from './source';

export function readableWebStream(file: StreamFile, options?: WebStreamOptions): ReadableStream<Uint8Array> {
  const plan = readPlan(options);
  const { autoClose } = readStreamFlags(options, false);
  const ahead = new ReadAhead(file, plan);
  let rest: { chunk: Chunk; at: number } | undefined; // what a BYOB read left of a chunk
  let onAbort: (() => void) | undefined;
  const finish = async () => {
    if (onAbort) plan.signal?.removeEventListener('abort', onAbort);
    rest?.chunk.release();
    rest = undefined;
    await ahead.close();
    if (autoClose) await file.close();
  };
  return new ReadableStream({
    type: 'bytes',
    start(controller) {
      if (!plan.signal) return;
      onAbort = () => {
        controller.error(abortError(plan.signal!));
        void finish().catch(() => {});
      };
      if (plan.signal.aborted) onAbort();
      else plan.signal.addEventListener('abort', onAbort, { once: true });
    },
    async pull(controller) {
      try {
        const current = rest ?? (await ahead.next().then((chunk) => chunk && { chunk, at: 0 }));
        const request = controller.byobRequest;
        if (!current) {
          await finish();
          controller.close();
          request?.respond(0);
          return;
        }
        if (!request?.view) return controller.enqueue(ownedCopy(file, current.chunk));
        // The reader's own memory: fill it, keep the rest of the chunk for its next read.
        const view = new Uint8Array(request.view.buffer, request.view.byteOffset, request.view.byteLength);
        const n = current.chunk.bytes.copy(view, 0, current.at);
        file.countCopy(n);
        current.at += n;
        rest = current.at < current.chunk.bytes.length ? current : (current.chunk.release(), undefined);
        request.respond(n);
      } catch (e) {
        await finish().catch(() => {});
        controller.error(e);
      }
    },
    cancel: finish,
  });
}
