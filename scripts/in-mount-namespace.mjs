// Runs a command (`npm test`: vitest) in a private mount namespace when it can (root, and
// unshare(1) allowed): the FUSE test daemon's mounts (test/hf3fs/daemon) are then invisible
// outside the run and go away with it, whatever kills it. Elsewhere the command runs as it is; the
// daemon's supervisor unmounts on its own then, and without root the daemon is not used at all.
//   node scripts/in-mount-namespace.mjs <command> [args...]
import { spawnSync } from 'node:child_process';

const [command, ...args] = process.argv.slice(2);
if (!command) {
  console.error('usage: node scripts/in-mount-namespace.mjs <command> [args...]');
  process.exit(2);
}

function run(file, argv, env = process.env) {
  const r = spawnSync(file, argv, { stdio: 'inherit', env });
  if (r.error) return null;
  return r.signal ? 128 : (r.status ?? 1);
}

// --propagation private: nothing mounted inside reaches the host's namespace.
const UNSHARE = ['--mount', '--propagation', 'private'];
const inside = process.env.THREEFS_MOUNT_NAMESPACE === 'private';
const can = !inside && process.getuid?.() === 0 && spawnSync('unshare', [...UNSHARE, 'true'], { stdio: 'ignore' }).status === 0;
const status = can
  ? run('unshare', [...UNSHARE, command, ...args], { ...process.env, THREEFS_MOUNT_NAMESPACE: 'private' })
  : run(command, args);
process.exit(status ?? 1);
