// Answer parsing and the two rewards on hand-made completions: what the reference trainer's
// accuracy_reward and format_reward give for each (worked out by hand from their definitions).
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { accuracyReward, answerSet, asSolution, extractAnswer, formatReward } from '../src/index.js';
import { buildPrompt, PROMPT_SUFFIX } from '../src/index.js';

test('extractAnswer: the first <answer> tag, trimmed; the whole text without one', () => {
  assert.is(extractAnswer('<think>a</think><answer> B </answer>'), 'B');
  assert.is(extractAnswer('<answer>\nA\n</answer>'), 'A', 'newlines inside the tag');
  assert.is(extractAnswer('<answer>A</answer> then <answer>B</answer>'), 'A', 'the first tag');
  assert.is(extractAnswer('  C \n'), 'C', 'no tag: the whole completion, as the reference falls back');
  assert.is(extractAnswer('<answer></answer>'), '');
  assert.is(extractAnswer('<answer>A'), '<answer>A', 'an unclosed tag is no tag');
});

test('accuracyReward: single choice, spaces, multi-select partial credit', () => {
  const cases: [string, string, number][] = [
    ['<think>x</think><answer>A</answer>', '<answer>A</answer>', 1],
    ['<think>x</think><answer>B</answer>', '<answer>A</answer>', 0],
    ['<answer> A </answer>', '<answer>A</answer>', 1],
    ['<answer>\tA\n</answer>', '<answer>A</answer>', 1],
    ['A', '<answer>A</answer>', 1],                                 // no tag: the bare completion is the answer
    ['The answer is A', '<answer>A</answer>', 0],
    ['<answer>A, C</answer>', '<answer>A,C</answer>', 1],
    ['<answer>C,A</answer>', '<answer>A, C</answer>', 1],           // a set: order does not matter
    ['<answer>A</answer>', '<answer>A,C</answer>', 0.5],             // a right subset: |pred| / |truth|
    ['<answer>A,B,C</answer>', '<answer>A,B,C,D</answer>', 0.75],
    ['<answer>A,B</answer>', '<answer>A,C</answer>', 0],             // not a subset
    ['<answer>A,C</answer>', '<answer>A</answer>', 0],
    ['<answer>A,A</answer>', '<answer>A</answer>', 1],               // duplicates collapse, as in a Python set
    ['<answer></answer>', '<answer>A</answer>', 0],
    ['<answer>a</answer>', '<answer>A</answer>', 0],                 // case matters
    ['<answer>A</answer>', 'A', 1],                                  // a solution without tags
  ];
  for (const [c, s, want] of cases) assert.is(accuracyReward(c, s), want, `${JSON.stringify(c)} vs ${JSON.stringify(s)}`);
  assert.equal([...answerSet(' A , B,C')].sort(), ['A', 'B', 'C']);
});

test('formatReward: <think>...</think> then <answer>...</answer>, once each, nothing after but spaces or !', () => {
  const cases: [string, number][] = [
    ['<think>because</think><answer>A</answer>', 1],
    ['<think>a\nb</think>\n<answer>A</answer>\n', 1],
    ['<think></think><answer></answer>', 1],
    ['<think>x</think><answer>A</answer> !!', 1],
    ['  <think>x</think><answer>A</answer>  ', 1],
    ['prefix <think>x</think><answer>A</answer>', 1],                // searched, not anchored at the start (the reference's re.search)
    ['<think>x</think><answer>A</answer> done', 0],
    ['<answer>A</answer>', 0],
    ['<think>x</think>', 0],
    ['<answer>A</answer><think>x</think>', 0],
    ['<think>x</think><think>y</think><answer>A</answer>', 0],
    ['<think>x</think><answer>A</answer><answer>B</answer>', 0],
  ];
  for (const [c, want] of cases) assert.is(formatReward(c), want, JSON.stringify(c));
});

test('asSolution and the prompt: the documented text', () => {
  assert.is(asSolution('B'), '<answer>B</answer>');
  assert.is(asSolution('<answer>B</answer>'), '<answer>B</answer>');
  assert.is(buildPrompt({ problem: 'Which ball finishes first?', options: ['A. red', 'B. blue'] }),
    'Which ball finishes first?Options:\nA. red\nB. blue\n  Output the thinking process in <think> </think> and final answer (letters separated by , if multiple) in <answer> </answer> tags.');
  assert.is(buildPrompt({ problem: 'How many?' }), `How many?  ${PROMPT_SUFFIX}`);
  assert.throws(() => buildPrompt({ problem: 3 } as never), /string for row.problem/);
  assert.throws(() => extractAnswer(undefined as never), /string for text/);
});

test.run();
