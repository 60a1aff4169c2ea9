import { writeFileSync } from 'node:fs';

/*
 * Preloaded (node --import) into a bench child whose whole run is measured,
 * such as `migrace report --perfetto`: when the process exits it writes its
 * own resource usage (getrusage: peak RSS, user and system CPU) to the file
 * MIGRACE_BENCH_RUSAGE names. Node gives a parent no child's rusage, and the
 * command must run unchanged.
 */

const file = process.env.MIGRACE_BENCH_RUSAGE;
if (file) process.on('exit', () => writeFileSync(file, JSON.stringify(process.resourceUsage())));
