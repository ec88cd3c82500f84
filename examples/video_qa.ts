// Answer a question about a video file with a Qwen2.5-VL checkpoint folder (for example
// VideoThinker-R1 in Hugging Face layout: config.json, *.safetensors, tokenizer.json, the chat
// template and preprocessor_config.json):
//
//   npx tsx examples/video_qa.ts /models/VideoThinker-R1 clip.mp4 "What does the person pick up?"
//
// ffmpeg (from the system) decodes the file; frames are sampled at 2 fps (4 to 16 of them) at up to
// 196*28*28 pixels each, as in VideoThinker's training. The answer streams to stdout as it is
// generated; every decoding step runs on native threads, so the event loop stays free.
import { loadModel, VIDEOTHINKER_VIDEO_OPTIONS } from '../src/index.js';

const [dir, video, question, maxArg] = process.argv.slice(2);
if (!dir || !video || !question) {
  console.error('usage: video_qa.ts CHECKPOINT_DIR VIDEO_FILE "QUESTION" [MAX_NEW_TOKENS]');
  process.exit(2);
}


const model = await loadModel(dir);
try {
  for await (const e of model.generateStream({
    video, prompt: question, videoOptions: VIDEOTHINKER_VIDEO_OPTIONS, maxNewTokens: Number(maxArg ?? 512), temperature: 0,
  })) {
    process.stdout.write(e.text ?? '');
  }
  process.stdout.write('\n');
} finally {
  model.dispose();
  model.checkpoint.dispose();
}
