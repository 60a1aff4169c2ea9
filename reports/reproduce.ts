import type { Session } from '../trace/schema.js';
import type { Finding } from '../analyzer/types.js';
import { SCENARIOS } from '../analyzer/schedule.js';
import { displayStateName } from './labels.js';
import { printableShellWord } from './safe-text.js';

/*
 * The command a report prints to force its finding again (cli/replay.ts):
 * which schedule, which target, which build. Every word that comes from the
 * session is quoted with printableShellWord.
 */

/** The built-in scenario that forces `old -> new` after a read of `old`, if there is one. */
function scenarioFor(oldName: string, newName: string): string | null {
  for (const [name, make] of Object.entries(SCENARIOS)) {
    const roles = make().roles;
    const w = Object.values(roles).find((r) => r.probe === 'transition')?.when;
    // A writer that names no old state (into-completed) forces the step from whatever state precedes `new`.
    if (w && (w.old === undefined || w.old === oldName) && w.new === newName) return name;
  }
  return null;
}

/**
 * The command that forces the finding again (cli/replay.ts). A built-in
 * scenario when one forces the finding's crossing transition (a bug comment
 * reader has no database), else `--finding SESSION:ID` with the session's
 * database when the session knows it. Target kind, binary and variant come
 * from the session: minimig's two bundled builds are chosen by --patched,
 * another minimig binary by --binary; for QEMU the binary is the variant.
 */
export function reproduceCommand(session: Session, finding?: Finding | null): string {
  const meta = session.meta ?? {};
  const table = session.target.status_table;
  const parts = ['migrace', 'replay'];
  const x = finding?.crossing[0];
  const fromFinding = x ? scenarioFor(displayStateName(x.old, table), displayStateName(x.new, table)) : null;
  const metaScenario = typeof meta['scenario'] === 'string' && Object.hasOwn(SCENARIOS, meta['scenario']) ? meta['scenario'] : null;
  const db = typeof meta['db'] === 'string' ? meta['db'] : null;
  if (fromFinding) parts.push('--scenario', fromFinding);
  else if (finding && x) {
    parts.push('--finding', `${session.id}:${printableShellWord(finding.id)}`);
    if (db) parts.push('--db', printableShellWord(db));
  } else parts.push('--scenario', metaScenario ?? 'lp1994002');

  const t = session.target;
  if (t.kind === 'minimig') {
    parts.push('--target', 'minimig');
    const base = t.binary ? t.binary.split('/').pop() : null;
    if (t.binary && base !== 'minimig' && base !== 'minimig-patched') parts.push('--binary', printableShellWord(t.binary));
    else if (t.variant === 'patched' || base === 'minimig-patched') parts.push('--patched');
  } else {
    const metaQemu = typeof meta['qemu'] === 'string' ? meta['qemu'] : null;
    const bin = t.binary ?? metaQemu;
    parts.push('--target', 'qemu', '--qemu', bin ? printableShellWord(bin) : '/path/to/qemu-system-x86_64');
  }
  return parts.join(' ');
}
