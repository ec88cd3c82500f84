// A word-level tokenizer in Hugging Face tokenizers format for the synthetic benchmark: a few
// hundred entries instead of Qwen's 151,936, so a tiny model's embedding and LM head stay small.
//
// Layout of tokenizer.json: model WordLevel (unk "<unk>"); pre-tokenizer one Split regex that cuts
// text into words with their leading space (" ball"), single digits and punctuation marks (also
// with a leading space) and single whitespace characters; decoder Fuse (pieces are concatenated as
// they are, so decode(encode(text)) === text for every text made of known pieces). The Qwen2.5-VL
// special tokens are added tokens with `special: true` (left out when decoding with
// skipSpecialTokens); <think> </think> <answer> </answer> are added tokens with `special: false`,
// so a completion's tags survive decoding and the rewards can read them.
import { existsSync, mkdirSync } from 'node:fs';

import { writeJsonAtomic } from '../files.js';
import path from 'node:path';

/** The added special tokens of Qwen2.5-VL, in the order of their ids there (151643 ...). */
export const QWEN_SPECIAL_TOKENS = Object.freeze([
  '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>', '<|box_end|>',
  '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>',
] as const);
/** The reasoning tags, one token each, kept when decoding. */
export const REASONING_TOKENS = Object.freeze(['<think>', '</think>', '<answer>', '</answer>'] as const);
export const UNK_TOKEN = '<unk>';
/** The pre-tokenizer's split (the same pattern in Oniguruma, as tokenizers reads it, and in JS). */
export const WORD_PATTERN = '[ ]?[A-Za-z]+|[ ]?[0-9]|[ ]?[^\\sA-Za-z0-9]|\\s';

const ADDED = [...QWEN_SPECIAL_TOKENS, ...REASONING_TOKENS];
const ADDED_RE = new RegExp(ADDED.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');

/** The pieces the tokenizer cuts `text` into (added tokens whole, the rest by WORD_PATTERN). */
export function wordPieces(text: string): string[] {
  if (typeof text !== 'string') throw new TypeError(`Expected a string for text but received ${typeof text}`);
  const out: string[] = [];
  const words = (s: string) => { for (const m of s.matchAll(new RegExp(WORD_PATTERN, 'g'))) out.push(m[0]); };
  let last = 0;
  for (const m of text.matchAll(ADDED_RE)) {
    words(text.slice(last, m.index));
    out.push(m[0]);
    last = m.index! + m[0].length;
  }
  words(text.slice(last));
  return out;
}

export interface WordTokenizer {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json (eos, pad, unk; no chat template: that goes to chat_template.json). */
  config: Record<string, unknown>;
  /** Entries in all (vocabulary + added tokens): the model's vocab_size. */
  size: number;
  /** Id of every added token by its text. */
  specialIds: Record<string, number>;
}

/**
 * A word-level tokenizer whose vocabulary is every piece of `texts` (in order of first
 * appearance, so the same texts give the same ids), plus the Qwen special tokens and reasoning tags.
 */
export function buildWordTokenizer(texts: Iterable<string>): WordTokenizer {
  const vocab = new Map<string, number>([[UNK_TOKEN, 0]]);
  const added = new Set<string>(ADDED);
  for (const t of texts) {
    for (const p of wordPieces(t)) if (!added.has(p) && !vocab.has(p)) vocab.set(p, vocab.size);
  }
  const specialIds: Record<string, number> = {};
  const addedTokens = ADDED.map((content, i) => {
    const id = vocab.size + i;
    specialIds[content] = id;
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: !(REASONING_TOKENS as readonly string[]).includes(content) };
  });
  const tokenizer = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'Split', pattern: { Regex: WORD_PATTERN }, behavior: 'Isolated', invert: false },
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: { type: 'WordLevel', vocab: Object.fromEntries(vocab), unk_token: UNK_TOKEN },
  };
  const config = {
    // tokenizers.js reads the unknown token from here for a WordLevel model; transformers from the model.
    unk_token: UNK_TOKEN, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', bos_token: null,
    add_bos_token: false, add_prefix_space: false, clean_up_tokenization_spaces: false, split_special_tokens: false,
    model_max_length: 32768, padding_side: 'left', errors: 'replace', tokenizer_class: 'Qwen2Tokenizer',
    added_tokens_decoder: Object.fromEntries(addedTokens.map((t) => [String(t.id), { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: t.special }])),
    additional_special_tokens: [...QWEN_SPECIAL_TOKENS.slice(1)],
  };
  return { tokenizer, config, size: vocab.size + addedTokens.length, specialIds };
}

/**
 * Writes tokenizer.json, tokenizer_config.json and chat_template.json (`{ chat_template }`) into
 * `dir` (created if needed), each atomically (temporary file + rename).
 */
export function writeTokenizerFiles(dir: string, tok: WordTokenizer, chatTemplate: string): void {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('Expected a folder path for dir');
  if (typeof chatTemplate !== 'string') throw new TypeError(`Expected a Jinja template string for chatTemplate but received ${typeof chatTemplate}`);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
  writeJsonAtomic(path.join(dir, 'tokenizer.json'), tok.tokenizer);
  writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), tok.config);
  writeJsonAtomic(path.join(dir, 'chat_template.json'), { chat_template: chatTemplate });
}

