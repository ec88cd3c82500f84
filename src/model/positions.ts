// Positions the network computes from its inputs (the reference's index functions): the M-RoPE
// position ids of text, images and videos, the vision tower's window order, and each patch's row
// and column. Plain integer arithmetic on the grids, done in TS before the native call.
import { checkInteger, typeError } from '../errors.js';
import { Tensor } from '../tensor.js';
import type { QwenConfig } from './config.js';

/** Grid of one image or video in patches: [t, h, w]. */
export type GridThw = readonly [number, number, number];

/** Grids given as arrays of [t, h, w] or an integer Tensor [n, 3], checked. */
export function toGrids(name: string, g: readonly GridThw[] | Tensor | undefined): GridThw[] {
  if (g === undefined) return [];
  let rows: unknown[][];
  if (g instanceof Tensor) {
    if (g.dtype !== 'i32' && g.dtype !== 'i64') throw new TypeError(`Expected dtype i32 or i64 for ${name} but received ${g.dtype}`);
    if (g.ndim !== 2 || g.shape[1] !== 3) throw new RangeError(`Expected shape [n, 3] for ${name} but received [${g.shape.join(', ')}]`);
    const d = Array.from(g.toArray() as Int32Array | BigInt64Array, Number);
    rows = [];
    for (let i = 0; i + 3 <= d.length; i += 3) rows.push(d.slice(i, i + 3));
  } else if (Array.isArray(g)) {
    rows = g.map((r, i) => {
      if (!Array.isArray(r)) throw typeError(`${name}[${i}]`, 'an array [t, h, w]', r);
      return [...(r as unknown[])];
    });
  } else throw typeError(name, 'an array of [t, h, w] or an integer Tensor [n, 3]', g);
  return rows.map((r, i) => {
    if (r.length !== 3) throw new RangeError(`Expected [t, h, w] for ${name}[${i}] but received [${r.join(', ')}]`);
    r.forEach((x, j) => checkInteger(`${name}[${i}][${j}]`, x, 1, 2 ** 20));
    return [r[0] as number, r[1] as number, r[2] as number] as const;
  });
}

/** The window order of the merged tokens and the window boundaries in patches (get_window_index). */
export function windowIndex(grids: readonly GridThw[], windowSize: number, merge: number, patch: number): { index: Int32Array; cuWindow: Int32Array } {
  const vw = Math.floor(windowSize / merge / patch);
  // A window narrower than one merged patch would make Infinity windows (a loop without end).
  if (!(vw >= 1)) throw new RangeError(`Expected windowSize >= merge x patch (${merge * patch}) but received ${windowSize}`);
  const index: number[] = [];
  const cu: number[] = [0];
  let base = 0;
  for (const [t, h, w] of grids) {
    const gh = h / merge, gw = w / merge;
    const nwh = Math.ceil(gh / vw), nww = Math.ceil(gw / vw);
    for (let tt = 0; tt < t; tt++) {
      for (let wh = 0; wh < nwh; wh++) {
        for (let ww = 0; ww < nww; ww++) {
          let n = 0;
          for (let y = wh * vw; y < Math.min(gh, (wh + 1) * vw); y++) {
            for (let x = ww * vw; x < Math.min(gw, (ww + 1) * vw); x++) { index.push(base + (tt * gh + y) * gw + x); n++; }
          }
          // Empty windows (the reference pads a whole extra window when gh % vw == 0) add nothing.
          if (n > 0) cu.push(cu[cu.length - 1]! + n * merge * merge);
        }
      }
    }
    base += t * gh * gw;
  }
  return { index: Int32Array.from(index), cuWindow: Int32Array.from(cu) };
}

/** Row and column of every patch, in the processor's order (merge blocks of merge x merge). */
export function visionPositions(grids: readonly GridThw[], merge: number): Int32Array {
  const n = grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
  const pos = new Int32Array(2 * n);
  let i = 0;
  for (const [t, h, w] of grids) {
    for (let tt = 0; tt < t; tt++) {
      for (let bh = 0; bh < h / merge; bh++) {
        for (let bw = 0; bw < w / merge; bw++) {
          for (let dy = 0; dy < merge; dy++) {
            for (let dx = 0; dx < merge; dx++) { pos[i] = bh * merge + dy; pos[n + i] = bw * merge + dx; i++; }
          }
        }
      }
    }
  }
  return pos;
}

/**
 * M-RoPE position ids [3, B, L] and the per-row deltas (get_rope_index of the reference):
 * text advances all three streams together; an image or video block of grid (t, h, w) takes
 * t * h/2 * w/2 tokens with temporal index floor(frame * secondsPerGrid * tokensPerSecond),
 * row and column indices, all offset by the position after the preceding text; padding gets 1.
 */
export function ropeIndex(cfg: QwenConfig, ids: Int32Array, B: number, L: number, mask: Int32Array | null,
  imageGrids: readonly GridThw[], videoGrids: readonly GridThw[], secondPerGridTs?: readonly number[]): { positions: Int32Array; deltas: number[] } {
  const pos = new Int32Array(3 * B * L).fill(1);
  const deltas: number[] = [];
  const merge = cfg.vision?.spatialMergeSize ?? 2;
  const tps = cfg.vision?.tokensPerSecond ?? 2;
  let imgI = 0, vidI = 0;
  for (let b = 0; b < B; b++) {
    const idx: number[] = [];
    for (let l = 0; l < L; l++) if (!mask || mask[b * L + l] === 1) idx.push(l);
    const toks = idx.map((l) => ids[b * L + l]!);
    const out: number[][] = [[], [], []];
    let st = 0, next = 0;
    const text = (n: number) => { for (let i = 0; i < n; i++) for (let s = 0; s < 3; s++) out[s]!.push(next + i); next += n; };
    while (true) {
      let ed = -1, grid: GridThw | undefined, spg = 0;
      for (let i = st; i < toks.length; i++) {
        if (toks[i] === cfg.imageTokenId && imgI < imageGrids.length) { ed = i; grid = imageGrids[imgI++]; spg = 0; break; }
        if (toks[i] === cfg.videoTokenId && vidI < videoGrids.length) { ed = i; spg = secondPerGridTs?.[vidI] ?? 1; grid = videoGrids[vidI++]; break; }
      }
      if (ed < 0 || !grid) break;
      text(ed - st);
      const [t, h, w] = [grid[0], grid[1] / merge, grid[2] / merge];
      let mx = next;
      for (let tt = 0; tt < t; tt++) {
        const ti = Math.trunc(tt * spg * tps);
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            out[0]!.push(next + ti); out[1]!.push(next + y); out[2]!.push(next + x);
            mx = Math.max(mx, next + ti, next + y, next + x);
          }
        }
      }
      next = mx + 1;
      st = ed + t * h * w;
    }
    text(toks.length - st);
    idx.forEach((l, i) => { for (let s = 0; s < 3; s++) pos[(s * B + b) * L + l] = out[s]![i]!; });
    deltas.push(next - L);
  }
  return { positions: pos, deltas };
}

