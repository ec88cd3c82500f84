// Evaluation: numbers on a stub model equal hand-computed ones (accuracy per question type,
// problem type and source, format rate, shortcut rate, skipped rows); the request each question
// makes (prompt text, video path, video options, seeds); the real benchmarks' JSON with a video
// root; on the synthetic benchmark, a stub that reads the balls off the decoded frames scores 100%
// when it reasons and exactly the shortcut when it answers what it sees; a real checkpoint runs,
// batched decoding answers as per-file decoding does; the CLI.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  decodeVideo, EVAL_VIDEO_OPTIONS, evaluate, formatReport, initModel, loadModel, PALETTES, readDataset, synth, writeReport,
  type EvalRequest, type EvalSample, type Frame, type SynthRow,
} from '../src/index.js';
import { rejectsLike } from './helpers.js';
import { skip } from './skip.js';
import { cli, HAVE_FFMPEG, ROOT, skipWithoutFfmpeg } from './synth_fixture.js';

const TMP = mkdtempSync(path.join(tmpdir(), 'vt-eval-test-'));
const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

// A hand-made question file: five evaluable rows, one with a missing video, one of an unsupported
// data_type, one malformed.
const HAND = path.join(TMP, 'hand', 'q.json');
const VO = { fps: 2, minFrames: 8, maxFrames: 8, minPixels: 6272, maxPixels: 6272 };
const rows = [
  { problem: 'P1?', options: ['A. red', 'B. blue'], solution: '<answer>A</answer>', problem_type: 'multiple choice', question_type: 'observational', shortcut_answer: 'A', path: 'v/1.mp4', data_type: 'video', data_source: 'setA', video_options: VO },
  { problem: 'P2?', options: ['A. red', 'B. blue', 'C. green'], solution: '<answer>B</answer>', problem_type: 'multiple choice', question_type: 'observational', shortcut_answer: 'B', path: 'v/2.mp4', data_source: 'setA' },
  { problem: 'P3?', options: ['A. a', 'B. b', 'C. c', 'D. d'], solution: '<answer>C</answer>', problem_type: 'multiple choice', question_type: 'inferential', shortcut_answer: 'D', path: 'v/3.mp4', data_source: 'setB' },
  { problem: 'P4?', options: ['A. a', 'B. b'], solution: '<answer>A</answer>', problem_type: 'multiple choice', question_type: 'inferential', shortcut_answer: 'B', path: 'v/4.mp4', data_source: 'https://example.org/v4' },
  { problem: 'P5?', options: ['A. a', 'B. b', 'C. c'], solution: 'A,C', problem_type: 'multi-select', path: 'v/5.mp4' },
  { problem: 'P6?', solution: '<answer>A</answer>', path: 'v/missing.mp4' },
  { problem: 'P7?', solution: '<answer>A</answer>', data_type: 'frame', path: 'v/1.mp4' },
  { problem: 8 },
];
mkdirSync(path.join(TMP, 'hand', 'v'), { recursive: true });
writeFileSync(HAND, JSON.stringify(rows));
for (const i of [1, 2, 3, 4, 5]) writeFileSync(path.join(TMP, 'hand', 'v', `${i}.mp4`), '');

/** A stub model: answers[problem][k] is sample k's completion; records every request. */
function stub(answers: Record<string, string[]>) {
  const requests: EvalRequest[] = [];
  return {
    requests,
    async generate(req: EvalRequest): Promise<EvalSample[]> {
      requests.push(req);
      const p = req.prompt.slice(0, req.prompt.indexOf('?') + 1);
      return Array.from({ length: req.n }, (_, k) => ({ text: answers[p]![k % answers[p]!.length]! }));
    },
  };
}

test('hand-computed accuracy, format and shortcut rates on a stub model; skipped rows counted', async () => {
  const m = stub({
    'P1?': ['<think>x</think><answer>A</answer>'],          // right, formatted
    'P2?': ['<answer>C</answer>'],                          // wrong, no <think>
    'P3?': ['<think>y</think><answer>D</answer>'],          // wrong: the shortcut answer
    'P4?': ['<think>z</think> <answer> A </answer>'],       // right (spaces stripped), not the shortcut
    'P5?': ['<think></think><answer>A</answer>'],           // half of a multi-select answer
  });
  const r = await evaluate(m, { data: HAND });
  assert.equal(r.counts, { rows: 8, evaluated: 5, skipped: { missingMedia: 1, unsupported: 1, invalid: 1 }, skippedExamples: r.counts.skippedExamples });
  assert.is(r.counts.skippedExamples.length, 3);
  near(r.overall.accuracy, 2.5 / 5, 'overall accuracy'); near(r.overall.format, 4 / 5, 'overall format');
  assert.equal(Object.keys(r.byQuestionType), ['inferential', 'observational', 'unspecified']);
  near(r.byQuestionType.observational!.accuracy, 0.5, 'observational'); near(r.byQuestionType.observational!.format, 0.5, 'observational format');
  near(r.byQuestionType.inferential!.accuracy, 0.5, 'inferential'); near(r.byQuestionType.inferential!.format, 1, 'inferential format');
  near(r.byQuestionType.unspecified!.accuracy, 0.5, 'unspecified');
  near(r.byProblemType['multiple choice']!.accuracy, 0.5, 'multiple choice'); near(r.byProblemType['multiple choice']!.format, 0.75, 'mc format');
  near(r.byProblemType['multi-select']!.accuracy, 0.5, 'multi-select');
  // sources: data_source names them, a URL does not (the file's name does)
  assert.equal(Object.fromEntries(Object.entries(r.bySource).map(([k, v]) => [k, [v.count, v.accuracy]])), { q: [2, 0.75], setA: [2, 0.5], setB: [1, 0] });
  assert.equal(r.shortcut, { count: 2, rate: 0.5 });
  assert.equal(r.items.map((i) => i.answers[0]), ['A', 'C', 'D', 'A', 'A']);
  // the requests: the documented prompt, the video under the JSON's folder, each row's video options or the paper's
  const q1 = m.requests[0]!;
  assert.is(q1.prompt, 'P1?Options:\nA. red\nB. blue\n  Output the thinking process in <think> </think> and final answer (letters separated by , if multiple) in <answer> </answer> tags.');
  assert.is(q1.video, path.join(TMP, 'hand', 'v', '1.mp4'));
  assert.equal(q1.videoOptions, VO);
  assert.equal(m.requests[1]!.videoOptions, { ...EVAL_VIDEO_OPTIONS });
  assert.equal(m.requests.map((x) => [x.temperature, x.n, x.seed, x.maxNewTokens]), [0, 1, 2, 3, 4].map((i) => [0, 1, 1 + i, 256]));
  const table = formatReport(r);
  assert.match(table, /5 of 8 questions evaluated \(skipped: 1 missing video, 1 unsupported data_type, 1 malformed\); greedy, 1 sample each/);
  assert.match(table, /overall\s+5\s+50\.0%\s+80\.0%/);
  assert.match(table, /shortcut rate: 50\.0% of 2 inferential questions answered with the observed outcome/);
  const file = path.join(TMP, 'report.json');
  writeReport(file, r);
  assert.equal(JSON.parse(readFileSync(file, 'utf8')), JSON.parse(JSON.stringify(r)));
});

test('n samples: an item scores the mean of its samples; options reach the model; token-only samples are decoded', async () => {
  const m = stub({
    'P1?': ['<answer>A</answer>', '<answer>B</answer>'],
    'P2?': ['<answer>B</answer>'],
    'P3?': ['<answer>D</answer>', '<answer>C</answer>'],
    'P4?': ['<answer>B</answer>', '<answer>B</answer>', '<answer>A</answer>', '<answer>A</answer>'],
    'P5?': ['<answer>C,A</answer>', '<answer>A,B</answer>'],
  });
  const r = await evaluate(m, { data: [HAND], n: 4, temperature: 0.7, topP: 0.9, seed: 10, maxNewTokens: 12, videoOptions: { maxFrames: 4 } });
  // P1: A B A B -> 0.5; P2: 1; P3: D C D C -> 0.5, shortcut 0.5; P4: B B A A -> 0.5, shortcut 0.5; P5: 1 0 1 0 -> 0.5
  assert.equal(r.items.map((i) => i.accuracy), [0.5, 1, 0.5, 0.5, 0.5]);
  near(r.overall.accuracy, 3 / 5, 'overall');
  assert.equal(r.shortcut, { count: 2, rate: 0.5 });
  assert.equal(m.requests[0]!.videoOptions, { ...VO, maxFrames: 4 });
  assert.equal([m.requests[2]!.temperature, m.requests[2]!.topP, m.requests[2]!.n, m.requests[2]!.seed, m.requests[2]!.maxNewTokens], [0.7, 0.9, 4, 12, 12]);
  assert.equal(r.settings, { n: 4, temperature: 0.7, topP: 0.9, maxNewTokens: 12, seed: 10 });
  const limited = await evaluate(stub({ 'P1?': ['A'], 'P2?': ['B'] }), { data: HAND, limit: 2 });
  assert.is(limited.counts.evaluated, 2);
  near(limited.overall.accuracy, 1, 'bare answers without tags count (the reference falls back to the whole completion)');
  near(limited.overall.format, 0, 'and get no format reward');
  const vocab = ['<answer>', 'A', '</answer>', 'B'];
  const tokenModel = {
    tokenizer: { decode: (ids: ArrayLike<number>) => Array.from(ids, (i) => vocab[i]).join('') },
    async generate(): Promise<EvalSample[]> { return [{ tokens: [0, 1, 2] }]; },
  };
  const t = await evaluate(tokenModel, { data: HAND, limit: 2 });
  assert.equal(t.items.map((i) => i.outputs[0]), ['<answer>A</answer>', '<answer>A</answer>']);
  near(t.overall.accuracy, 0.5, 'decoded tokens are scored');
});

test('errors name the argument', async () => {
  const ok = stub({ 'P1?': ['A'] });
  await rejectsLike(evaluate(null as never, { data: HAND }), TypeError, /model with a generate\(\) method for model/);
  await rejectsLike(evaluate(ok, { data: [] }), TypeError, /question file path .* for options\.data/);
  await rejectsLike(evaluate(ok, { data: path.join(TMP, 'nope.json') }), Error, /Cannot read the question file '.*nope\.json'/);
  await rejectsLike(evaluate(ok, { data: HAND, n: 0 }), RangeError, /integer in \[1, 1024\] for options\.n but received 0/);
  await rejectsLike(evaluate(ok, { data: HAND, temperature: -1 }), RangeError, /options\.temperature/);
  await rejectsLike(evaluate(ok, { data: HAND, limit: 0 }), RangeError, /options\.limit/);
  await rejectsLike(evaluate(ok, { data: HAND, videoRoot: path.join(TMP, 'no-root') }), Error, /video root '.*no-root' does not exist/);
  await rejectsLike(evaluate({ async generate() { return []; } }, { data: HAND }), TypeError, /non-empty array of samples for model\.generate\(\) result/);
  await rejectsLike(evaluate({ async generate() { throw new Error('out of memory'); } }, { data: HAND }), Error, /The model failed on .*q\.json row 0: out of memory/);
  await rejectsLike(evaluate({ async generate() { return [{}]; } }, { data: HAND }), TypeError, /sample with text/);
  const bad = path.join(TMP, 'bad.json');
  writeFileSync(bad, '{"problem": ');
  await rejectsLike(evaluate(ok, { data: bad }), RangeError, /Invalid question file '.*bad\.json'/);
});

test('the real benchmarks\' JSON: videos under --video-root, missing ones counted, frame items unsupported', async () => {
  const bench = path.join(ROOT, '..', 'shared', 'data', 'benchmarks');
  if (!existsSync(path.join(bench, 'eval_mmvu.json'))) return skip(`the benchmarks' JSON is expected beside the clone (${bench})`);
  const all = JSON.parse(readFileSync(path.join(bench, 'eval_mmvu.json'), 'utf8')) as { video: string; solution: string; problem: string; options: string[] }[];
  const root = path.join(TMP, 'mmvu-root');
  for (const row of all.slice(0, 3)) {
    mkdirSync(path.dirname(path.join(root, row.video)), { recursive: true });
    writeFileSync(path.join(root, row.video), '');
  }
  const d = readDataset(path.join(bench, 'eval_mmvu.json'), { videoRoot: root });
  assert.is(d.rows.length, 3);
  assert.is(d.skipped.missingMedia, all.length - 3);
  assert.is(d.rows[0]!.media!.file, path.join(root, all[0]!.video), 'the leading / of the benchmark path is under the root');
  const m = stub(Object.fromEntries(all.slice(0, 3).map((r) => [r.problem.slice(0, r.problem.indexOf('?') + 1), ['<think>t</think><answer>A</answer>']])));
  const r = await evaluate(m, { data: path.join(bench, 'eval_mmvu.json'), videoRoot: root });
  assert.is(r.counts.evaluated, 3);
  const wantA = all.slice(0, 3).filter((x) => x.solution === '<answer>A</answer>').length / 3;
  near(r.overall.accuracy, wantA, 'answering A on the first three');
  assert.equal(Object.keys(r.bySource), ['eval_mmvu'], 'MMVU\'s per-video URLs do not make sources');
  assert.ok(m.requests[0]!.prompt.startsWith(all[0]!.problem + 'Options:\n' + all[0]!.options.join('\n') + '\n  Output the thinking'));
  assert.equal(m.requests[0]!.videoOptions, { ...EVAL_VIDEO_OPTIONS });
  const mv = readDataset(path.join(bench, 'eval_mvbench.json'), { videoRoot: root });
  assert.is(mv.rows.length, 0);
  assert.is(mv.skipped.unsupported, 200, 'the 200 frame-folder items');
  assert.is(mv.skipped.missingMedia, 3800);
});

// ---------------------------------------------------------------------------------------------
// on the synthetic benchmark

const SYN = path.join(TMP, 'syn');
const ready = HAVE_FFMPEG ? synth({ out: SYN, train: 0, test: 40, variant: 8, seed: 21 }) : null;
ready?.catch(() => { /* reported by the tests that await it */ });

/** Reads the balls off the last frame: colour -> { x, y, lane } (by the palette's exact colours), and the mark (white pixels' centroid). */
function ballsInLastFrame(frames: Frame[], lanes: number): Map<string, { x: number; y: number; lane: number }> & { mark?: { x: number; y: number } } {
  const f = frames[frames.length - 1]!;
  const out: Map<string, { x: number; y: number; lane: number }> & { mark?: { x: number; y: number } } = new Map();
  let wn = 0, wx = 0, wy = 0;
  for (let i = 0; i < f.width * f.height; i++) {
    if (f.data[3 * i] === 255 && f.data[3 * i + 1] === 255 && f.data[3 * i + 2] === 255) { wn++; wx += i % f.width; wy += Math.floor(i / f.width); }
  }
  if (wn > 0) out.mark = { x: wx / wn, y: wy / wn };
  for (const [palette] of [[PALETTES.standard], [PALETTES.variant]] as const) {
    for (const [c, rgb] of Object.entries(palette)) {
      let n = 0, sx = 0, sy = 0;
      for (let i = 0; i < f.width * f.height; i++) {
        if (f.data[3 * i] === rgb[0] && f.data[3 * i + 1] === rgb[1] && f.data[3 * i + 2] === rgb[2]) { n++; sx += i % f.width; sy += Math.floor(i / f.width); }
      }
      if (n > 3) out.set(c, { x: sx / n, y: sy / n, lane: 1 + Math.floor((sy / n) / (f.height / lanes)) });
    }
  }
  return out;
}

/** A model that sees: `reason` answers the counterfactual (removing the marked ball, or the one in the named lane), otherwise it answers the leader it sees. */
function seeingModel(reason: boolean) {
  return {
    async generate(req: EvalRequest): Promise<EvalSample[]> {
      assert.ok(Array.isArray(req.video), 'synthetic videos arrive decoded');
      const letters = new Map([...req.prompt.matchAll(/\n([A-H])\. (\w+)/g)].map((m) => [m[2]!, m[1]!]));
      const balls = ballsInLastFrame(req.video as Frame[], letters.size);
      assert.is(balls.size, letters.size, 'every ball is seen');
      const lane = /lane (\d)/.exec(req.prompt);
      const marked = /the marked ball were removed/.test(req.prompt);
      assert.ok(lane || marked, 'a counterfactual question names the removed ball');
      const mk = balls.mark;
      const removed = (b: { x: number; y: number; lane: number }) => (lane ? b.lane === Number(lane[1]) : Math.hypot(b.x - mk!.x, b.y - mk!.y) < 1.5);
      if (marked) assert.is([...balls.values()].filter(removed).length, 1, 'the mark sits on one ball');
      const ranked = [...balls.entries()].filter(([, b]) => !(reason && removed(b))).sort((a, b) => b[1].x - a[1].x);
      return [{ text: `<think>seen</think><answer>${letters.get(ranked[0]![0])}</answer>` }];
    },
  };
}

test('synthetic set: a model that reasons on the frames scores 100%; one that answers what it sees scores exactly the shortcut', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  const data = [path.join(SYN, 'test.json'), path.join(SYN, 'test_variant.json')];
  const good = await evaluate(seeingModel(true), { data, batch: 7 });
  assert.is(good.counts.evaluated, 48);
  assert.is(good.overall.accuracy, 1);
  assert.equal(good.shortcut, { count: 24, rate: 0 });
  const lazy = await evaluate(seeingModel(false), { data });
  assert.is(lazy.byQuestionType.observational!.accuracy, 1);
  assert.is(lazy.byQuestionType.inferential!.accuracy, 0);
  assert.equal(lazy.shortcut, { count: 24, rate: 1 });
  assert.equal(Object.keys(lazy.bySource), ['synth', 'synth_variant']);
  assert.is(lazy.bySource.synth_variant!.count, 8);
});

test('synthetic set: batched frames are the files\' frames, with the options that sample them as the file', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  const seen: EvalRequest[] = [];
  const rec = { async generate(req: EvalRequest): Promise<EvalSample[]> { seen.push(req); return [{ text: 'A' }]; } };
  const data = path.join(SYN, 'test.json');
  await evaluate(rec, { data, limit: 5, batch: 2 });
  await evaluate(rec, { data, limit: 5, batch: 0 });
  const rowsSyn = JSON.parse(readFileSync(data, 'utf8')) as SynthRow[];
  for (let i = 0; i < 5; i++) {
    const [b, f] = [seen[i]!, seen[i + 5]!];
    assert.is(f.video, path.join(SYN, rowsSyn[i]!.path), 'batch 0: the file');
    assert.equal(f.videoOptions, rowsSyn[i]!.video_options);
    assert.equal(b.videoOptions, { ...rowsSyn[i]!.video_options, videoFps: 2 });
    const d = await decodeVideo(f.video as string, rowsSyn[i]!.video_options);
    assert.is((b.video as Frame[]).length, d.frames.length);
    d.frames.forEach((fr, t) => assert.ok(Buffer.from(fr.data).equals(Buffer.from((b.video as Frame[])[t]!.data)), `row ${i} frame ${t}`));
  }
});

test('a real checkpoint (init tiny): evaluate runs, and batched decoding answers exactly as per-file decoding', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  const dir = path.join(TMP, 'model');
  await initModel({ tokenizer: path.join(SYN, 'tokenizer.json'), out: dir, seed: 3 });
  const m = await loadModel(dir);
  try {
    const opts = { data: path.join(SYN, 'test.json'), limit: 4, maxNewTokens: 6 };
    const a = await evaluate(m, { ...opts, batch: 32 });
    const b = await evaluate(m, { ...opts, batch: 0 });
    assert.is(a.counts.evaluated, 4);
    assert.ok(a.items.every((i) => typeof i.outputs[0] === 'string' && i.outputs[0]!.length > 0));
    assert.equal(a.items.map((i) => i.outputs), b.items.map((i) => i.outputs));
  } finally {
    m.dispose(); m.checkpoint.dispose();
  }
  const r = cli('eval', dir, '--data', path.join(SYN, 'test.json'), '--limit', '3', '--max-new-tokens', '4', '--out', path.join(TMP, 'cli.json'), '--quiet');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /3 of 40 questions evaluated; greedy, 1 sample each/);
  assert.match(r.stdout, /question_type/);
  const rep = JSON.parse(readFileSync(path.join(TMP, 'cli.json'), 'utf8'));
  assert.is(rep.counts.evaluated, 3);
  const first3 = (JSON.parse(readFileSync(path.join(SYN, 'test.json'), 'utf8')) as SynthRow[]).slice(0, 3);
  assert.is(rep.shortcut.count, first3.filter((x) => x.question_type === 'inferential').length);
  assert.is(rep.items.length, 3);
  const missing = cli('eval', dir);
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /videothinker eval: --data FILE is required/);
  const noModel = cli('eval');
  assert.is(noModel.status, 2);
  const badN = cli('eval', dir, '--data', path.join(SYN, 'test.json'), '--n', 'two');
  assert.is(badN.status, 1);
  assert.match(badN.stderr, /TypeError: Expected a number for --n but received 'two'/);
  const two = cli('eval', dir, 'other', '--data', 'x.json');
  assert.is(two.status, 2);
  assert.match(two.stderr, /Unexpected argument 'other'/);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
