// The checkpoint's tokenizer (tokenizer.json through @huggingface/tokenizers) and its chat template
// (Jinja, through @huggingface/jinja): text <-> token ids, the special tokens the model needs
// (vision start/end, image and video pads, end of turn), and a streaming decoder that never cuts a
// multi-byte character in half.
//
// Both come from the checkpoint folder, so both may be hostile: a pre-tokenizer pattern like
// (a+)+$ backtracks for minutes on a short text, a template can loop over range(100000000). They
// run on the calling thread under a time bound (node:vm's timeout, whose watchdog interrupts any
// JS, a regular expression included): a bad file costs at most `timeoutMs` of blocked event loop,
// then a RangeError, never minutes.
import { existsSync } from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';

import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

import { checkBoolean, checkOptions, typeError } from '../errors.js';
import { findChatTemplate, readJson } from '../files.js';

/** One part of a message's content (Hugging Face chat format). */
export type ChatContent =
  | { type: 'text'; text: string }
  | { type: 'image'; image?: unknown }
  | { type: 'video'; video?: unknown; [k: string]: unknown };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string | ChatContent[];
}

/**
 * The chat format of Qwen2.5-VL, used when a checkpoint has no template of its own: a default
 * system turn, `<|im_start|>role\n...<|im_end|>\n` turns, and each image / video as
 * `<|vision_start|><|image_pad|><|vision_end|>` (resp. `<|video_pad|>`), which the processor
 * expands to the item's vision tokens.
 */
export const DEFAULT_CHAT_TEMPLATE = [
  "{%- set nl = '\\n' -%}",
  "{%- if messages[0].role != 'system' -%}{{ '<|im_start|>system' + nl + 'You are a helpful assistant.<|im_end|>' + nl }}{%- endif -%}",
  '{%- for m in messages -%}',
  "{{ '<|im_start|>' + m.role + nl }}",
  '{%- if m.content is string -%}{{ m.content }}{%- else -%}{%- for c in m.content -%}',
  "{%- if c.type == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}",
  "{%- elif c.type == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}",
  '{%- else -%}{{ c.text }}{%- endif -%}',
  '{%- endfor -%}{%- endif -%}',
  "{{ '<|im_end|>' + nl }}",
  '{%- endfor -%}',
  "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant' + nl }}{%- endif -%}",
].join('');

type Json = Record<string, unknown>;

/** Default bound of one tokenizer or chat-template call (ms). Real prompts take well under 1 ms per KB. */
export const DEFAULT_TOKENIZER_TIMEOUT_MS = 2000;

// One context and one script for every bounded call: the function to run is handed over through
// the context (creating a context per call would cost ~1 ms; this costs ~70 us).
const boundedContext = vm.createContext({});
const boundedScript = new vm.Script('__vtRun()');

/**
 * A call into the tokenizer library, whose failures on a hostile tokenizer.json (a decoder whose
 * pattern is null, ...) are its own JS errors: they become a RangeError that names the file.
 */
function libraryCall<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof RangeError && /took more than/.test(e.message)) throw e;
    throw new RangeError(`Invalid tokenizer.json: ${what} failed: ${(e as Error)?.message ?? String(e)}`);
  }
}

/** Runs f with a time bound; a RangeError names `what` when it runs out. */
let boundedDepth = 0;
export function runBounded<T>(what: string, timeoutMs: number, f: () => T): T {
  // inside a bounded call the outer bound applies (one watchdog, ~70 us, per outermost call)
  if (boundedDepth > 0) return f();
  const ctx = boundedContext as { __vtRun?: () => T };
  const outer = ctx.__vtRun;
  ctx.__vtRun = f;
  boundedDepth++;
  try {
    return boundedScript.runInContext(boundedContext, { timeout: timeoutMs }) as T;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      throw new RangeError(`${what} took more than ${timeoutMs} ms and was stopped: a pathological pattern or loop in the checkpoint's files? (tokenizer.timeoutMs raises the bound)`);
    }
    throw e;
  } finally {
    boundedDepth--;
    ctx.__vtRun = outer;
  }
}

function readObject(file: string): Json {
  const v = readJson(file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RangeError(`Invalid ${file}: expected a JSON object`);
  return v as Json;
}

/** A token given in tokenizer_config.json as a string or as an AddedToken object. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

export interface TokenizerFiles {
  /** tokenizer.json, parsed. */
  tokenizer: unknown;
  /** tokenizer_config.json, parsed (optional). */
  config?: unknown;
  /** The chat template (chat_template.json / tokenizer_config.json); the default Qwen format otherwise. */
  chatTemplate?: string;
  /** generation_config.json, parsed (its eos_token_id joins the stop tokens). */
  generationConfig?: unknown;
}

export class QwenTokenizer {
  readonly #tok: Tokenizer;
  readonly #template: Template;
  readonly #config: Json;
  /** The chat template in use (the checkpoint's, or DEFAULT_CHAT_TEMPLATE). */
  readonly chatTemplate: string;
  /** Token ids that end a turn or the text (eos_token of tokenizer_config.json, generation_config.json's eos_token_id). */
  readonly eosTokenIds: number[];
  /**
   * Bound of one encode / decode / chat-template call in ms (default 2000): the checkpoint's
   * patterns and template run on the calling thread and are stopped with a RangeError past it.
   */
  timeoutMs = DEFAULT_TOKENIZER_TIMEOUT_MS;

  constructor(files: TokenizerFiles) {
    checkOptions('files', files);
    const tj = files.tokenizer;
    if (typeof tj !== 'object' || tj === null || typeof (tj as Json).model !== 'object')
      throw typeError('files.tokenizer', 'a parsed tokenizer.json object (with a model)', tj);
    const cfg = (files.config ?? {}) as Json;
    if (typeof cfg !== 'object' || cfg === null) throw typeError('files.config', 'a parsed tokenizer_config.json object', files.config);
    this.#config = cfg;
    try {
      this.#tok = new Tokenizer(tj, cfg);
    } catch (e) {
      throw new RangeError(`Invalid tokenizer.json: ${(e as Error).message}`);
    }
    const tmpl = files.chatTemplate ?? (typeof cfg.chat_template === 'string' ? cfg.chat_template : undefined) ?? DEFAULT_CHAT_TEMPLATE;
    if (typeof tmpl !== 'string') throw typeError('files.chatTemplate', 'a Jinja template string', tmpl);
    this.chatTemplate = tmpl;
    try {
      this.#template = new Template(tmpl);
    } catch (e) {
      throw new RangeError(`Invalid chat template: ${(e as Error).message}`);
    }
    const eos = new Set<number>();
    const add = (v: unknown) => {
      if (typeof v === 'number' && Number.isInteger(v)) eos.add(v);
      const t = tokenText(v);
      const id = t === undefined ? undefined : this.#tok.token_to_id(t);
      if (id !== undefined) eos.add(id);
    };
    add(cfg.eos_token);
    const gen = files.generationConfig as Json | undefined;
    if (gen && typeof gen === 'object') {
      const e = gen.eos_token_id;
      if (Array.isArray(e)) e.forEach(add); else add(e);
    }
    // A chat model's turn ends at <|im_end|>, whatever the config names.
    add('<|im_end|>');
    this.eosTokenIds = [...eos].sort((a, b) => a - b);
  }

  /**
   * Reads tokenizer.json (+ tokenizer_config.json, chat_template.json, generation_config.json when
   * present) from a checkpoint folder; undefined when the folder has no tokenizer.json.
   */
  static fromDir(dir: string): QwenTokenizer | undefined {
    if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a checkpoint folder path', dir);
    const file = (f: string) => path.join(dir, f);
    if (!existsSync(file('tokenizer.json'))) return undefined;
    const files: TokenizerFiles = { tokenizer: readObject(file('tokenizer.json')) };
    if (existsSync(file('tokenizer_config.json'))) files.config = readObject(file('tokenizer_config.json'));
    const chatTemplate = findChatTemplate(dir);
    if (chatTemplate !== undefined) files.chatTemplate = chatTemplate;
    if (existsSync(file('generation_config.json'))) files.generationConfig = readObject(file('generation_config.json'));
    return new QwenTokenizer(files);
  }

  /** Token ids of `text`; special tokens written in the text (`<|im_start|>` ...) become their ids. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): Int32Array {
    if (typeof text !== 'string') throw typeError('text', 'a string', text);
    const o = checkOptions('options', opts);
    const add = o.addSpecialTokens === undefined ? false : checkBoolean('options.addSpecialTokens', o.addSpecialTokens);
    const ids = runBounded(`Tokenizing ${text.length} characters with tokenizer.json`, this.timeoutMs, () => libraryCall('its encoder', () => this.#tok.encode(text, { add_special_tokens: add }).ids));
    return Int32Array.from(ids);
  }

  /** The text of token ids (special tokens left out unless skipSpecialTokens is false). */
  decode(ids: ArrayLike<number>, opts?: { skipSpecialTokens?: boolean }): string {
    if (!(ArrayBuffer.isView(ids) || Array.isArray(ids))) throw typeError('ids', 'an array of token ids', ids);
    const o = checkOptions('options', opts);
    const skip = o.skipSpecialTokens === undefined ? true : checkBoolean('options.skipSpecialTokens', o.skipSpecialTokens);
    const arr = Array.from(ids as ArrayLike<number>);
    if (arr.length === 0) return '';  // the library refuses an empty list
    arr.forEach((v, i) => { if (!Number.isInteger(v) || v < 0) throw typeError(`ids[${i}]`, 'a token id (an integer >= 0)', v); });
    return runBounded(`Decoding ${arr.length} tokens with tokenizer.json`, this.timeoutMs,
      () => libraryCall('its decoder', () => this.#tok.decode(arr, { skip_special_tokens: skip, clean_up_tokenization_spaces: false })));
  }

  /** The id of a token string (e.g. '<|video_pad|>'), or undefined. */
  tokenId(token: string): number | undefined {
    if (typeof token !== 'string') throw typeError('token', 'a string', token);
    return this.#tok.token_to_id(token);
  }

  /**
   * Renders messages with the chat template (images and videos as their placeholder tokens).
   * Media sources in the content parts are not passed to the template: only their type.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts?: { addGenerationPrompt?: boolean; [k: string]: unknown }): string {
    checkMessages(messages);
    const o = checkOptions('options', opts);
    const agp = o.addGenerationPrompt === undefined ? true : checkBoolean('options.addGenerationPrompt', o.addGenerationPrompt);
    const plain = messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((c) => (c.type === 'text' ? { type: 'text', text: c.text } : { type: c.type, [c.type]: '' })),
    }));
    const extra: Json = {};
    for (const [k, v] of Object.entries(o)) if (k !== 'addGenerationPrompt') extra[k] = v;
    let text: string;
    try {
      text = runBounded('The chat template', this.timeoutMs, () => this.#template.render({
        ...extra, messages: plain, add_generation_prompt: agp,
        bos_token: tokenText(this.#config.bos_token) ?? '', eos_token: tokenText(this.#config.eos_token) ?? '',
      }));
    } catch (e) {
      throw new RangeError(`The chat template failed on these messages: ${(e as Error).message}`);
    }
    return text;
  }

  /**
   * A decoder for a token stream: push(id) returns the text the new token completes (possibly '',
   * while a multi-byte character is still incomplete); push(id, true) on the last token returns
   * everything left, an incomplete character as U+FFFD.
   */
  streamDecoder(opts?: { skipSpecialTokens?: boolean }): { push(id: number, last?: boolean): string; readonly text: string } {
    // Incremental, as text-generation servers do it: decode only the tokens since the last
    // emitted boundary (with the few before it as context), so a long sample costs O(n), not O(n^2).
    const ids: number[] = [];
    let prefix = 0, read = 0;
    const self = this;
    return {
      push(id: number, last = false): string {
        ids.push(id);
        // both decodes under one time bound
        const [before, now] = runBounded(`Decoding a stream of ${ids.length} tokens with tokenizer.json`, self.timeoutMs,
          () => [self.decode(ids.slice(prefix, read), opts), self.decode(ids.slice(prefix), opts)] as const);
        // hold back a trailing replacement character: the rest of its bytes may come next
        if ((!last && now.endsWith('\uFFFD')) || now.length <= before.length || !now.startsWith(before)) return '';
        prefix = read;
        read = ids.length;
        return now.slice(before.length);
      },
      get text() { return self.decode(ids, opts); },
    };
  }
}

/** Checks the shape of chat messages (named errors). */
export function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw typeError('messages', 'a non-empty array of { role, content }', messages);
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null) throw typeError(`messages[${i}]`, 'an object { role, content }', m);
    const { role, content } = m as Json;
    if (typeof role !== 'string' || role === '') throw typeError(`messages[${i}].role`, 'a string', role);
    if (typeof content === 'string') return;
    if (!Array.isArray(content)) throw typeError(`messages[${i}].content`, 'a string or an array of content parts', content);
    content.forEach((c, j) => {
      const t = typeof c === 'object' && c !== null ? (c as Json).type : undefined;
      if (t === 'text') {
        if (typeof (c as Json).text !== 'string') throw typeError(`messages[${i}].content[${j}].text`, 'a string', (c as Json).text);
      } else if (t !== 'image' && t !== 'video') {
        throw typeError(`messages[${i}].content[${j}].type`, "'text', 'image' or 'video'", t);
      }
    });
  });
}
