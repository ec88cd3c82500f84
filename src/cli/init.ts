// videothinker init: a randomly initialised Qwen2.5-VL checkpoint folder.
import { initModel, PRESETS, type InitOptions } from '../index.js';
import { COMMON_HELP, int, parse, UsageError } from './args.js';

export const summary = 'writes a randomly initialised Qwen2.5-VL checkpoint folder (presets tiny, small)';
const t = PRESETS.tiny, s = PRESETS.small;
export const help = `Usage: videothinker init --tokenizer FILE --out DIR [--preset tiny|small] [--seed S] [sizes]

${summary}: config.json, model.safetensors
(Hugging Face names, transformers' initialisation), the tokenizer files and chat template from the
tokenizer's folder, preprocessor_config.json and generation_config.json. loadModel reads it.

  --tokenizer FILE     tokenizer.json (e.g. data/synth/tokenizer.json): the vocabulary and special token ids
  --out DIR            output folder (must not exist unless --force)
  --preset P           tiny (hidden ${t.hiddenSize}, ${t.layers} layers, vision ${t.visionHidden} x ${t.visionDepth}) or
                       small (hidden ${s.hiddenSize}, ${s.layers} layers, vision ${s.visionHidden} x ${s.visionDepth}); default tiny
  --seed S             weights' seed (default 1)
  --dtype D            f32 (default) or bf16
  --force              replace an existing output folder
Sizes (override the preset):
  --hidden N --layers N --heads N --kv-heads N --intermediate N
  --vision-depth N --vision-hidden N --vision-heads N --vision-intermediate N --tie-embeddings
  --min-pixels N --max-pixels N   preprocessor_config.json's image budget (default 784 to the benchmark's frame)
${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const str = { type: 'string' } as const;
  const a = parse('init', argv, {
    tokenizer: str, out: str, preset: str, seed: str, dtype: str, force: { type: 'boolean' }, hidden: str, layers: str, heads: str,
    'kv-heads': str, intermediate: str, 'vision-depth': str, 'vision-hidden': str, 'vision-heads': str, 'vision-intermediate': str,
    'tie-embeddings': { type: 'boolean' }, 'min-pixels': str, 'max-pixels': str,
  }, 0);
  if (!a) { console.log(help); return 0; }
  const v = a.values;
  if (v.tokenizer === undefined) throw new UsageError('--tokenizer FILE is required (e.g. data/synth/tokenizer.json)', 'init');
  if (v.out === undefined) throw new UsageError('--out DIR is required', 'init');
  const o: InitOptions = { tokenizer: v.tokenizer, out: v.out };
  const set = <K extends keyof InitOptions>(k: K, x: InitOptions[K] | undefined) => { if (x !== undefined) o[k] = x; };
  if (v.preset !== undefined) o.preset = v.preset as InitOptions['preset'];
  if (v.dtype !== undefined) o.dtype = v.dtype as InitOptions['dtype'];
  set('seed', int('seed', v.seed)); set('hiddenSize', int('hidden', v.hidden)); set('layers', int('layers', v.layers)); set('heads', int('heads', v.heads));
  set('kvHeads', int('kv-heads', v['kv-heads'])); set('intermediateSize', int('intermediate', v.intermediate));
  set('visionDepth', int('vision-depth', v['vision-depth'])); set('visionHidden', int('vision-hidden', v['vision-hidden']));
  set('visionHeads', int('vision-heads', v['vision-heads'])); set('visionIntermediate', int('vision-intermediate', v['vision-intermediate']));
  set('minPixels', int('min-pixels', v['min-pixels'])); set('maxPixels', int('max-pixels', v['max-pixels']));
  if (v['tie-embeddings']) o.tieWordEmbeddings = true;
  if (v.force) o.overwrite = true;
  const r = await initModel(o);
  const c = r.config as { hidden_size: number; num_hidden_layers: number; vocab_size: number; torch_dtype: string };
  console.log(`wrote ${r.dir}: Qwen2.5-VL (${o.preset ?? 'tiny'}), hidden ${c.hidden_size}, ${c.num_hidden_layers} layers, vocab ${c.vocab_size}, ` +
    `${r.parameters.toLocaleString('en-US')} parameters (${c.torch_dtype})`);
  return 0;
}
