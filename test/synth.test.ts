// The synthetic benchmark: every label re-derived by an independent simulation (time-stepped, from
// the stored starts and speeds, without the removed ball), the videos checked against the stored
// scenes (ball centroids measured in the decoded frames; frames equal to the renderer's, since the
// codecs are lossless), the split shares, determinism, the variant, the tokenizer (loaded by
// QwenTokenizer, every prompt and completion round-trips), option errors and the CLI.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  buildPrompt, COLOURS, decodeFrameBatch, decodeVideo, PALETTES, QwenTokenizer, renderScene, synth, type SynthRow,
} from '../src/index.js';
import { rejectsLike } from './helpers.js';
import { cli, HAVE_FFMPEG, skipWithoutFfmpeg } from './synth_fixture.js';

const TMP = mkdtempSync(path.join(tmpdir(), 'vt-synth-test-'));
const read = (dir: string, f: string) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as SynthRow[];
const SPLITS = ['train.json', 'test.json', 'test_variant.json'];

// Three sets: the defaults (the removed ball marked, a fixed colour set); every knob moved (6
// balls named by lane, random colours with shuffled options, shaded lanes, starts apart so the
// runner-up must be extrapolated, a close leader, jitter and noise, descriptive questions, the FFV1
// codec); and the defaults with descriptive questions (which ball is marked, first, second).
const DEFAULT_DIR = path.join(TMP, 'default');
const HARD_DIR = path.join(TMP, 'hard');
const DESC_DIR = path.join(TMP, 'desc');
const ready = HAVE_FFMPEG ? Promise.all([
  synth({ out: DEFAULT_DIR, train: 300, test: 100, variant: 100, seed: 7 }),
  synth({ out: HARD_DIR, train: 150, test: 60, variant: 40, seed: 8, objects: 6, height: 84, startSpread: 0.15, leadGap: 0.05, minGap: 0.05, packLow: 0.3,
    jitter: 1, noise: 3, descriptiveShare: 0.2, codec: 'ffv1', nameBy: 'lane', colourSet: 'random', laneShade: 20, variantOptions: { objects: 5 } }),
  synth({ out: DESC_DIR, train: 60, test: 30, variant: 0, seed: 9, descriptiveShare: 0.5, markRadius: 3 }),
]) : null;
ready?.catch(() => { /* reported by the tests that await it */ });

/** Time-stepped race: the first ball (not in lane `without`) whose position reaches 1. */
function simulatedWinner(objects: SynthRow['scene']['objects'], without?: number): string {
  const balls = objects.filter((b) => b.lane !== without);
  const dt = 1e-3;
  for (let step = 1; step < 1e6; step++) {
    const t = step * dt;
    const over = balls.filter((b) => b.start + b.speed * t >= 1);
    if (over.length === 1) return over[0]!.colour;
    if (over.length > 1) {
      // two crossings within one step: the one further past the line crossed first only when speeds match; refine
      const first = over.map((b) => ({ c: b.colour, t: (1 - b.start) / b.speed })).sort((a, b) => a.t - b.t);
      assert.ok(first[1]!.t - first[0]!.t > 1e-9, 'no exact tie');
      return first[0]!.c;
    }
  }
  throw new Error('no ball finished');
}

const letterOf = (row: SynthRow, colour: string) => row.options.find((o) => o.endsWith(` ${colour}`))!.split('.')[0]!;
const colourOf = (row: SynthRow, letter: string) => row.options.find((o) => o.startsWith(`${letter}.`))!.slice(3);

test('labels: every question re-simulated without the removed ball gives its answer and its type', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  let checked = 0;
  const sets = { fixed: 0, random: 0, shuffled: 0 };
  for (const dir of [DEFAULT_DIR, HARD_DIR, DESC_DIR]) {
    for (const f of SPLITS) {
      if (!existsSync(path.join(dir, f))) continue;
      for (const row of read(dir, f)) {
        const sc = row.scene;
        const N = sc.objects.length;
        assert.equal(row.options.map((o) => o.slice(3)).sort(), sc.objects.map((b) => b.colour).sort(), 'one option per ball');
        assert.equal(row.options.map((o) => o.slice(0, 1)), 'ABCDEFGH'.slice(0, N).split(''), 'letters A, B, ...');
        const inPaletteOrder = row.options.every((o, i) => o.slice(3) === COLOURS[i]);
        if (sc.colour_set === 'fixed') assert.ok(inPaletteOrder, `${f} ${row.problem_id}: a fixed set is the first ${N} colours, in that order`);
        else if (!inPaletteOrder) sets.shuffled++;
        sets[sc.colour_set]++;
        assert.is(row.question.named_by, sc.name_by);
        if (sc.name_by === 'mark') {
          assert.ok(sc.marked! >= 1 && sc.marked! <= N, 'every marked scene marks one ball');
          assert.is(sc.mark_radius, dir === DESC_DIR ? 3 : 2);
        } else {
          assert.is(sc.marked, undefined, 'no mark when questions name lanes');
        }
        const observed = simulatedWinner(sc.objects);
        assert.is(row.question.observed_winner, observed, `${f} ${row.problem_id}: observed winner`);
        assert.is(row.shortcut_answer, letterOf(row, observed), 'the shortcut answer is the observed winner');
        const answer = colourOf(row, /<answer>([A-H])<\/answer>/.exec(row.solution)![1]!);
        assert.is(answer, row.question.answer);
        const byLane = /^If the ball in lane (\d) were removed, which ball would finish first\?$/.exec(row.problem);
        const byMark = row.problem === 'If the marked ball were removed, which ball would finish first?';
        assert.ok(!byMark || sc.name_by === 'mark');
        assert.ok(!byLane || sc.name_by === 'lane');
        const m = byLane || byMark;
        if (m) {
          const lane = byLane ? Number(byLane[1]) : sc.marked!;
          assert.is(row.question.lane, lane);
          assert.ok(lane >= 1 && lane <= N);
          assert.is(answer, simulatedWinner(sc.objects, lane), `${f} ${row.problem_id}: the counterfactual answer`);
          assert.is(row.question_type, answer === observed ? 'observational' : 'inferential', 'the type follows from the answer');
          // the removed ball is never named by a colour: the question has no answer word
          for (const c of COLOURS) assert.not.ok(row.problem.includes(c));
        } else if (row.problem === 'Which ball finishes first?') {
          assert.is(row.question_type, 'descriptive');
          assert.is(answer, observed);
        } else if (row.problem === 'Which ball finishes second?') {
          assert.is(row.question_type, 'descriptive');
          // the runner-up: the winner of the race without the observed winner
          assert.is(answer, simulatedWinner(sc.objects, sc.objects.find((b) => b.colour === observed)!.lane));
        } else if (row.problem === 'Which ball is marked?') {
          assert.is(row.question_type, 'descriptive');
          assert.is(answer, sc.objects.find((b) => b.lane === sc.marked)!.colour);
        } else {
          const l = /^Which ball is in lane (\d)\?$/.exec(row.problem);
          assert.ok(l, `an unknown question: ${row.problem}`);
          assert.is(row.question_type, 'descriptive');
          assert.is(answer, sc.objects.find((b) => b.lane === Number(l![1]))!.colour);
        }
        // the reference reasoning names the right balls
        assert.ok(row.process.startsWith('<think>') && row.process.endsWith('</think>'));
        if (m) assert.ok(row.process.includes(`the ${answer} ball finishes first.</think>`));
        if (byMark) assert.ok(row.process.startsWith(`<think>The marked ball is the ${sc.objects.find((b) => b.lane === sc.marked)!.colour} ball.`));
        checked++;
      }
    }
  }
  assert.is(checked, 300 + 100 + 100 + 150 + 60 + 40 + 60 + 30);
  assert.equal([sets.fixed, sets.random], [500 + 90, 250]);
  assert.ok(sets.shuffled > 0.9 * sets.random, 'random sets shuffle their options');
  const kinds = new Set([...read(DESC_DIR, 'train.json'), ...read(DESC_DIR, 'test.json')].map((r) => r.question.kind));
  assert.equal([...kinds].sort(), ['counterfactual', 'marked', 'second', 'winner'], 'every descriptive kind occurs');
});

test('videos: the decoded frames are the rendered ones, and the balls are where the scene says', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  for (const [dir, jitter] of [[DEFAULT_DIR, 0], [HARD_DIR, 1]] as const) {
    const rows = read(dir, 'test.json');
    // the package's own decoder (ffprobe + qwen-vl-utils sampling) on a few files ...
    for (const row of rows.slice(0, 3)) {
      const d = await decodeVideo(path.join(dir, row.path), { fps: row.scene.fps, minFrames: row.scene.frames, maxFrames: row.scene.frames });
      assert.equal(d.indices, Array.from({ length: row.scene.frames }, (_, i) => i), 'every frame is sampled');
      const want = renderScene(row.scene);
      d.frames.forEach((f, t) => assert.ok(Buffer.from(f.data).equals(Buffer.from(want[t]!)), `${row.path} frame ${t}: lossless`));
    }
    // ... and all of them batched
    const all = await decodeFrameBatch(rows.map((r) => path.join(dir, r.path)), rows[0]!.scene);
    rows.forEach((row, i) => {
      const want = renderScene(row.scene);
      all[i]!.forEach((f, t) => assert.ok(Buffer.from(f.data).equals(Buffer.from(want[t]!)), `${row.path} frame ${t}`));
      if (jitter || row.scene.noise) return;
      // Measured without the renderer: pixels near the ball's colour in its lane, their centroid.
      const { width: W, height: H } = row.scene;
      const N = row.scene.objects.length;
      all[i]!.forEach((f, t) => {
        let best = { x: -1, c: '' };
        for (const b of row.scene.objects) {
          let sw = 0, sx = 0;
          for (let y = Math.floor(((b.lane - 1) * H) / N); y < Math.floor((b.lane * H) / N); y++) {
            for (let x = 0; x < W; x++) {
              const p = 3 * (y * W + x);
              const d = Math.abs(f.data[p]! - b.rgb[0]) + Math.abs(f.data[p + 1]! - b.rgb[1]) + Math.abs(f.data[p + 2]! - b.rgb[2]);
              if (d < 12) { sw++; sx += x; }
            }
          }
          assert.ok(sw > 10, `${row.path} frame ${t}: the ${b.colour} ball is visible in lane ${b.lane}`);
          const want = row.scene.start_x + (row.scene.finish_x - row.scene.start_x) * (b.start + b.speed * t / row.scene.fps);
          assert.ok(Math.abs(sx / sw - want) < 0.5, `${row.path} frame ${t}: ${b.colour} at x ${(sx / sw).toFixed(2)}, scene says ${want.toFixed(2)}`);
          if (sx / sw > best.x) best = { x: sx / sw, c: b.colour };
        }
        if (t === row.scene.frames - 1) assert.is(best.c, row.question.observed_winner, 'the observed winner leads in the last frame');
        // the mark: white at the marked ball's centre, the ball's own colour at every other centre
        for (const b of row.scene.objects) {
          const cx = row.scene.start_x + (row.scene.finish_x - row.scene.start_x) * (b.start + b.speed * t / row.scene.fps);
          const cy = ((b.lane - 0.5) * H) / N - 0.5;
          const p = 3 * (Math.round(cy) * W + Math.round(cx));
          const px = [f.data[p]!, f.data[p + 1]!, f.data[p + 2]!];
          if (b.lane === row.scene.marked) assert.ok(px.every((v) => v > 235), `${row.path} frame ${t}: the mark on the ${b.colour} ball (${px})`);
          else assert.ok(Math.abs(px[0]! - b.rgb[0]) + Math.abs(px[1]! - b.rgb[1]) + Math.abs(px[2]! - b.rgb[2]) < 12, `${row.path} frame ${t}: no mark on the ${b.colour} ball`);
        }
      });
    });
  }
});

test('splits: train 74/26, the test splits balanced, descriptive share exact', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  const count = (dir: string, f: string) => {
    const c = { observational: 0, inferential: 0, descriptive: 0 };
    for (const r of read(dir, f)) c[r.question_type]++;
    return c;
  };
  assert.equal(count(DEFAULT_DIR, 'train.json'), { observational: 222, inferential: 78, descriptive: 0 });
  assert.equal(count(DEFAULT_DIR, 'test.json'), { observational: 50, inferential: 50, descriptive: 0 });
  assert.equal(count(DEFAULT_DIR, 'test_variant.json'), { observational: 50, inferential: 50, descriptive: 0 });
  assert.equal(count(HARD_DIR, 'train.json'), { observational: 89, inferential: 31, descriptive: 30 });
  assert.equal(count(HARD_DIR, 'test.json'), { observational: 24, inferential: 24, descriptive: 12 });
  const meta = JSON.parse(readFileSync(path.join(DEFAULT_DIR, 'synth.json'), 'utf8'));
  assert.equal(meta.splits.train, { file: 'train.json', count: 300, observational: 222, inferential: 78, descriptive: 0 });
  // the types are shuffled, not in blocks
  const types = read(DEFAULT_DIR, 'train.json').map((r) => r.question_type);
  assert.ok(types.slice(0, 100).includes('inferential') && types.slice(200).includes('inferential'));
  // paths are relative to the JSON's folder and name existing files; one video per question
  const paths = read(DEFAULT_DIR, 'train.json').map((r) => r.path);
  assert.is(new Set(paths).size, 300);
  for (const p of paths) assert.ok(!path.isAbsolute(p) && existsSync(path.join(DEFAULT_DIR, p)));
  assert.is(readdirSync(path.join(DEFAULT_DIR, 'videos', 'train')).length, 300);
});

test('the variant: other shades, background, size and speeds; the same task', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  const test_ = read(DEFAULT_DIR, 'test.json'), variant = read(DEFAULT_DIR, 'test_variant.json');
  assert.ok(variant.every((r) => r.data_source === 'synth_variant') && test_.every((r) => r.data_source === 'synth'));
  for (const r of variant) {
    for (const b of r.scene.objects) {
      assert.equal(b.rgb, PALETTES.variant[b.colour]);
      assert.not.equal(b.rgb, PALETTES.standard[b.colour]);
    }
    assert.is(r.scene.radius, test_[0]!.scene.radius - 1);
    assert.not.equal(r.scene.background, test_[0]!.scene.background);
  }
  // a pack that finishes closer to the leader: the slowest ball's progress is at least 0.35 (0.2 in the standard set)
  const slowest = (rows: SynthRow[]) => Math.min(...rows.flatMap((r) => r.scene.objects.map((b) => b.end)));
  assert.ok(slowest(variant) >= 0.35 - 1e-6 && slowest(test_) < 0.35);
  assert.ok(read(HARD_DIR, 'test_variant.json').every((r) => r.scene.objects.length === 5), 'variantOptions override the variant');
});

test('determinism: the same seed gives the same bytes of every JSON file and the same frames; another seed another set', async () => {
  if (skipWithoutFfmpeg()) return;
  const opts = { train: 20, test: 6, variant: 4, descriptiveShare: 0.25, concurrency: 3 };
  const [a, b, c] = [path.join(TMP, 'det-a'), path.join(TMP, 'det-b'), path.join(TMP, 'det-c')];
  await synth({ out: a, seed: 11, ...opts });
  await synth({ out: b, seed: 11, ...opts, concurrency: 1 });
  await synth({ out: c, seed: 12, ...opts });
  for (const f of [...SPLITS, 'tokenizer.json', 'tokenizer_config.json', 'chat_template.json', 'synth.json']) {
    assert.ok(readFileSync(path.join(a, f)).equals(readFileSync(path.join(b, f))), `${f} is byte-identical`);
  }
  assert.not.ok(readFileSync(path.join(a, 'train.json')).equals(readFileSync(path.join(c, 'train.json'))), 'another seed');
  const rows = read(a, 'train.json');
  const fa = await decodeFrameBatch(rows.map((r) => path.join(a, r.path)), rows[0]!.scene);
  const fb = await decodeFrameBatch(rows.map((r) => path.join(b, r.path)), rows[0]!.scene);
  fa.forEach((v, i) => v.forEach((f, t) => assert.ok(Buffer.from(f.data).equals(Buffer.from(fb[i]![t]!.data)), `video ${i} frame ${t}`)));
  // the tokenizer depends on the templates, not on the draw
  assert.ok(readFileSync(path.join(a, 'tokenizer.json')).equals(readFileSync(path.join(c, 'tokenizer.json'))));
});

test('tokenizer: loads in QwenTokenizer; every prompt and completion round-trips with no unknown piece', async () => {
  if (skipWithoutFfmpeg()) return;
  await ready;
  for (const dir of [DEFAULT_DIR, HARD_DIR]) {
    const tok = QwenTokenizer.fromDir(dir)!;
    assert.ok(tok, 'tokenizer.json loads');
    const meta = JSON.parse(readFileSync(path.join(dir, 'synth.json'), 'utf8'));
    const tj = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const unk = tj.model.vocab['<unk>'];
    assert.is(unk, 0);
    assert.is(Object.keys(tj.model.vocab).length + tj.added_tokens.length, meta.tokenizer.size);
    assert.ok(meta.tokenizer.size < 300, `a small vocabulary (${meta.tokenizer.size})`);
    for (const t of ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|vision_start|>', '<|vision_end|>', '<|image_pad|>', '<|video_pad|>', '<think>', '</think>', '<answer>', '</answer>']) {
      const ids = tok.encode(t);
      assert.is(ids.length, 1, `${t} is one token`);
      assert.is(ids[0], tok.tokenId(t));
    }
    assert.ok(tok.eosTokenIds.includes(tok.tokenId('<|im_end|>')!));
    for (const f of SPLITS) {
      for (const row of read(dir, f)) {
        const prompt = tok.applyChatTemplate([{ role: 'user', content: [{ type: 'video' }, { type: 'text', text: buildPrompt(row) }] }]);
        const completion = row.process + row.solution;
        const text = prompt + completion + '<|im_end|>\n';
        const ids = tok.encode(text);
        assert.not.ok(ids.includes(unk), `no <unk> in ${f} row ${row.problem_id}`);
        assert.is(tok.decode(ids, { skipSpecialTokens: false }), text, 'round trip');
        const c = tok.encode(completion);
        assert.is(tok.decode(c), completion, 'the completion decodes with its tags (they are not special)');
        assert.ok(c.length < 60, `a short completion (${c.length} tokens)`);
      }
    }
    // an unknown word becomes <unk>: the check above is not vacuous
    assert.ok(tok.encode('If the zebra were removed').includes(unk));
  }
});

test('errors: options are checked and named; a failed run leaves nothing behind', async () => {
  const out = path.join(TMP, 'bad');
  await rejectsLike(synth({ out, objects: 3 }), RangeError, /integer in \[4, 8\] for options\.objects but received 3/);
  await rejectsLike(synth({ out, width: 100 }), RangeError, /multiple of 28 .* for options\.width but received 100/);
  await rejectsLike(synth({ out, frames: 7 }), RangeError, /even number of frames .* for options\.frames but received 7/);
  await rejectsLike(synth({ out, objects: 6, height: 84, minGap: 0.3 }), RangeError, /for options\.minGap but received 0\.3/);
  await rejectsLike(synth({ out, radius: 9 }), RangeError, /for options\.radius/);
  await rejectsLike(synth({ out, markRadius: 6 }), RangeError, /radius below the balls' \(6\).* for options\.markRadius but received 6/);
  await rejectsLike(synth({ out, nameBy: 'colour' as never }), RangeError, /'mark', 'lane' for options\.nameBy/);
  await rejectsLike(synth({ out, colourSet: 'all' as never }), RangeError, /'fixed', 'random' for options\.colourSet/);
  await rejectsLike(synth({ out, laneShade: -1 }), RangeError, /options\.laneShade/);
  await rejectsLike(synth({ out, startSpread: 0.5 }), RangeError, /below packLow .* for options\.startSpread/);
  await rejectsLike(synth({ out, train: -1 }), RangeError, /options\.train/);
  await rejectsLike(synth({ out, train: 0, test: 0, variant: 0 }), RangeError, /at least one question/);
  await rejectsLike(synth({ out, codec: 'h265' as never }), RangeError, /'x264rgb', 'ffv1' for options\.codec/);
  await rejectsLike(synth({ out, colour: 'red' } as never), RangeError, /no such option .* for options\.colour/);
  await rejectsLike(synth({ out, variantOptions: { train: 3 } as never }), RangeError, /options\.variantOptions\.train/);
  await rejectsLike(synth({ out, variantOptions: { objects: 9 } }), RangeError, /options\.variantOptions\.objects/);
  await rejectsLike(synth({ out: '' }), TypeError, /output folder path for options\.out/);
  await rejectsLike(synth(undefined as never), TypeError, /options object \(with out\) for options but received undefined/);
  await rejectsLike(synth({ out, train: 3, test: 0, variant: 0, ffmpeg: '/nonexistent/ffmpeg' }), Error, /ffmpeg not found on PATH \(as '\/nonexistent\/ffmpeg'\)/);
  assert.not.ok(existsSync(out), 'no output folder');
  assert.equal(readdirSync(TMP).filter((f) => f.includes('.tmp-')), [], 'no temporary folder left');
  if (skipWithoutFfmpeg()) return;
  await ready;
  await rejectsLike(synth({ out: DEFAULT_DIR, train: 1 }), Error, /exists: remove it or pass overwrite: true/);
  const ac = new AbortController();
  const p = synth({ out, train: 400, test: 0, variant: 0, signal: ac.signal, onProgress: ({ done }) => { if (done === 5) ac.abort(new Error('stop here')); } });
  await rejectsLike(p, Error, /stop here/);
  assert.not.ok(existsSync(out), 'an aborted run leaves no folder');
});

test('CLI: synth as a user runs it gives the API\'s files; bad options exit 2, bad values 1', async () => {
  if (skipWithoutFfmpeg()) return;
  const out = path.join(TMP, 'cli');
  const r = cli('synth', '--out', out, '--train', '8', '--test', '4', '--variant', '2', '--seed', '5', '--objects', '5', '--radius', '4', '--lead-gap', '0.2',
    '--name-by', 'lane', '--colour-set', 'random', '--lane-shade', '10', '--quiet');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /train\.json\s+8 questions: 6 observational, 2 inferential, 0 descriptive/);
  assert.is(r.stderr, '', '--quiet');
  const api = path.join(TMP, 'cli-api');
  await synth({ out: api, train: 8, test: 4, variant: 2, seed: 5, objects: 5, radius: 4, leadGap: 0.2, nameBy: 'lane', colourSet: 'random', laneShade: 10 });
  for (const f of SPLITS) assert.ok(readFileSync(path.join(out, f)).equals(readFileSync(path.join(api, f))), `${f}: the CLI passes its options through`);
  const again = cli('synth', '--out', out, '--train', '2', '--test', '0', '--variant', '0', '--quiet');
  assert.is(again.status, 1);
  assert.match(again.stderr, /exists: remove it or pass overwrite: true \(--force\)/);
  const forced = cli('synth', '--out', out, '--train', '2', '--test', '0', '--variant', '0', '--quiet', '--force');
  assert.is(forced.status, 0, forced.stderr);
  assert.is(read(out, 'train.json').length, 2);
  assert.not.ok(existsSync(path.join(out, 'test.json')), '--force replaces the whole folder');
  const bad = cli('synth', '--out', path.join(TMP, 'x'), '--objects', '3');
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /RangeError: Expected an integer in \[4, 8\] for options\.objects but received 3/);
  const nan = cli('synth', '--out', path.join(TMP, 'x'), '--train', 'many');
  assert.is(nan.status, 1);
  assert.match(nan.stderr, /TypeError: Expected a number for --train but received 'many'/);
  const unknown = cli('synth', '--colour', 'red');
  assert.is(unknown.status, 2);
  assert.match(unknown.stderr, /videothinker synth: Unknown option '--colour'/);
  const extra = cli('synth', 'now');
  assert.is(extra.status, 2);
  assert.match(extra.stderr, /Unexpected argument 'now'/);
  assert.not.ok(existsSync(path.join(TMP, 'x')));
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
