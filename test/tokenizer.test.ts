// The checkpoint tokenizer: tokenizer.json through @huggingface/tokenizers against a plain BPE
// reference written here, special tokens, the chat templates (the default Qwen format and a
// checkpoint's own), the streaming decoder, files in a folder, and bad input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { DEFAULT_CHAT_TEMPLATE, QwenTokenizer } from '../src/inputs/tokenizer.js';
import { bpeReference, SPECIAL, tinyTokenizer } from './fixtures.js';
import { throwsLike } from './helpers.js';

const T = tinyTokenizer('the cat sat on the mat. the dog ate the hat; what is in the video? the man and the cat sat on that mat, then the dog ran at the cat. 12 123 1234', 24);
const tok = new QwenTokenizer({ tokenizer: T.json, config: { eos_token: '<|endoftext|>' } });

const TEXTS = ['the cat sat on the mat.', 'What is in the video?\n  Two  spaces\tand a tab', 'naïve café, 12345 dogs 😀!', "it's the cat's hat", '   ',
  "IT'S THE CAT'LL DO\r\n\r\nok...\n\n", '(A) 3.14, (B) 42;\n<answer>B</answer>'];

test('encode equals a plain byte-level BPE of the same merges; decode inverts it', () => {
  assert.ok(T.merges.length >= 10, 'merges were learnt');
  for (const s of TEXTS) {
    const ids = tok.encode(s);
    assert.equal(Array.from(ids), bpeReference(T, s), `ids of ${JSON.stringify(s)}`);
    assert.is(tok.decode(ids), s, 'round trip');
  }
});

test('special tokens: one id each in text, kept or skipped by decode', () => {
  const s = '<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>the cat<|im_end|>';
  const ids = Array.from(tok.encode(s));
  for (const [t, id] of Object.entries(SPECIAL)) assert.is(tok.tokenId(t), id, t);
  assert.equal(ids.slice(0, 1), [SPECIAL['<|im_start|>']]);
  assert.equal(ids.filter((i) => i >= 285), [286, 292, 291, 293, 287], 'each special token once, in order');
  assert.is(tok.decode(ids, { skipSpecialTokens: false }), s);
  assert.is(tok.decode(ids), 'user\nthe cat');
  assert.equal(tok.eosTokenIds, [285, 287]);
});

test('default chat template: the Qwen2.5-VL turn format, media placeholders, system turn', () => {
  assert.is(tok.chatTemplate, DEFAULT_CHAT_TEMPLATE);
  const s = tok.applyChatTemplate([{ role: 'user', content: [{ type: 'video', video: 'a.mp4' }, { type: 'image' }, { type: 'text', text: 'Why?' }] }]);
  assert.is(s, '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n' +
    '<|vision_start|><|video_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>Why?<|im_end|>\n<|im_start|>assistant\n');
  const t = tok.applyChatTemplate([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }], { addGenerationPrompt: false });
  assert.is(t, '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n');
});

test('a template in the style of the Qwen2-VL checkpoints: namespace counters, membership checks, add_vision_id', () => {
  const tmpl = [
    "{%- set nl = '\\n' -%}",
    '{%- set n = namespace(img=0, vid=0) -%}',
    '{%- for message in messages -%}',
    "{%- if loop.first and message['role'] != 'system' -%}<|im_start|>system{{ nl }}Sys.<|im_end|>{{ nl }}{%- endif -%}",
    "<|im_start|>{{ message['role'] + nl }}",
    "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}{%- for part in message['content'] -%}",
    "{%- if part['type'] == 'image' or 'image' in part -%}{%- set n.img = n.img + 1 -%}{%- if add_vision_id -%}Picture {{ n.img }}: {% endif -%}<|vision_start|><|image_pad|><|vision_end|>",
    "{%- elif part['type'] == 'video' or 'video' in part -%}{%- set n.vid = n.vid + 1 -%}{%- if add_vision_id -%}Video {{ n.vid }}: {% endif -%}<|vision_start|><|video_pad|><|vision_end|>",
    "{%- elif 'text' in part -%}{{ part['text'] }}{%- endif -%}",
    '{%- endfor -%}{%- endif -%}<|im_end|>{{ nl }}',
    '{%- endfor -%}',
    '{%- if add_generation_prompt -%}<|im_start|>assistant{{ nl }}{%- endif -%}',
  ].join('');
  const t = new QwenTokenizer({ tokenizer: T.json, chatTemplate: tmpl });
  const msgs = [{ role: 'user', content: [{ type: 'image' as const, image: { data: new Uint8Array(3), height: 1, width: 1 } }, { type: 'video' as const, video: 'a.mp4' },
    { type: 'image' as const }, { type: 'text' as const, text: 'Compare.' }] }];
  assert.is(t.applyChatTemplate(msgs, { add_vision_id: true }), '<|im_start|>system\nSys.<|im_end|>\n<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>' +
    'Video 1: <|vision_start|><|video_pad|><|vision_end|>Picture 2: <|vision_start|><|image_pad|><|vision_end|>Compare.<|im_end|>\n<|im_start|>assistant\n');
  assert.is(t.applyChatTemplate(msgs).split('<|image_pad|>').length, 3, 'two image placeholders without ids');
});

test('a checkpoint folder: its template (tokenizer_config.json or chat_template.json) and generation_config.json', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vt-tok-'));
  try {
    assert.is(QwenTokenizer.fromDir(dir), undefined, 'no tokenizer.json: no tokenizer');
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(T.json));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: { content: '<|endoftext|>' }, chat_template: '{{ messages[0].content }}|{{ add_generation_prompt }}' }));
    writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 286 }));
    const a = QwenTokenizer.fromDir(dir)!;
    assert.is(a.applyChatTemplate([{ role: 'user', content: 'hey' }]), 'hey|true');
    assert.equal(a.eosTokenIds, [285, 286, 287]);
    writeFileSync(path.join(dir, 'chat_template.json'), JSON.stringify({ chat_template: '[{{ messages | length }}]' }));
    assert.is(QwenTokenizer.fromDir(dir)!.applyChatTemplate([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }]), '[2]', 'chat_template.json wins');
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    throwsLike(() => QwenTokenizer.fromDir(dir), RangeError, /Invalid .*tokenizer\.json/, 'broken JSON names the file');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('streamDecoder: characters split over byte tokens come out whole', () => {
  const s = 'a 😀 é!';
  const ids = Array.from(tok.encode(s));
  assert.ok(ids.length >= 8, 'the emoji is several byte tokens');
  const d = tok.streamDecoder();
  const parts = ids.map((id, i) => d.push(id, i === ids.length - 1));
  assert.is(parts.join(''), s);
  for (const p of parts) assert.ok(!p.includes('\uFFFD'), 'no half characters emitted');
  const e = tok.streamDecoder();
  assert.is(e.push(ids[2]!, true).length, 1, 'a last, incomplete character comes out as U+FFFD');
  // a long sample with special tokens between: the pieces add up to the whole decode
  const long = Array.from({ length: 40 }, (_, i) => TEXTS[i % TEXTS.length] + (i % 7 === 0 ? '<|im_end|>' : '')).join(' ');
  const lids = Array.from(tok.encode(long));
  const f = tok.streamDecoder();
  assert.is(lids.map((id, i) => f.push(id, i === lids.length - 1)).join(''), tok.decode(lids));
  assert.is(f.text, tok.decode(lids));
});

test('bad input names the argument', () => {
  throwsLike(() => tok.encode(5 as unknown as string), TypeError, /a string for text but received 5 of type number/);
  throwsLike(() => tok.decode('ab' as unknown as number[]), TypeError, /array of token ids for ids/);
  throwsLike(() => tok.decode([1, 2.5]), TypeError, /token id \(an integer >= 0\) for ids\[1\] but received 2.5/);
  assert.is(tok.decode([]), '');
  throwsLike(() => tok.applyChatTemplate([]), TypeError, /non-empty array .* for messages/);
  throwsLike(() => tok.applyChatTemplate([{ role: 'user', content: 3 as unknown as string }]), TypeError, /string or an array of content parts for messages\[0\]\.content/);
  throwsLike(() => tok.applyChatTemplate([{ role: 'user', content: [{ type: 'text', text: 1 as unknown as string }] }]), TypeError, /messages\[0\]\.content\[0\]\.text/);
  throwsLike(() => new QwenTokenizer({ tokenizer: {} }), TypeError, /tokenizer.json object .*for files\.tokenizer/);
  throwsLike(() => new QwenTokenizer({ tokenizer: T.json, chatTemplate: '{% for %}' }), RangeError, /Invalid chat template/);
  throwsLike(() => tok.encode('x', { addSpecialTokens: 'yes' as unknown as boolean }), TypeError, /boolean for options\.addSpecialTokens/);
});

test.run();
