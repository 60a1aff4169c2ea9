import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The two real QEMU builds the integration tests use (facts.md, "Binaries
 * a test can use"): Debian bookworm's patched 7.2, installed system-wide,
 * and Debian bullseye's unpatched 5.2, fetched into samples/.cache by
 * samples/fetch-qemu.sh 5.2. Each answer is computed once per process.
 * Tests skip with `reason` when a binary is not available.
 */
export type QemuBinary = { path: string; env: Record<string, string> } | { skip: string };
export type BullseyeQemu = { path: string; env: { LD_LIBRARY_PATH: string } } | { skip: string };

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FETCH_SCRIPT = join(ROOT, 'samples/fetch-qemu.sh');
export const BOOKWORM_QEMU = '/usr/bin/qemu-system-x86_64';

let bookworm: QemuBinary | undefined;
let bullseye: BullseyeQemu | undefined;

export function bookwormQemu(): QemuBinary {
  if (bookworm) return bookworm;
  if (!existsSync(BOOKWORM_QEMU)) {
    bookworm = { skip: `${BOOKWORM_QEMU} is not installed (apt-get install -y --no-install-recommends qemu-system-x86)` };
    return bookworm;
  }
  try {
    execFileSync(BOOKWORM_QEMU, ['-version'], { stdio: 'pipe', timeout: 15_000 });
    bookworm = { path: BOOKWORM_QEMU, env: {} };
  } catch (e) {
    bookworm = { skip: `${BOOKWORM_QEMU} -version failed: ${(e as Error).message.split('\n')[0]}` };
  }
  return bookworm;
}

export function bullseyeQemu(): BullseyeQemu {
  if (bullseye) return bullseye;
  // The script answers at once when the binary is already in place; a cold fetch takes ~5 s.
  const r = spawnSync('bash', [FETCH_SCRIPT, '5.2'], { encoding: 'utf8', timeout: 300_000 });
  const stderr = (r.stderr ?? '').trim();
  const lastErr = stderr.split('\n').filter(Boolean).slice(-1)[0] ?? '';
  if (r.error) {
    bullseye = { skip: `fetch-qemu.sh 5.2 did not finish: ${r.error.message}` };
  } else if (r.status !== 0) {
    const why = r.status === 3 ? 'the registry does not serve it' : `exit ${r.status}`;
    bullseye = { skip: `unpatched QEMU 5.2 unavailable (${why}): ${lastErr.replace(/^fetch-qemu: /, '')}` };
  } else {
    const path = (r.stdout ?? '').trim().split('\n').slice(-1)[0] ?? '';
    if (!path || !existsSync(path)) {
      bullseye = { skip: `fetch-qemu.sh 5.2 printed no usable path (${JSON.stringify(path)})` };
    } else {
      // root/usr/bin/qemu-system-x86_64 -> root/usr/lib/x86_64-linux-gnu
      bullseye = { path, env: { LD_LIBRARY_PATH: resolve(dirname(path), '../lib/x86_64-linux-gnu') } };
    }
  }
  return bullseye;
}
