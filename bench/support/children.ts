// The child processes the bench runs (fio, the node:fs runs), and what an interrupt does: stop them
// and remove the bench's directory, so a Ctrl-C leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

/** Children the bench is running (fio, node:fs), so an interrupt can stop them. */
export const children = new Set<ChildProcess>();

/** Runs a child to its end and resolves with its stdout; rejects, naming `label`, if it fails. */
export function runChild(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => {
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      if (code === 0) resolve(out);
      else reject(new Error(`${label} exited with ${signal ?? `code ${code}`}: ${failureLine(err, out)}`));
    });
  });
}

/**
 * The one line that says why a child failed: the first of stderr, else of stdout, leaving out a
 * JSON report (fio prints one, 80 lines of zeros, even for a job that never started).
 */
export function failureLine(err: string, out: string): string {
  const said = (text: string) => text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !/^[{}[\]"]/.test(l));
  const line = said(err) ?? said(out) ?? '(it printed nothing)';
  return line.length > 400 ? `${line.slice(0, 400)}...` : line;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Until the returned function is called, an interrupt stops the children, removes `dirs` and exits
 * with the shell's code for the signal (the bench's files can be large: none is left behind).
 */
export function removeOnInterrupt(...dirs: string[]): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    for (const c of children) c.kill('SIGTERM');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`\n3fs-client: interrupted (${signal}); removed ${dirs.join(', ')}\n`);
    process.exit(signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 129);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  return () => {
    for (const s of SIGNALS) process.off(s, onSignal);
  };
}

/** Stops the children still running (at the end of a bench, whatever happened). */
export function stopChildren(): void {
  for (const c of children) c.kill('SIGTERM');
}
