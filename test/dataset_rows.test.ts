// Bad rows of question files (issue 11: "reported by line and skipped or fail the run as the user
// chooses, never silently"): readDataset lists every one with its index (or JSON-lines line) and
// reason, malformed fields included; trainSft's onBadRow 'fail' names every bad row before any
// step, 'skip' trains on the rest exactly as on a file of only those rows; maxAnswerTokens makes
// answers (process + solution + the end-of-turn token) over the limit bad rows, at the limit kept.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { loadModel, readDataset, trainSft } from '../src/index.js';
import { describeBadRows, formatRanges, type BadRow } from '../src/data/dataset.js';
import type { SftOptions } from '../src/train/sft.js';
import { writeTinyCheckpoint } from './ckpt_fixture.js';
import { rejectsLike, throwsLike } from './helpers.js';

const TMP = mkdtempSync(path.join(tmpdir(), 'vt-rows-'));
const CKPT = path.join(TMP, 'ckpt');
mkdirSync(CKPT);
writeTinyCheckpoint(CKPT);
mkdirSync(path.join(TMP, 'v'));
writeFileSync(path.join(TMP, 'v', 'a.mp4'), '');

const text = (problem: string, solution = '<answer>A</answer>', extra: Record<string, unknown> = {}) => ({ problem, solution, data_type: 'text', ...extra });
const missing = (i: number) => ({ problem: `m${i}?`, solution: '<answer>B</answer>', data_type: 'video', path: `v/none-${i}.mp4` });
const byReason = (bad: readonly BadRow[], reason: BadRow['reason']) => bad.filter((b) => b.reason === reason).map((b) => b.index);

/** What the function writes to stderr while it runs (and its result). */
async function stderrOf<T>(fn: () => Promise<T>): Promise<{ value: T; err: string }> {
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = ((chunk: string | Uint8Array) => { err += String(chunk); return true; }) as typeof process.stderr.write;
  try {
    return { value: await fn(), err };
  } finally {
    process.stderr.write = write;
  }
}

const sft = (data: string, out: string, more: Partial<SftOptions> = {}) => trainSft({
  model: CKPT, data, out: path.join(TMP, out), maxSteps: 1, batchSize: 2, lr: 1e-3, progress: false, saveDtype: 'f32', ...more,
});

test('formatRanges and describeBadRows: every row named (ranges), per file and reason, with the first details', () => {
  assert.is(formatRanges([]), '');
  assert.is(formatRanges([4]), '4');
  assert.is(formatRanges([1, 2, 3, 7, 9, 10]), '1-3, 7, 9-10');
  const bad: BadRow[] = [
    ...[0, 1, 2, 3, 9].map((index) => ({ file: 'a.json', index, reason: 'missingMedia' as const, detail: `v/${index}.mp4` })),
    { file: 'a.json', index: 5, reason: 'invalid', detail: 'no problem / solution strings' },
    { file: 'b.jsonl', index: 0, line: 2, reason: 'answerTooLong', detail: '9 tokens, over maxAnswerTokens 8' },
  ];
  assert.is(describeBadRows(bad, 2),
    'a.json: 6 bad rows: 5 missing media (rows 0-3, 9; e.g. row 0: v/0.mp4; row 1: v/1.mp4), 1 malformed (rows 5; e.g. row 5: no problem / solution strings)' +
    ' | b.jsonl: 1 bad row: 1 answer over the token limit (lines 2; e.g. line 2: 9 tokens, over maxAnswerTokens 8)');
});

test('readDataset lists every bad row by index and reason: missing media, unsupported, malformed fields, media under an unknown field', () => {
  const rows = [
    text('ok0?', '<answer>A</answer>', { colour: 'red', extra: { deep: 1 } }),  // 0: fine; fields the format does not define are kept
    missing(1),                                                                 // 1
    { problem: 'ok2?', solution: '<answer>C</answer>', path: 'v/a.mp4' },          // 2: fine (data_type defaults to video)
    { problem: 'p3?', solution: 's', options: 'A. red' },                          // 3: options not an array
    { problem: 'p4?', solution: 's', path: 7 },                                    // 4: path not a string
    { problem: 'p5?', solution: 's', video_path: 'v/a.mp4' },                      // 5: its video under a field the format does not know
    { problem: 'p6?', solution: 's', data_type: 'frame', path: 'v/a.mp4' },        // 6: unsupported
    ...[7, 8, 9, 10, 11].map(missing),                                             // 7-11
    null,                                                                         // 12
    text('p13?', 's', { process: ['<think>x</think>'] }),                          // 13: process not a string
    text('p14?', 's', { problem_type: 3 }),                                        // 14: problem_type not a string
  ];
  const file = path.join(TMP, 'rows.json');
  writeFileSync(file, JSON.stringify(rows));
  const d = readDataset(file);
  assert.equal(d.rows.map((r) => r.index), [0, 2]);
  assert.equal(d.rows[0]!.row.colour, 'red');
  assert.equal(d.rows[0]!.row.extra, { deep: 1 });
  assert.is(d.rows[0]!.line, undefined, 'no line numbers in a JSON array');
  assert.equal(byReason(d.bad, 'missingMedia'), [1, 7, 8, 9, 10, 11]);
  assert.equal(byReason(d.bad, 'invalid'), [3, 4, 5, 12, 13, 14]);
  assert.equal(byReason(d.bad, 'unsupported'), [6]);
  assert.equal({ ...d.skipped, examples: d.skipped.examples.length }, { missingMedia: 6, unsupported: 1, invalid: 6, examples: 5 });
  const detail = (i: number) => d.bad.find((b) => b.index === i)!.detail;
  assert.match(detail(1), /none-1\.mp4$/);
  assert.is(detail(3), 'options is not an array of strings');
  assert.is(detail(4), 'path is not a string (number)');
  assert.match(detail(5), /no path \/ video field and no data_type 'text' \(its fields: problem, solution, video_path\)/);
  assert.is(detail(12), 'not an object (null)');
  assert.is(detail(13), 'process is not a string (an array)');
  assert.is(detail(14), 'problem_type is not a string (number)');
  const msg = describeBadRows(d.bad);
  assert.ok(msg.startsWith(`${file}: 13 bad rows: `), msg);
  assert.ok(msg.includes('6 missing media (rows 1, 7-11;'), msg);
  assert.ok(msg.includes('1 unsupported data_type (rows 6;'), msg);
  assert.ok(msg.includes('6 malformed (rows 3-5, 12-14;'), msg);
});

test('readDataset of JSON lines: rows by line (blank lines skipped), a line that is not JSON is one bad row, a file of none is an error', () => {
  const file = path.join(TMP, 'rows.jsonl');
  writeFileSync(file, [JSON.stringify(text('a?')), '', '{"problem": "b?", "solution": ', JSON.stringify(text('c?')), JSON.stringify({ problem: 1, solution: 's' }), ''].join('\n'));
  const d = readDataset(file);
  assert.equal(d.rows.map((r) => [r.index, r.line]), [[0, 1], [2, 4]]);
  assert.equal(d.bad.map((b) => [b.index, b.line, b.reason]), [[1, 3, 'invalid'], [3, 5, 'invalid']]);
  assert.match(d.bad[0]!.detail, /^not JSON \(/);
  assert.ok(describeBadRows(d.bad).includes('2 malformed (lines 3, 5; e.g. line 3: not JSON'), describeBadRows(d.bad));
  const broken = path.join(TMP, 'broken.jsonl');
  writeFileSync(broken, '\n{oops\n{"a": \n');
  throwsLike(() => readDataset(broken), RangeError, /Invalid question file .*broken\.jsonl.*line 2: not JSON/);
});

test("trainSft onBadRow: 'fail' names every bad row before any step; 'skip' reports them all and trains as on the good rows alone", async () => {
  const good = [text('Which ball is red?'), text('Which ball is blue?', '<answer>B</answer>')];
  const all = [good[0], missing(1), missing(2), missing(3), missing(4), missing(5), missing(6), { problem: 7 }, good[1], missing(9)];
  const file = path.join(TMP, 'mixed.json'), only = path.join(TMP, 'good.json');
  writeFileSync(file, JSON.stringify(all));
  writeFileSync(only, JSON.stringify(good));
  await rejectsLike(sft(file, 'fail', { onBadRow: 'fail' }), RangeError,
    /onBadRow: 'fail'\) but found 8 bad rows: .*mixed\.json: 8 bad rows: 7 missing media \(rows 1-6, 9; .*1 malformed \(rows 7;/);
  assert.not.ok(existsSync(path.join(TMP, 'fail', 'metrics.jsonl')), 'no step ran');
  await rejectsLike(sft(file, 'bad-policy', { onBadRow: 'ignore' as never }), RangeError, /onBadRow/);

  const { value: r, err } = await stderrOf(() => sft(file, 'skip'));
  assert.match(err, /skipping 8 bad rows \(onBadRow: 'skip'\): .*mixed\.json: 8 bad rows: 7 missing media \(rows 1-6, 9; /);
  assert.equal(r.badRows.map((b) => [b.index, b.reason]), [[1, 'missingMedia'], [2, 'missingMedia'], [3, 'missingMedia'], [4, 'missingMedia'],
    [5, 'missingMedia'], [6, 'missingMedia'], [7, 'invalid'], [9, 'missingMedia']]);
  assert.is(r.step, 1);
  const ref = await sft(only, 'only');
  assert.equal(ref.badRows, []);
  const lines = (run: string) => readFileSync(path.join(TMP, run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number; tokens: number });
  const [a] = lines('skip'), [b] = lines('only');
  assert.equal([a!.loss, a!.tokens], [b!.loss, b!.tokens], 'the same step as on the good rows alone');
  // Nothing usable: an error (after the report), not a run of nothing.
  writeFileSync(path.join(TMP, 'none.json'), JSON.stringify([missing(0), missing(1)]));
  const none = await stderrOf(() => rejectsLike(sft(path.join(TMP, 'none.json'), 'none'), RangeError, /Expected some training rows .* none is usable/));
  assert.match(none.err, /skipping 2 bad rows .*rows 0-1/);
});

test('maxAnswerTokens: an answer (process + solution + end of turn) over the limit is a bad row, one at the limit is kept', async () => {
  const m = await loadModel(CKPT);
  const len = (row: { process?: string; solution: string }) => m.tokenizer!.encode((row.process ?? '') + row.solution, { addSpecialTokens: false }).length + 1;
  m.dispose(); m.checkpoint.dispose();
  const rows = [
    text('short?', '<answer>A</answer>'),                                                  // 0
    text('long?', `<answer>${'the cat sat on the mat and then '.repeat(4)}</answer>`),     // 1
    text('limit?', '<answer>what happens in this clip</answer>'),                          // 2: defines the limit
    text('over?', '<answer>what happens in this clip?</answer>'),                          // 3: a little longer
    text('thinks?', '<answer>B</answer>', { process: '<think>the cat sat on the mat, and why</think>' }),  // 4: long only with its process
  ];
  const limit = len(rows[2]!);
  assert.ok(len(rows[0]!) <= limit && len(rows[1]!) > limit && len(rows[3]!) > limit && len(rows[4]!) > limit && len({ solution: rows[4]!.solution }) <= limit,
    `the lengths make the case: ${rows.map(len).join(', ')} with limit ${limit}`);
  const file = path.join(TMP, 'answers.json');
  writeFileSync(file, JSON.stringify([...rows, missing(5)]));
  const fail = await sft(file, 'long-fail', { onBadRow: 'fail', maxAnswerTokens: limit }).then(() => null, (e: Error) => e);
  assert.instance(fail, RangeError);
  const msg = fail!.message;
  assert.ok(msg.includes('found 4 bad rows'), msg);
  assert.ok(msg.includes(`1 missing media (rows 5;`), msg);
  assert.ok(msg.includes(`3 answer over the token limit (rows 1, 3-4; e.g. row 1: ${len(rows[1]!)} tokens, over maxAnswerTokens ${limit}; row 3: ${len(rows[3]!)} tokens`), msg);
  assert.not.ok(existsSync(path.join(TMP, 'long-fail', 'metrics.jsonl')), 'no step ran');

  const { value: r, err } = await stderrOf(() => sft(file, 'long-skip', { maxAnswerTokens: limit }));
  assert.equal(r.badRows.map((b) => [b.index, b.reason]), [[1, 'answerTooLong'], [3, 'answerTooLong'], [4, 'answerTooLong'], [5, 'missingMedia']], 'in file order');
  assert.match(err, /skipping 4 bad rows/);
  // One more token and row 3 fits; the default (1024) keeps every one.
  const { value: r2 } = await stderrOf(() => sft(file, 'long-skip2', { maxAnswerTokens: len(rows[3]!) }));
  assert.ok(!r2.badRows.some((b) => b.index === 3 || b.index === 2), 'rows 2 and 3 kept');
  const { value: r3 } = await stderrOf(() => sft(file, 'long-default'));
  assert.equal(r3.badRows.map((b) => b.index), [5]);
  // Every answer over the limit: nothing left is an error, not a run of nothing.
  await stderrOf(() => rejectsLike(sft(file, 'long-none', { maxAnswerTokens: 1 }), RangeError, /none is left \(6 bad\)/));
  await rejectsLike(sft(file, 'long-bad', { maxAnswerTokens: 0 }), RangeError, /maxAnswerTokens/);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));

test.run();
