/** The `vrouter-cni` executable: environment and stdin in, one result on stdout, exit code 0 or 1 (SPEC.md Section 2). */
import * as fs from 'node:fs';
import { runPlugin } from './plugin';

export async function main(): Promise<void> {
  let stdin = '';
  try {
    stdin = fs.readFileSync(0, 'utf8');
  } catch (error) {
    // No stdin at all (VERSION may be called so); EAGAIN/EOF read as empty.
    if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' && (error as NodeJS.ErrnoException).code !== 'EOF') throw error;
  }
  const output = await runPlugin(process.env, stdin);
  if (output.stdout !== '') process.stdout.write(output.stdout + '\n');
  process.exitCode = output.exitCode;
}
