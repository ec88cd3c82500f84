// Shared by the data tests: is ffmpeg here (a failure in CI, a skip with a note elsewhere), the
// repository root, and running the CLI as a user runs it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { skip } from './skip.js';

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

export const HAVE_FFMPEG = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;

/**
 * true when ffmpeg is missing and the calling test should return: the skip is recorded so that
 * the count line shows it (test/skip.ts; CI fails instead).
 */
export function skipWithoutFfmpeg(): boolean {
  if (HAVE_FFMPEG) return false;
  skip('ffmpeg/ffprobe not on PATH');
  return true;
}

/** `node --import tsx src/cli/index.ts ...args` from the repository root. */
export function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
