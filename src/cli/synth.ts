// videothinker synth: the synthetic shortcut benchmark (videos, questions, tokenizer).
import { DEFAULT_SCENE, synth, type SynthOptions } from '../index.js';
import { COMMON_HELP, int, num, parse } from './args.js';

export const summary = 'writes the synthetic race benchmark: videos, train/test/test_variant questions, a word-level tokenizer';
const d = DEFAULT_SCENE;
export const help = `Usage: videothinker synth [--out DIR] [--train N] [--test N] [--variant N] [--seed S] [knobs]

Short videos of balls racing in lanes and counterfactual questions ("If the marked ball were
removed, which ball would finish first?") in the VideoThinker / Video-R1 JSON format. Observational:
the removed ball is not the winner (answer: the winner); inferential: it is (answer: the runner-up).
Writes DIR/train.json, test.json, test_variant.json (video paths relative to DIR), videos/,
tokenizer.json, tokenizer_config.json, chat_template.json and synth.json. Needs ffmpeg on PATH.

  --out DIR              output folder (default data/synth; must not exist unless --force)
  --train N              training questions, 74% observational / 26% inferential (default 6000)
  --test N               test questions, balanced (default 1000)
  --variant N            held-out test questions in other shades, speeds and sizes (default: --test; 0: none)
  --seed S               default 1: the same seed and options give the same files
  --inferential-share F  inferential share of train's counterfactual questions (default 0.26)
  --descriptive-share F  share of descriptive control questions in every split (default 0)
  --force                replace an existing output folder
  --quiet                no progress on stderr
Knobs (scene difficulty):
  --objects N            balls, 4 to 8 (default ${d.objects})
  --frames N             frames per video, even (default ${d.frames}) at --fps F (default ${d.fps})
  --width N --height N   frame size, multiples of 28 (default ${d.width} x ${d.height})
  --radius R             ball radius in pixels (default ${d.radius})
  --lead-gap F           the winner's least lead over the runner-up at the end, fraction of the track (default ${d.leadGap})
  --min-gap F            least gap between the other balls at the end (default ${d.minGap})
  --pack-low F           slowest ball's least progress at the end (default ${d.packLow})
  --start-spread F       balls start up to F of the track past the line (default ${d.startSpread})
  --noise S              pixel noise std in u8 levels (default ${d.noise}); --jitter P: position wobble in pixels (default ${d.jitter})
  --name-by M            how a question names the removed ball: mark (default: a white dot on it in
                         every frame) or lane ("the ball in lane 2")
  --mark-radius R        the mark's radius in pixels (default ${d.markRadius})
  --colour-set S         fixed (default: the first N colours, options always in that order) or
                         random (a random set per scene, options shuffled per question)
  --lane-shade L         lanes in shades of the background, +L levels at the top to -L at the bottom (default ${d.laneShade})
  --codec C              x264rgb (lossless H.264 RGB, .mp4; default) or ffv1 (.mkv)
  --concurrency N        ffmpeg processes at once (default: min(4, CPUs))
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const s = { type: 'string' } as const;
  const a = parse('synth', argv, {
    out: s, train: s, test: s, variant: s, seed: s, 'inferential-share': s, 'descriptive-share': s, force: { type: 'boolean' }, quiet: { type: 'boolean' },
    objects: s, frames: s, fps: s, width: s, height: s, radius: s, 'lead-gap': s, 'min-gap': s, 'pack-low': s, 'start-spread': s,
    noise: s, jitter: s, codec: s, concurrency: s, 'name-by': s, 'mark-radius': s, 'colour-set': s, 'lane-shade': s,
  }, 0);
  if (!a) { console.log(help); return 0; }
  const v = a.values;
  const opts: SynthOptions = { out: v.out ?? 'data/synth' };
  const set = <K extends keyof SynthOptions>(k: K, x: SynthOptions[K] | undefined) => { if (x !== undefined) opts[k] = x; };
  set('train', int('train', v.train)); set('test', int('test', v.test)); set('variant', int('variant', v.variant)); set('seed', int('seed', v.seed));
  set('inferentialShare', num('inferential-share', v['inferential-share'])); set('descriptiveShare', num('descriptive-share', v['descriptive-share']));
  set('objects', int('objects', v.objects)); set('frames', int('frames', v.frames)); set('fps', num('fps', v.fps));
  set('width', int('width', v.width)); set('height', int('height', v.height)); set('radius', num('radius', v.radius));
  set('leadGap', num('lead-gap', v['lead-gap'])); set('minGap', num('min-gap', v['min-gap'])); set('packLow', num('pack-low', v['pack-low']));
  set('startSpread', num('start-spread', v['start-spread'])); set('noise', num('noise', v.noise)); set('jitter', num('jitter', v.jitter));
  set('concurrency', int('concurrency', v.concurrency));
  set('markRadius', num('mark-radius', v['mark-radius'])); set('laneShade', num('lane-shade', v['lane-shade']));
  if (v['name-by'] !== undefined) opts.nameBy = v['name-by'] as SynthOptions['nameBy'];
  if (v['colour-set'] !== undefined) opts.colourSet = v['colour-set'] as SynthOptions['colourSet'];
  if (v.codec !== undefined) opts.codec = v.codec as SynthOptions['codec'];
  if (v.force) opts.overwrite = true;
  if (!v.quiet) {
    let last = '';
    opts.onProgress = ({ split, done, total }) => {
      const line = `${split}: ${Math.floor((10 * done) / total) * 10}%`;
      if (line !== last && (done === total || done % Math.max(1, Math.floor(total / 10)) === 0)) { process.stderr.write(line + '\n'); last = line; }
    };
  }
  const ac = new AbortController();
  const stop = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', stop);
  opts.signal = ac.signal;
  try {
    const r = await synth(opts);
    console.log(`wrote ${r.dir} in ${r.seconds.toFixed(1)} s`);
    for (const x of Object.values(r.splits)) {
      console.log(`  ${x.file.padEnd(18)} ${String(x.count).padStart(6)} questions: ${x.observational} observational, ${x.inferential} inferential, ${x.descriptive} descriptive`);
    }
    console.log(`  ${'tokenizer.json'.padEnd(18)} ${String(r.tokenizer.size).padStart(6)} tokens`);
  } finally {
    process.off('SIGINT', stop);
  }
  return 0;
}
