// Answer a question about a video file with a Qwen2.5-VL checkpoint folder (for example
// VideoThinker-R1 in Hugging Face layout):
//
//   npx tsx examples/video_qa.ts /models/VideoThinker-R1 clip.mp4 "What does the person pick up?"
//
// loadModel maps config.json and the safetensors weights. The prompt side (tokenizer from
// tokenizer.json, the checkpoint's chat template, and the video processor: ffmpeg from the system
// decodes the file, frames are sampled at `fps`, resized to multiples of 28 and patchified in the
// reference's order) is the checkpoint loader's; `CheckpointTools` below names the two calls this
// example needs from it (adapt the names if that module spells them differently).
import { loadModel } from '../src/model/index.js';

const [dir, video, question] = process.argv.slice(2);
if (!dir || !video || !question) {
  console.error('usage: video_qa.ts CHECKPOINT_DIR VIDEO_FILE "QUESTION"');
  process.exit(2);
}

/** The parts of the checkpoint loader's result this example uses. */
interface Prepared {
  inputIds: Int32Array;
  pixelValuesVideos: import('../src/tensor.js').Tensor;
  videoGridThw: [number, number, number][];
  secondPerGridTs: number[];
}
interface CheckpointTools {
  processor: { prepare(o: { messages: unknown[]; video: string; fps?: number }): Promise<Prepared> };
  tokenizer: { decode(ids: number[]): string; eosTokenIds: number[] };
}

const model = await loadModel(dir);
const { processor, tokenizer } = model.checkpoint as unknown as CheckpointTools;
const messages = [{ role: 'user', content: [{ type: 'video', video }, { type: 'text', text: question }] }];
const inputs = await processor.prepare({ messages, video, fps: 2 });

// Stream the answer token by token; the event loop stays free (every step is a native job).
const tokens: number[] = [];
for await (const e of model.generateStream({ ...inputs, maxNewTokens: 256, temperature: 0, stopTokens: tokenizer.eosTokenIds })) {
  tokens.push(e.token);
  process.stdout.write('\r' + tokenizer.decode(tokens));
}
process.stdout.write('\n');
