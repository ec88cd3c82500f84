#!/usr/bin/env node
// The `videothinker` command: finds the command name, then the command parses its own options.
import { backend } from '../index.js';
import { outputClosed, UsageError } from './args.js';
import * as ask from './ask.js';
import * as check from './check.js';
import * as evalCmd from './eval.js';
import * as info from './info.js';
import * as init from './init.js';
import * as synthCmd from './synth.js';
import * as trainSft from './train-sft.js';
import * as rl from './train-rl.js';
import * as plot from './plot.js';
import * as reproduceCmd from './reproduce.js';

interface Command { summary: string; help: string; run(argv: string[]): Promise<number> }
const COMMANDS: Record<string, Command> = { info, check, ask, synth: synthCmd, init, eval: evalCmd, 'train-sft': trainSft, 'train-grpo': rl.grpo, 'train-bias': rl.bias, 'train-cdpo': rl.cdpo, plot, reproduce: reproduceCmd };

const HELP = `videothinker: train and run small video-reasoning models with CDPO, on native kernels.

Usage:
  videothinker info [--json]            what the native backend has: SIMD level, threads, BLAS, CUDA
  videothinker check [--size N]         runs a matmul against a float64 reference and times it
  videothinker ask MODEL_DIR "QUESTION" [--video FILE] [options]
                                        answers a question about a video with a Qwen2.5-VL
                                        checkpoint folder; the answer streams to stdout
  videothinker synth [--out DIR] [--train N] [--test N] [--seed S] [knobs]
                                        writes the synthetic race benchmark (videos, questions,
                                        a word-level tokenizer)
  videothinker init --tokenizer FILE --out DIR [--preset tiny|small]
                                        writes a randomly initialised Qwen2.5-VL checkpoint folder
  videothinker eval MODEL_DIR --data FILE [--out results.json]
                                        accuracy per question type and source, shortcut rate
  videothinker train-sft --model DIR --data FILE --out DIR [options]
                                        supervised fine-tuning (checkpoints, resume, LoRA)
  videothinker train-bias --model DIR --data FILE --out DIR [options]
                                        Bias-Aware Training (GRPO on observational questions)
  videothinker train-cdpo --model DIR --bias DIR --data FILE --out DIR [options]
                                        CDPO: GRPO pushed away from the bias model
  videothinker train-grpo --model DIR --data FILE --out DIR [options]
                                        the GRPO baseline (T-GRPO, TW-GRPO with --algorithm)
  videothinker plot RUN_DIR [RUN_DIR ...] --out curves.svg
                                        training curves of runs in one SVG
  videothinker reproduce [--out DIR] [--quick]
                                        the paper's effect on the synthetic benchmark, end to
                                        end: SFT, bias model, GRPO, CDPO, GRPO + KL; the table
  videothinker COMMAND --help           a command's options
  videothinker --version | --help

Options of every command:
  --threads N          native threads (default: VT_NUM_THREADS, else all hardware threads)
  --precision P        f32 (default) or bf16: the network's GEMMs round their operands to bf16
                       and sum in f32 (up to 2x faster on CPUs with AVX512_BF16)

Environment: VT_NUM_THREADS, VT_SIMD=scalar|avx2|avx512 (cap the kernel level),
VT_ADDON_PATH (load a specific videothinker.node).`;

async function main(argv: string[]): Promise<number> {
  // The command is the first argument that is neither an option nor --threads' (--precision's) value, so
  // `videothinker --threads 2 info` and `videothinker --json` (info) work as they always have.
  let at = -1;
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--help' || x === '-h') { console.log(HELP); return 0; }
    if (x === '--version' || x === '-v') { console.log(backend().version); return 0; }
    if (x === '--threads' || x === '--precision') { i++; continue; }
    if (!x.startsWith('-')) { at = i; break; }
  }
  const name = at < 0 ? 'info' : argv[at]!;
  const rest = at < 0 ? argv : [...argv.slice(0, at), ...argv.slice(at + 1)];
  if (name === 'help') {
    const c = COMMANDS[rest[0] ?? ''];
    console.log(c ? c.help : HELP);
    return 0;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    console.error(`Unknown command '${name}'.\n\n${HELP}`);
    return 2;
  }
  return cmd.run(rest);
}

// The reader of stdout went away (`videothinker ask ... | head -c 1`): stop what streams to it
// (outputClosed) and swallow the write errors that follow, instead of dying with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE' || outputClosed.signal.aborted) { outputClosed.abort(); return; }
  throw e;
});

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  if (e instanceof UsageError) {
    console.error(`videothinker${e.command ? ' ' + e.command : ''}: ${e.message}\nRun 'videothinker ${e.command ?? ''}${e.command ? ' ' : ''}--help' for the options.`);
    process.exitCode = 2;
    return;
  }
  console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  process.exitCode = 1;
});
