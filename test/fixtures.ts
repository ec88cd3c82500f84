// Small Hugging Face files the tests write themselves: a byte-level BPE tokenizer.json in the
// layout of Qwen2's (GPT-2 byte alphabet, the added special tokens of Qwen2.5-VL at the ids of the
// tiny test config), with a few merges learnt from a sample text, and a plain BPE reference of it.

/** GPT-2's byte -> printable character table (bytes that print as themselves keep their code). */
export function byteAlphabet(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + extra++);
  return out;
}

/**
 * The pre-tokenizer split of Qwen2's tokenizer.json (Oniguruma syntax: case-insensitive
 * contractions, one digit at a time, letters with one leading non-letter, punctuation runs with
 * their newlines, whitespace), which the library translates to a JS RegExp.
 */
export const SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** The same split for JS (Node 20 has no inline (?i:) groups: the contractions spelt out). */
const SPLIT_JS = SPLIT.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]");

/** Special tokens of the tiny test config (vocab 300: image 290, video 291, vision start 292, end 293). */
export const SPECIAL: Record<string, number> = {
  '<|endoftext|>': 285, '<|im_start|>': 286, '<|im_end|>': 287,
  '<|image_pad|>': 290, '<|video_pad|>': 291, '<|vision_start|>': 292, '<|vision_end|>': 293,
};

export interface TinyTokenizer { json: Record<string, unknown>; merges: [string, string][]; vocab: Map<string, number> }

/** Learns `nMerges` BPE merges (ids 256 ...) from `sample`; returns the tokenizer.json object. */
export function tinyTokenizer(sample: string, nMerges: number): TinyTokenizer {
  const alpha = byteAlphabet();
  const vocab = new Map<string, number>();
  alpha.forEach((c, i) => vocab.set(c, i));
  const words = (sample.match(new RegExp(SPLIT_JS, 'gu')) ?? []).map((w) => [...new TextEncoder().encode(w)].map((b) => alpha[b]!));
  const merges: [string, string][] = [];
  for (let m = 0; m < nMerges; m++) {
    const count = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) { const k = w[i]! + '\u0000' + w[i + 1]!; count.set(k, (count.get(k) ?? 0) + 1); }
    let best = '', bc = 0;
    for (const [k, c] of count) if (c > bc) { best = k; bc = c; }
    if (bc < 2) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    vocab.set(a + b, 256 + m);
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) w.splice(i, 2, a + b);
  }
  const json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: Object.entries(SPECIAL).map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: SPLIT }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    ] },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab: Object.fromEntries(vocab), merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
  return { json, merges, vocab };
}

/** Plain BPE of text without special tokens: split, bytes to the alphabet, merges by rank. */
export function bpeReference(t: TinyTokenizer, text: string): number[] {
  const alpha = byteAlphabet();
  const rank = new Map(t.merges.map(([a, b], i) => [a + '\u0000' + b, i]));
  const out: number[] = [];
  for (const piece of text.normalize('NFC').match(new RegExp(SPLIT_JS, 'gu')) ?? []) {
    const w = [...new TextEncoder().encode(piece)].map((b) => alpha[b]!);
    for (;;) {
      let best = -1, br = Infinity;
      for (let i = 0; i + 1 < w.length; i++) { const r = rank.get(w[i]! + '\u0000' + w[i + 1]!); if (r !== undefined && r < br) { br = r; best = i; } }
      if (best < 0) break;
      w.splice(best, 2, w[best]! + w[best + 1]!);
    }
    for (const s of w) out.push(t.vocab.get(s)!);
  }
  return out;
}
