// Fuzz targets (issue 14): each turns a seed into one hostile input, deterministically, and runs
// the package on it. A case passes when the package returns, or throws a TypeError / RangeError of
// its own (a named message); it is a bug when it throws anything else (a JS error from a missing
// check: "Cannot read properties of undefined", "Invalid array length", ...), and a crash or a
// hang when the worker process dies or stops answering (run.ts counts those).
//
//   safetensors  files built by an independent writer, then mutated (header fields, lengths,
//                bytes, truncation, duplicate keys), read mapped or copied, every tensor touched
//   config       the tiny Qwen2.5-VL config.json with values swapped for hostile ones; a config
//                that is accepted and small enough runs a forward (text, and a video when it has
//                a vision tower)
//   tokenizer    random texts, ids and chat messages through the real tokenizer, and mutated
//                tokenizer.json / chat templates
//   processor    random sizes, frames, options and configs through the image/video processor
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { QwenModel } from '../../src/infer/model.js';
import { planFrames, processorConfigFromHF, QwenProcessor, smartResize, videoPixelBounds } from '../../src/inputs/index.js';
import { QwenTokenizer } from '../../src/inputs/tokenizer.js';
import { parameterShapes, qwenConfigFromHF } from '../../src/model/config.js';
import { readSafetensors } from '../../src/model/safetensors.js';
import { Tensor } from '../../src/tensor.js';
import { tinyTokenizer } from '../fixtures.js';
import { rng } from '../helpers.js';
import { HF } from '../qwen_fixture.js';

type Rand = () => number;
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** Errors that are bugs whatever their class: JS runtime errors a missing check lets through. */
const BUG = /Cannot (read|set) propert|is not a function|is not iterable|is not defined|is not a constructor|Maximum call stack|Invalid array length|Invalid typed array length|Array buffer allocation failed|Invalid string length|out of memory|unknown native error|undefined is not|null is not/i;

/** Whether an exception is the package's own answer to bad input. */
export function acceptable(e: unknown): boolean {
  if (!(e instanceof TypeError || e instanceof RangeError)) return false;
  // a third-party parser's own failure, wrapped in an error that names the checkpoint's file
  if (/^(Invalid tokenizer\.json|Invalid chat template|The chat template failed on these messages): /.test(e.message)) return true;
  return !BUG.test(e.message) && e.message.length > 0;
}

// The driver hands its workers a folder it removes itself (a worker that crashes cannot).
const tmp = process.env.VT_FUZZ_TMP ?? mkdtempSync(path.join(tmpdir(), 'vt-fuzz-'));
if (!process.env.VT_FUZZ_TMP) process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

// ---- safetensors ----------------------------------------------------------------------------

const DTYPES: [string, number][] = [['F32', 4], ['F16', 2], ['BF16', 2], ['I32', 4], ['I64', 8], ['U8', 1], ['BOOL', 1]];
const HOSTILE_NUMBERS = [0, -1, 1, 2, 7, 8, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 60, 1.5, -0.5, 1e308, -1e308, 255, 65536];
const HOSTILE_VALUES: unknown[] = [...HOSTILE_NUMBERS, null, true, false, '', '8', 'F32', [], {}, [1, 2, 3], [[1]], { a: 1 }, [-1], [0, 0, 0]];

function safetensorsBytes(r: Rand): Buffer {
  // a valid file first, from this writer (independent of the package's)
  const header: Record<string, unknown> = {};
  const datas: Buffer[] = [];
  let at = 0;
  const n = int(r, 0, 4);
  for (let i = 0; i < n; i++) {
    const [dt, es] = pick(r, DTYPES);
    const shape = Array.from({ length: int(r, 0, 3) }, () => int(r, 0, 5));
    const bytes = shape.reduce((a, b) => a * b, 1) * es;
    header[`t${i}`] = { dtype: dt, shape, data_offsets: [at, at + bytes] };
    const d = Buffer.alloc(bytes);
    for (let j = 0; j < bytes; j++) d[j] = int(r, 0, 255);
    datas.push(d);
    at += bytes;
  }
  if (r() < 0.3) header.__metadata__ = { format: 'pt', k: String(int(r, 0, 9)) };
  // header-level mutations
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  let text: string;
  for (let m = int(r, 0, 3); m > 0; m--) {
    const kind = int(r, 0, 5);
    if (kind === 0 && names.length) { const e = header[pick(r, names)] as Record<string, unknown>; e[pick(r, ['dtype', 'shape', 'data_offsets'])] = pick(r, HOSTILE_VALUES); }
    else if (kind === 1 && names.length) { const e = header[pick(r, names)] as Record<string, unknown>; delete e[pick(r, ['dtype', 'shape', 'data_offsets'])]; }
    else if (kind === 2 && names.length) { const e = header[pick(r, names)] as { data_offsets: number[] }; e.data_offsets = [int(r, -2, at + 8), int(r, -2, at + 8)]; }
    else if (kind === 3) header.__metadata__ = pick(r, [{ a: 1 }, [], 'x', null, { a: 'b', c: { d: 1 } }]);
    else if (kind === 4 && names.length) { const e = header[pick(r, names)] as { shape: number[] }; e.shape = Array.from({ length: int(r, 0, 17) }, () => pick(r, HOSTILE_NUMBERS)); }
    else header[`x${int(r, 0, 9)}`] = pick(r, HOSTILE_VALUES);
  }
  text = JSON.stringify(r() < 0.85 ? header : pick(r, [[header], 3, null, 'x', 'header']));
  if (r() < 0.15 && names.length) text = text.replace('{', `{"${names[0]}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}, `);  // a duplicate name
  let hb = Buffer.from(text, 'utf8');
  if (r() < 0.1) hb = Buffer.concat([hb, Buffer.from([0xff, 0xfe])]);  // invalid UTF-8
  if (r() < 0.5) hb = Buffer.concat([hb, Buffer.alloc((8 - (hb.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  let hl = BigInt(hb.length);
  if (r() < 0.15) hl = BigInt(pick(r, [0, 1, 7, hb.length - 1, hb.length + 1, 2 ** 31, 2 ** 53])) * (r() < 0.1 ? 2n ** 10n : 1n);
  len.writeBigUInt64LE(hl & (2n ** 64n - 1n));
  let file = Buffer.concat([len, hb, ...datas]);
  // byte-level mutations
  for (let m = r() < 0.4 ? int(r, 1, 4) : 0; m > 0; m--) {
    const kind = int(r, 0, 3);
    if (kind === 0 && file.length) file[int(r, 0, file.length - 1)] = int(r, 0, 255);
    else if (kind === 1) file = file.subarray(0, int(r, 0, file.length));
    else if (kind === 2) file = Buffer.concat([file, Buffer.alloc(int(r, 1, 16), int(r, 0, 255))]);
    else if (file.length > 8) file[int(r, 8, file.length - 1)] = pick(r, [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x2c, 0x00]);
  }
  return file;
}

function fuzzSafetensors(seed: number): void {
  const r = rng(seed);
  const file = path.join(tmp, `f${seed}.safetensors`);
  writeFileSync(file, safetensorsBytes(r));
  try {
    const st = readSafetensors(file, { mmap: r() < 0.5 });
    try {
      // every tensor read through, and its size what its shape says
      for (const [name, t] of st.tensors) {
        const a = t.toArray() as ArrayLike<number | bigint>;
        if (a.length !== t.numel) throw new Error(`tensor ${name}: ${a.length} elements read for shape [${t.shape.join(', ')}]`);
      }
      st.verify();
    } finally { st.dispose(); }
  } finally { rmSync(file, { force: true }); }
}

// ---- config.json ----------------------------------------------------------------------------

const CONFIG_VALUES: unknown[] = [...HOSTILE_NUMBERS, 3, 4, 14, 16, 28, 32, 64, 112, 1e9, 1e-300, null, true, '2', [], {}, [1, 2, 1], [2, 1, 1], [0, 0, 0], [4], [-1], [0, 1, 2], [100]];

function fuzzConfig(seed: number): void {
  const r = rng(seed);
  const cfg = JSON.parse(JSON.stringify(HF)) as Record<string, unknown> & { vision_config: Record<string, unknown>; rope_scaling: Record<string, unknown> };
  const top = ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'intermediate_size', 'vocab_size', 'rms_norm_eps',
    'rope_theta', 'tie_word_embeddings', 'image_token_id', 'video_token_id', 'vision_start_token_id', 'rope_scaling', 'vision_config', 'text_config'];
  const vis = ['depth', 'hidden_size', 'num_heads', 'intermediate_size', 'out_hidden_size', 'patch_size', 'temporal_patch_size', 'spatial_merge_size',
    'window_size', 'fullatt_block_indexes', 'tokens_per_second', 'in_channels', 'in_chans'];
  for (let m = int(r, 1, 4); m > 0; m--) {
    const where = int(r, 0, 3);
    if (where === 0) { const k = pick(r, top); if (r() < 0.15) delete cfg[k]; else cfg[k] = pick(r, CONFIG_VALUES); }
    else if (where === 1 && cfg.vision_config && typeof cfg.vision_config === 'object') { const k = pick(r, vis); if (r() < 0.15) delete cfg.vision_config[k]; else cfg.vision_config[k] = pick(r, CONFIG_VALUES); }
    else if (where === 2 && cfg.rope_scaling && typeof cfg.rope_scaling === 'object') cfg.rope_scaling.mrope_section = pick(r, CONFIG_VALUES);
    else cfg.text_config = { hidden_size: pick(r, [16, 32, 64, 0, -8, 7]), num_attention_heads: pick(r, [1, 2, 4, 3]) };
  }
  const json = JSON.parse(JSON.stringify(cfg)) as unknown;  // as config.json gives it (NaN -> null)
  const c = qwenConfigFromHF(json);
  // accepted: the shapes are consistent, and a small enough model runs
  const { shapes } = parameterShapes(c);
  let params = 0;
  for (const s of shapes.values()) params += s.reduce((a, b) => a * b, 1);
  if (params > 400_000 || c.vocabSize > 4096 || c.numLayers > 4 || (c.vision?.depth ?? 0) > 4) return;
  const weights = new Map<string, Tensor>();
  let s = seed;
  for (const [k, sh] of shapes) weights.set(k, Tensor.randn(sh, { seed: s++ & 0x7fffffff, std: 0.05 }));
  const model = new QwenModel(c, weights);
  try {
    const ids = [1 % c.vocabSize, 2 % c.vocabSize, 3 % c.vocabSize];
    const text = model.forwardSync({ inputIds: ids, logits: 'last' });
    text.dispose();
    const v = c.vision;
    if (v && v.spatialMergeSize <= 4 && v.patchSize <= 16 && v.temporalPatchSize <= 4 && v.inChannels <= 4) {
      const m = v.spatialMergeSize, grid: [number, number, number] = [1, 2 * m, 2 * m];
      const K = v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize;
      const px = Tensor.randn([4 * m * m, K], { seed: 1 });
      const tokens = [c.visionStartTokenId, ...new Array<number>(4).fill(c.videoTokenId), 1].map((x) => x % c.vocabSize);
      try {
        const out = model.forwardSync({ inputIds: tokens, pixelValuesVideos: px, videoGridThw: [grid], secondPerGridTs: [r() * 4] });
        out.dispose();
      } finally { px.dispose(); }
    }
  } finally {
    model.dispose();
    for (const t of weights.values()) t.dispose();
  }
}

// ---- tokenizer and chat template -------------------------------------------------------------

const TOK = tinyTokenizer('what is in the video? the cat sat on the mat. what happens in this clip, and why?', 20);
let base: QwenTokenizer | undefined;

function randomText(r: Rand): string {
  const parts: string[] = [];
  for (let i = int(r, 0, 12); i > 0; i--) {
    const k = int(r, 0, 7);
    if (k === 0) parts.push(String.fromCodePoint(int(r, 0, 0x10ffff)).replace(/[\ud800-\udfff]/g, ''));
    else if (k === 1) parts.push(String.fromCharCode(int(r, 0xd800, 0xdfff)));  // a lone surrogate
    else if (k === 2) parts.push(pick(r, ['<|im_start|>', '<|im_end|>', '<|video_pad|>', '<|image_pad|>', '<|vision_start|>', '<|endoftext|>', '<|im_start', '|>']));
    else if (k === 3) parts.push(pick(r, ['a', ' ', '\n', '\u0301', 'é', '🎥', '\u0000', '\t']).repeat(int(r, 1, 2000)));
    else if (k === 4) parts.push(pick(r, ['what', ' is', ' the', ' cat', '?', '.', ',']));
    else if (k === 5) parts.push(String(int(r, -1e6, 1e6)));
    else parts.push(' '.repeat(int(r, 0, 3)) + 'x'.repeat(int(r, 0, 3)));
  }
  return parts.join('');
}

function randomMessages(r: Rand): unknown {
  const part = () => pick(r, [
    { type: 'text', text: randomText(r) }, { type: 'image' }, { type: 'video' }, { type: 'text' }, { type: 'audio' }, { type: 'text', text: 5 }, null, 'x',
  ]);
  const msg = () => pick(r, [
    { role: pick(r, ['user', 'assistant', 'system', '', 'tool']), content: r() < 0.5 ? randomText(r) : Array.from({ length: int(r, 0, 4) }, part) },
    { role: 5, content: 'x' }, { content: 'x' }, { role: 'user' }, { role: 'user', content: {} }, null,
  ]);
  return pick(r, [[], 'x', null, Array.from({ length: int(r, 1, 4) }, msg), Array.from({ length: int(r, 1, 3) }, () => ({ role: 'user', content: randomText(r) }))]);
}

function mutatedTokenizer(r: Rand): Record<string, unknown> {
  const j = structuredClone(TOK.json) as Record<string, unknown> & { model: Record<string, unknown>; pre_tokenizer: { pretokenizers: unknown[] } };
  for (let m = int(r, 1, 3); m > 0; m--) {
    const k = int(r, 0, 6);
    if (k === 0) j.model.type = pick(r, ['BPE', 'WordLevel', 'Unigram', 'WordPiece', 'Nope', 3]);
    else if (k === 1) j.model.merges = pick(r, [[], ['a b c'], [['a', 'b']], 'x', [5], null, ['Ġ t', 'Ġt he']]);
    else if (k === 2) j.model.vocab = pick(r, [{}, { a: -1 }, { a: 1e12 }, [], null, { '': 0 }]);
    else if (k === 3) j.added_tokens = pick(r, [[], null, [{ id: 5, content: '' }], [{ id: -1, content: 'x', special: true }], [{ id: 1e9, content: '<x>', special: true }], 'x']);
    else if (k === 4) j.pre_tokenizer.pretokenizers.unshift({ type: 'Split', pattern: { Regex: pick(r, ['(', '[a-', '\\p{L}+', '(?<=a)b', 'a{2,1}', '(a|aa)+$', '.*.*.*x', '']) }, behavior: pick(r, ['Isolated', 'Removed', 'MergedWithPrevious', 'Bad']), invert: r() < 0.5 });
    else if (k === 5) j.normalizer = pick(r, [null, { type: 'NFKC' }, { type: 'Lowercase' }, { type: 'Replace', pattern: { String: 'a' }, content: 'bb' }, { type: 'Nope' }, 5]);
    else j.decoder = pick(r, [null, { type: 'Fuse' }, { type: 'Nope' }, { type: 'Replace', pattern: { Regex: '(x+)+y' }, content: '' }]);
  }
  return j;
}

const TEMPLATES = [
  '{{ messages[0].content }}', '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}', '{{ messages', '{% if %}', '{{ 1/0 }}',
  '{{ messages[99].content }}', '{% for i in range(100000000) %}x{% endfor %}', '{{ "x" * 1000000 }}', '{{ raise_exception("no") }}',
  '{% set x = messages %}{% for m in x %}{% for n in x %}{{ n.role }}{% endfor %}{% endfor %}', '{{ messages | tojson }}', '',
];

function fuzzTokenizer(seed: number): void {
  const r = rng(seed);
  let tok: QwenTokenizer;
  if (r() < 0.6) {
    tok = base ??= new QwenTokenizer({ tokenizer: TOK.json });
  } else {
    tok = new QwenTokenizer({ tokenizer: r() < 0.7 ? mutatedTokenizer(r) : TOK.json, ...(r() < 0.5 ? { chatTemplate: pick(r, TEMPLATES) } : {}) });
  }
  tok.timeoutMs = 250;
  const text = randomText(r);
  const ids = tok.encode(text, r() < 0.2 ? { addSpecialTokens: true } : undefined);
  if (tok === base) {
    // the real tokenizer: what it encodes it decodes back (special tokens kept), surrogates aside
    const back = tok.decode(ids, { skipSpecialTokens: false });
    if (!/[\ud800-\udfff]/.test(text) && back !== text.normalize('NFC')) throw new Error(`round trip: ${JSON.stringify(text.slice(0, 60))} -> ${JSON.stringify(back.slice(0, 60))}`);
  }
  const junk = Array.from({ length: int(r, 0, 5) }, () => pick(r, [0, 1, 299, 300, 1e9, -1, 1.5, NaN, 2 ** 32]));
  tok.decode(r() < 0.5 ? Array.from(ids) : junk);
  tok.applyChatTemplate(randomMessages(r) as never, r() < 0.3 ? { addGenerationPrompt: pick(r, [true, false, 'yes' as never]) } : undefined);
  const sd = tok.streamDecoder();
  for (const id of Array.from(ids).slice(0, 20)) sd.push(id);
}

// ---- image and video processor ---------------------------------------------------------------

const SIZES = [0, 1, 2, 3, 13, 27, 28, 29, 56, 64, -1, 1.5, NaN, Infinity, 1e9, 2 ** 31];

function frame(r: Rand): unknown {
  const h = r() < 0.85 ? int(r, 1, 40) : pick(r, SIZES), w = r() < 0.85 ? int(r, 1, 40) : pick(r, SIZES);
  const n = Number.isSafeInteger(h) && Number.isSafeInteger(w) && h > 0 && w > 0 && h * w <= 4096 ? h * w * 3 : int(r, 0, 64);
  const len = r() < 0.9 ? n : int(r, 0, n + 8);
  const data = new Uint8Array(len).map(() => int(r, 0, 255));
  return pick(r, [{ data, height: h, width: w }, { data, height: h, width: w }, { data: Array.from(data), height: h, width: w }, { height: h, width: w }, null, 'x']);
}

function fuzzProcessor(seed: number): void {
  const r = rng(seed);
  const k = int(r, 0, 5);
  if (k === 0) {
    smartResize(pick(r, SIZES), pick(r, SIZES), pick(r, [28, 14, 0, -28, 1, 2.5]), pick(r, [0, 3136, -1, 1e12]), pick(r, [0, 1003520, 1, 1e12]));
  } else if (k === 1) {
    const total = r() < 0.8 ? int(r, 1, 3000) : pick(r, SIZES);
    const opts = pick(r, [{}, { fps: pick(r, [2, 0, -1, NaN, Infinity, 1e-9, 1e9]) }, { nframes: pick(r, [1, 2, 3, 4, 1e9, 0, -2, 2.5]) },
      { minFrames: pick(r, [1, 4, 0, 1e9]), maxFrames: pick(r, [2, 16, 1, 1e9]) }, { fps: 2, nframes: 4 }]);
    planFrames(total, pick(r, [30, 0.001, 0, -1, NaN, 1e9, 29.97]), opts as never);
    videoPixelBounds(pick(r, [1, 2, 16, 0, 1e9, -1]), pick(r, [{}, { totalPixels: pick(r, [0, 1, 1e12]) }, { maxPixels: pick(r, [0, 1e12]) }]));
  } else if (k === 2) {
    processorConfigFromHF(pick(r, [null, 5, [], {}, { patch_size: pick(r, SIZES) }, { merge_size: pick(r, SIZES), temporal_patch_size: pick(r, SIZES) },
      { image_mean: pick(r, [[0.5], [1, 2, 3], 'x', [NaN, 0, 0]]) }, { size: { shortest_edge: pick(r, SIZES), longest_edge: pick(r, SIZES) } },
      { min_pixels: pick(r, SIZES), max_pixels: pick(r, SIZES) }, { do_rescale: 'no' }, { rescale_factor: pick(r, [0, -1, 1e300]) }]));
  } else if (k === 3) {
    const p = new QwenProcessor(pick(r, [{}, {}, { patchSize: pick(r, [7, 14, 0, 3.5]) }, { mergeSize: pick(r, [1, 2, 0]) }, { minPixels: pick(r, [1, 784, 0]), maxPixels: pick(r, [784, 1e9, 0]) }]) as never);
    const out = r() < 0.5 ? p.image(frame(r) as never, r() < 0.3 ? { maxPixels: pick(r, [784, 3136, 0, -5]) } : undefined)
      : p.images(Array.from({ length: int(r, 0, 3) }, () => frame(r)) as never);
    out.pixelValues.dispose();
  } else {
    const p = new QwenProcessor({ minPixels: 784, maxPixels: 28 * 28 * 4 });
    const T = int(r, 0, 6);
    const f0 = frame(r) as { data: Uint8Array; height: number; width: number } | null;
    const frames = Array.from({ length: T }, () => (r() < 0.85 && f0 ? f0 : frame(r)));
    const input = r() < 0.2 && f0 && Number.isSafeInteger(f0.height) && f0.height > 0 && f0.data?.length === f0.height * f0.width * 3
      ? Tensor.from(new Uint8Array(T * f0.data.length), [T, f0.height, f0.width, 3]) : frames;
    const opts = pick(r, [{}, { fps: pick(r, [2, 0, -1, NaN]) }, { videoFps: pick(r, [30, 0, NaN, 1e-9]), fps: 2 }, { nframes: pick(r, [2, 4, 100, 0]), videoFps: 10 },
      { minPixels: pick(r, [784, 0, -1, 1e12]), maxPixels: pick(r, [784, 1e12, 0]) }, { totalPixels: pick(r, [1, 1e6, 0]) }, { bogus: 1 }, { maxMissingFraction: 2 }]);
    try {
      const out = p.videoSync(input as never, opts as never);
      out.pixelValues.dispose();
    } finally { if (input instanceof Tensor) input.dispose(); }
  }
}

/**
 * The driver's own check (names starting with '_' are not run by default): seed % 10 = 3 aborts
 * the process, 5 hangs, 6 is a bug (a JS error), 7 a refusal, the rest pass.
 */
function selfTest(seed: number): void {
  const k = seed % 10;
  if (k === 3) process.abort();
  if (k === 5) for (;;) { /* a hang */ }
  if (k === 6) (null as unknown as { x: number }).x = 1;
  if (k === 7) throw new RangeError('Expected a refusal for this case');
}

export const TARGETS: Record<string, (seed: number) => void | Promise<void>> = {
  safetensors: fuzzSafetensors,
  config: fuzzConfig,
  tokenizer: fuzzTokenizer,
  processor: fuzzProcessor,
  _selftest: selfTest,
};
