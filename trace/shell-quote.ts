/**
 * POSIX shell single quoting: the one quoting both gdb's `set args` (gdb
 * hands the argument string to /bin/sh, startup-with-shell) and a pasted
 * command's quoted words (reports/safe-text.ts's printableShellWord, and the
 * hunt's replay commands) rest on. It lives below recorder/ and reports/ so
 * that neither imports the other for it. It quotes every byte as it is:
 * callers that show the word to a user clean or escape control characters
 * first; gdb's callers refuse them.
 */
export function shellQuote(arg: string): string {
  return "'" + arg.replace(/'/g, "'\\''") + "'";
}
