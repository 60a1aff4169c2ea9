import type { z } from 'zod';

/**
 * What zod found wrong, as the one-line `field: message` every input error
 * of migrace ends with. zod reports a bad record key as "Invalid key in
 * record" with the real reason one level down; that reason is what a user
 * needs. The first problem alone by default (zod often reports one mistake
 * twice); up to `max` of them, then "(and N more)", when asked for more.
 */
export function zodProblems(error: z.ZodError, max = 1): string {
  const described = error.issues.slice(0, max).map((issue) => {
    const message = issue.code === 'invalid_key' ? issue.issues[0]?.message ?? issue.message : issue.message;
    return `${issue.path.length > 0 ? issue.path.join('.') : '(top level)'}: ${message}`;
  });
  const more = max > 1 && error.issues.length > max ? ` (and ${error.issues.length - max} more)` : '';
  return `${described.join('; ')}${more}`;
}
