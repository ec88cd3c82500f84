// From a question about images and videos to the model's inputs: chat messages rendered with the
// checkpoint's template, tokenized, each image / video placeholder expanded to the item's vision
// tokens (t*h*w / merge^2), and the pixels through the processor. This is what the high-level
// generate() runs before the prefill.
import { typeError } from '../errors.js';
import { Tensor } from '../tensor.js';
import type { ImageOptions, QwenProcessor, RGBFrame, VideoOptions } from './processor.js';
import type { QwenConfig } from '../model/config.js';
import type { GridThw } from '../model/positions.js';
import { decodeImage } from './video.js';
import { checkMessages, type ChatContent, type ChatMessage, type QwenTokenizer } from './tokenizer.js';

/** A video: a file path (ffmpeg decodes it), frames, or a u8 Tensor [T, H, W, 3]. */
export type VideoSource = string | readonly RGBFrame[] | Tensor;
/** An image: a file path (PNG, JPEG, ...: ffmpeg decodes it) or an RGB frame. */
export type ImageSource = string | RGBFrame;

export interface ChatRequest {
  /** The user's question: with `video` / `images` it becomes one user turn (media first, then the text). */
  prompt?: string;
  /** Or a whole conversation; image / video parts take their source from the part or, in order, from `video` / `images`. */
  messages?: ChatMessage[];
  /** A system turn for `prompt` (the template's default otherwise). */
  system?: string;
  video?: VideoSource;
  images?: readonly ImageSource[];
  /** Sampling and pixel budget of videos (fps, minFrames, maxFrames, minPixels, maxPixels, ...). */
  videoOptions?: VideoOptions;
  imageOptions?: ImageOptions;
  signal?: AbortSignal;
}

export interface PreparedPrompt {
  /** The rendered prompt text (placeholders not yet expanded). */
  text: string;
  /** Token ids with each placeholder expanded to its item's vision tokens. */
  inputIds: Int32Array;
  pixelValues?: Tensor;
  imageGridThw?: GridThw[];
  pixelValuesVideos?: Tensor;
  videoGridThw?: GridThw[];
  secondPerGridTs?: number[];
  /**
   * Per video, the sampled frames its file did not deliver (filled with the last decoded frame;
   * VideoOptions.maxMissingFraction bounds them). Present when the request has videos.
   */
  missingFrames?: number[];
  /** Frees the pixel tensors. */
  dispose(): void;
}

type Media = { type: 'image'; src: ImageSource } | { type: 'video'; src: VideoSource };

/** The messages of a request and its media in the order of their placeholders. */
function conversation(r: ChatRequest): { messages: ChatMessage[]; media: Media[] } {
  if ((r.prompt === undefined) === (r.messages === undefined)) throw typeError('prompt / messages', 'exactly one of prompt (a string) and messages', r.prompt ?? r.messages);
  if (r.images !== undefined && !Array.isArray(r.images)) throw typeError('images', 'an array of RGB frames', r.images);
  const images = [...(r.images ?? [])];
  let video = r.video;
  let messages: ChatMessage[];
  if (r.prompt !== undefined) {
    if (typeof r.prompt !== 'string') throw typeError('prompt', 'a string', r.prompt);
    const parts: ChatContent[] = images.map(() => ({ type: 'image' as const }));
    if (video !== undefined) parts.push({ type: 'video' });
    parts.push({ type: 'text', text: r.prompt });
    messages = [];
    if (r.system !== undefined) {
      if (typeof r.system !== 'string') throw typeError('system', 'a string', r.system);
      messages.push({ role: 'system', content: r.system });
    }
    messages.push({ role: 'user', content: parts });
  } else {
    checkMessages(r.messages);
    messages = r.messages;
  }
  const media: Media[] = [];
  let imageIdx = 0;
  for (const [i, m] of messages.entries()) {
    if (typeof m.content === 'string') continue;
    for (const [j, c] of m.content.entries()) {
      if (c.type === 'image') {
        const src = (c.image ?? images[imageIdx++]) as ImageSource | undefined;
        if (src === undefined) throw typeError(`messages[${i}].content[${j}].image`, 'an image (in the part or in images)', undefined);
        media.push({ type: 'image', src });
      } else if (c.type === 'video') {
        const src = (c.video ?? video) as VideoSource | undefined;
        if (src === undefined) throw typeError(`messages[${i}].content[${j}].video`, 'a video (in the part or as video)', undefined);
        if (c.video === undefined) video = undefined;  // the request's video fills one part
        media.push({ type: 'video', src });
      }
    }
  }
  if (imageIdx < images.length) throw new RangeError(`Expected as many images as image parts in messages (${imageIdx}) but received ${images.length}`);
  if (video !== undefined && r.messages !== undefined && !media.some((x) => x.type === 'video')) {
    throw new RangeError('Expected a video part in messages for the given video but found none');
  }
  return { messages, media };
}

function concat(parts: Tensor[]): Tensor {
  if (parts.length === 1) return parts[0]!;
  const D = parts[0]!.shape[1]!;
  const rows = parts.reduce((a, t) => a + t.shape[0]!, 0);
  const out = new Float32Array(rows * D);
  let off = 0;
  for (const t of parts) { out.set(t.data as Float32Array, off); off += (t.data as Float32Array).length; t.dispose(); }
  return Tensor.from(out, [rows, D]);
}

/**
 * Renders, tokenizes and processes a request. Videos given as files are decoded by ffmpeg
 * (asynchronously; `signal` stops it).
 */
export async function preparePrompt(cfg: QwenConfig, tokenizer: QwenTokenizer, processor: QwenProcessor | undefined, r: ChatRequest): Promise<PreparedPrompt> {
  if (typeof r !== 'object' || r === null) throw typeError('request', 'an object', r);
  const { messages, media } = conversation(r);
  if (media.length > 0 && !cfg.vision) throw new RangeError('Expected a vision model for images / videos but this checkpoint has no vision_config');
  if (media.length > 0 && !processor) throw new TypeError('Expected a processor for images / videos (QwenProcessor) but received none');
  const text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  const ids = tokenizer.encode(text);
  const sig = r.signal ? { signal: r.signal } : {};
  const owned: Tensor[] = [];
  try {
    // Images: files decoded first, then one processor call (each image resized on its own).
    const imageSrc = media.flatMap((m) => (m.type === 'image' ? [m.src] : []));
    const frames: RGBFrame[] = [];
    for (const src of imageSrc) frames.push(typeof src === 'string' ? await decodeImage(src, sig) : src);
    const img = frames.length ? processor!.images(frames, r.imageOptions) : null;
    if (img) owned.push(img.pixelValues);
    const vids = [];
    for (const m of media) {
      if (m.type !== 'video') continue;
      r.signal?.throwIfAborted();
      const x = await processor!.video(m.src, { ...r.videoOptions, ...sig });
      owned.push(x.pixelValues);
      vids.push(x);
    }
    // Expand each placeholder id to its item's tokens, in order.
    const imageTokens = img?.tokens ?? [], videoTokens = vids.flatMap((x) => x.tokens);
    const expanded: number[] = [];
    let ii = 0, vi = 0;
    for (const id of ids) {
      const n = id === cfg.imageTokenId ? imageTokens[ii++] : id === cfg.videoTokenId ? videoTokens[vi++] : 1;
      for (let k = 0; k < (n ?? 1); k++) expanded.push(id);
    }
    if (ii !== imageTokens.length || vi !== videoTokens.length) {
      throw new RangeError(`The chat template wrote ${ii} image and ${vi} video placeholders for ${imageTokens.length} images and ${videoTokens.length} videos ` +
        `(image token ${cfg.imageTokenId}, video token ${cfg.videoTokenId}: do the tokenizer and config.json agree?)`);
    }
    const out: PreparedPrompt = { text, inputIds: Int32Array.from(expanded), dispose: () => { out.pixelValues?.dispose(); out.pixelValuesVideos?.dispose(); } };
    if (img) { out.pixelValues = img.pixelValues; out.imageGridThw = img.gridThw; }
    if (vids.length) {
      out.pixelValuesVideos = concat(vids.map((x) => x.pixelValues));
      out.videoGridThw = vids.flatMap((x) => x.gridThw);
      out.secondPerGridTs = vids.flatMap((x) => x.secondPerGridTs);
      out.missingFrames = vids.map((x) => x.missingFrames);
    }
    return out;
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}
