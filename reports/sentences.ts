import type { Session } from '../trace/schema.js';
import type { Analysis, FindingClass, Verdict } from '../analyzer/types.js';
import { cleanText } from './safe-text.js';
import { infeasibleOf } from './session-meta.js';
import type { FindingView, VerdictKind } from './timeline.js';

/*
 * The sentences a report says, from the layout's own reading of the
 * evidence: one per finding (what crossed what, and what was published) and
 * one for the whole session (the verdict, with what libvirt does with the
 * reply, or why a replay's schedule could not happen). Names in them are
 * already cleaned by the layout.
 */

function quoteStatus(status: string | null): string {
  return status === null ? '{}' : `"${cleanText(status)}"`;
}

function libvirtClause(v: Verdict): string {
  if (v.old_libvirt === 'fails') {
    const err = v.libvirt_error ? ` with "${cleanText(v.libvirt_error)}"` : '';
    const cur = v.current_libvirt === 'accepts' ? ' (current libvirt tolerates it)' : '';
    return `old libvirt fails the migration job${err}${cur}`;
  }
  if (v.current_libvirt === 'fails') return `current libvirt fails it ("${cleanText(v.libvirt_error ?? 'error')}")`;
  return 'libvirt accepts it';
}

/** One sentence for a finding. */
export function explainFinding(
  cls: FindingClass, reader: string, read: FindingView['read'], crossing: FindingView['crossing'], publish: FindingView['publish'],
): string {
  const x0 = crossing[0];
  if (cls === 'window-only') {
    return `${x0 ? `${x0.thread} moved ${x0.old} -> ${x0.new} (#${x0.seq})` : 'A transition happened'} inside the query window of ${reader}; no read/publish probe saw what it published.`;
  }
  const pub = publish ? ` and before it published ${publish.value} (#${publish.seq})` : '';
  const tail = cls === 'manifested'
    ? `: it published ${publish?.value ?? '?'} although its switch took the ${read?.value ?? '?'} branch`
    : ': it published what it read';
  return `${x0 ? `${x0.thread} moved ${x0.old} -> ${x0.new} (#${x0.seq}${x0.released !== null ? `, held there and released at #${x0.released}` : ''})` : 'A transition happened'} after ${reader} read ${read?.value ?? '?'}${read ? ` (#${read.seq})` : ''}${pub}${tail}.`;
}

/**
 * The session's verdict: an infeasible replay says so (with the lock its
 * reader waits on), else the worst finding, else what the replies say.
 */
export function sessionVerdict(session: Session, views: FindingView[], analysis: Analysis | null): { kind: VerdictKind; sentence: string } {
  const infeasible = infeasibleOf(session);
  if (infeasible) {
    const stack = infeasible.stack.length ? ` Lock-wait stack: ${infeasible.stack.map(cleanText).join(' <- ')}.` : '';
    const reason = cleanText(infeasible.reason).replace(/\.$/, '');
    return { kind: 'infeasible', sentence: `Infeasible: the schedule cannot happen on this build: ${reason}.${infeasible.reason.includes(' <- ') ? '' : stack}` };
  }
  if (!analysis) return { kind: 'unanalyzed', sentence: 'Not analyzed: this session has no findings or reply verdicts yet.' };
  const manifested = views.filter((f) => f.cls === 'manifested');
  const more = (n: number, what: string): string => (n > 1 ? ` (${n} ${what} in this session)` : '');
  if (manifested.length > 0) {
    const f = manifested[0]!;
    const x = f.crossing[0];
    const head = f.knownAs ? `Reproduced ${f.knownAs}` : 'Race manifested';
    const what = x
      ? `${x.thread} moved ${x.old} -> ${x.new} after ${f.reader} read ${f.read?.value ?? '?'}${f.publish ? ` and before it published ${f.publish.value}` : ''}`
      : `${f.reader} published ${f.publish?.value ?? '?'} after reading ${f.read?.value ?? '?'}`;
    const sh = f.reply?.verdict.shape;
    // A reply with ram can still be wrong: fields of another status (the 7.2 re-reads).
    const shape = sh && f.reply!.verdict.has_ram && sh.foreign.length
      ? ` but with the fields of another status (foreign ${sh.foreign.map(cleanText).join(', ')}${sh.missing.length ? `; missing ${sh.missing.map(cleanText).join(', ')}` : ''})`
      : '';
    const reply = f.reply
      ? `, so the reply said ${quoteStatus(f.reply.verdict.status)} ${f.reply.verdict.has_ram ? 'with' : 'without'} ram${shape} and ${libvirtClause(f.reply.verdict)}`
      : '';
    return { kind: 'reproduced', sentence: `${head}: ${what}${reply}.${more(manifested.length, 'manifested findings')}` };
  }
  const windowOnly = views.filter((f) => f.cls === 'window-only');
  if (windowOnly.length > 0) {
    const f = windowOnly[0]!;
    const x = f.crossing[0];
    const reply = f.reply ? ` The reply said ${quoteStatus(f.reply.verdict.status)} ${f.reply.verdict.has_ram ? 'with' : 'without'} ram: ${libvirtClause(f.reply.verdict)}.` : '';
    return {
      kind: 'undetermined',
      sentence: `Undetermined: ${x ? `${x.thread} moved ${x.old} -> ${x.new}` : 'a transition happened'} inside a query window of ${f.reader}, but no read/publish probes saw what it published.${reply}${more(windowOnly.length, 'such windows')}`,
    };
  }
  const benign = views.filter((f) => f.cls === 'benign');
  if (benign.length > 0) {
    const f = benign[0]!;
    const x = f.crossing[0];
    const reply = f.reply ? `; the reply ${quoteStatus(f.reply.verdict.status)} is consistent and ${libvirtClause(f.reply.verdict)}` : '';
    return {
      kind: 'not-reproduced',
      sentence: `Not reproduced: ${x ? `${x.thread} moved ${x.old} -> ${x.new}` : 'a transition happened'} inside the query window, but ${f.reader} published what it read (${f.read?.value ?? '?'})${reply}.${more(benign.length, 'benign crossings')}`,
    };
  }
  const failing = analysis.replies.filter((r) => r.old_libvirt === 'fails' || r.current_libvirt === 'fails');
  if (failing.length > 0) {
    const r = failing[0]!;
    return {
      kind: 'replies-fail',
      sentence: `No read-then-transition interleaving was recorded, but ${failing.length} of ${analysis.replies.length} replies fail libvirt: ${cleanText(r.summary)}.`,
    };
  }
  return {
    kind: 'clean',
    sentence: `No read-then-transition interleaving in ${analysis.replies.length} ${analysis.replies.length === 1 ? 'reply' : 'replies'}; every reply is consistent and libvirt accepts it.`,
  };
}
